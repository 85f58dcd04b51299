"""Per-sample details as table rows, streamed task by task in bounded increments.

Rows are built from each details batch as it arrives and buffered until ``rows_per_increment``
rows are waiting (over all tasks); then every task's buffered rows are sent as one increment of
that task's table, and forgotten. Memory therefore holds at most about ``rows_per_increment``
rows, whatever the size of the evaluation. Buffering across batches (instead of one increment
per batch) keeps the increments few and large: the core also flushes batches on a timer, and W&B
shows only the latest 100 increments of a table in the run's workspace.

A table's columns are fixed when its first increment is sent (an incremental W&B table cannot
gain columns later): ``sample`` (the sample's index within its task, in logging order), the
flattened fields of the first increment's rows, and ``other``, a JSON object of any field that
only appears in later rows, so nothing is dropped.

Nothing here imports wandb: the table object and the sending are given by the sink.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from evalsink import jsonsafe
from evalsink_wandb.naming import details_key

SAMPLE_COLUMN = "sample"
OTHER_COLUMN = "other"
_PARTS = ("doc", "model_response", "metric")


def truncate(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters, ending with ``… [N more chars]`` when cut."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


def cell(value: Any, limit: int) -> Any:
    """A table cell: numbers, booleans and None as they are (NaN/inf as None); text truncated;
    lists and objects as compact JSON text, truncated, bytes (images) as their size."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return truncate(value, limit)
    text = jsonsafe.dumps(value)
    if jsonsafe.has_bytes(text):
        text = jsonsafe.dumps(jsonsafe.describe_bytes(value))
    return truncate(text.decode(), limit)


def flatten_record(record: dict[str, Any], limit: int) -> dict[str, Any]:
    """One details row: ``doc.X``, ``model_response.X`` and ``metric.X`` columns, one level deep.

    A part that is not an object (unusual) becomes one column named after the part.
    """
    row: dict[str, Any] = {}
    for part in _PARTS:
        value = record.get(part)
        if isinstance(value, dict) and jsonsafe.bytes_of(value) is None:
            for key, item in value.items():
                row[f"{part}.{key}"] = cell(item, limit)
        elif value is not None:
            row[part] = cell(value, limit)
    return row


NewTable = Callable[[list[str]], Any]
"""Makes an empty table with these columns."""
SendRows = Callable[[str, Any, list[list[Any]]], None]
"""Appends rows to a table, logs it under a key as one increment and forgets the rows."""


@dataclass
class _TaskTable:
    key: str
    seen: int = 0
    """Samples of the task received so far (the next sample's index)."""
    sent: int = 0
    pending: list[dict[str, Any]] = field(default_factory=list)
    columns: list[str] | None = None
    table: Any = None


class DetailsStream:
    """Buffers flattened rows per task and sends them as table increments (see the module doc)."""

    def __init__(
        self,
        *,
        new_table: NewTable,
        send: SendRows,
        max_rows: int | None,
        rows_per_increment: int,
        max_cell_chars: int,
        wandb_run_id: str = "",
    ) -> None:
        self._new_table = new_table
        self.wandb_run_id = wandb_run_id
        """The W&B run's id, which W&B puts in each table's artifact name (see ``details_key``)."""
        self._send = send
        self.max_rows = max_rows
        self.rows_per_increment = rows_per_increment
        self.max_cell_chars = max_cell_chars
        self._tasks: dict[str, _TaskTable] = {}
        self.pending = 0
        """Rows buffered over all tasks (never more than ``rows_per_increment`` after ``add``)."""

    def full(self, task: str) -> bool:
        """Whether the task's table has reached ``max_rows`` (its later samples are skipped)."""
        state = self._tasks.get(task)
        return self.max_rows is not None and state is not None and state.seen >= self.max_rows

    def add(self, task: str, record: dict[str, Any]) -> None:
        """Buffer one sample of ``task``; send every buffered row once enough are waiting."""
        state = self._tasks.get(task)
        if state is None:
            state = self._tasks[task] = _TaskTable(details_key(task, self.wandb_run_id))
        index = state.seen
        state.seen += 1
        if self.max_rows is not None and index >= self.max_rows:
            return
        state.pending.append({SAMPLE_COLUMN: index, **flatten_record(record, self.max_cell_chars)})
        self.pending += 1
        if self.pending >= self.rows_per_increment:
            self.flush()

    def flush(self) -> None:
        """Send every task's buffered rows as one increment of its table."""
        for state in self._tasks.values():
            if state.pending:
                self._flush_task(state)

    def sent(self) -> dict[str, int]:
        """Rows sent so far, per task."""
        return {task: state.sent for task, state in self._tasks.items()}

    def _flush_task(self, state: _TaskTable) -> None:
        rows, state.pending = state.pending, []
        self.pending -= len(rows)
        if state.columns is None:
            state.columns = _columns(rows)
            state.table = self._new_table(state.columns)
        known = state.columns[:-1]  # every column but OTHER_COLUMN
        known_set = set(known)
        values = [self._row_values(row, known, known_set) for row in rows]
        self._send(state.key, state.table, values)
        state.sent += len(values)

    def _row_values(self, row: dict[str, Any], known: list[str], known_set: set[str]) -> list[Any]:
        values = [row.get(column) for column in known]
        extra = {key: value for key, value in row.items() if key not in known_set}
        values.append(cell(extra, self.max_cell_chars) if extra else None)
        return values


def _columns(rows: list[dict[str, Any]]) -> list[str]:
    """``sample``, every key of ``rows`` in first-seen order, then ``other``."""
    keys: dict[str, None] = {SAMPLE_COLUMN: None}
    for row in rows:
        keys.update(dict.fromkeys(row))
    return [*keys, OTHER_COLUMN]
