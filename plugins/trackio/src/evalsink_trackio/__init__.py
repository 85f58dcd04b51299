"""evalsink's Trackio sink: a run's metrics, results table and per-sample details in Trackio.

Replaces lighteval's Trackio path of ``use_wandb`` (which ran ``trackio.init`` with
``WANDB_PROJECT`` / ``WANDB_SPACE_ID``): enabled by ``sinks=[..., "trackio"]`` with
``sink_config={"trackio": {"project": ...}}``. docs/sinks/trackio.md has the full description.

What is logged, all at one step (``nanotron_run_info.step``, else the ``step`` option, else 0):

* every aggregated metric as ``{task}/{metric}`` (see :func:`metric_key`);
* ``results``: a table of task, metric, value and stderr;
* ``details/{task}``: one table per task of the per-sample details, at most ``max_rows`` rows,
  columns flattened from ``doc``, ``model_response`` and ``metric`` (see :func:`flatten_record`).

A task or metric name containing ``/`` is changed in these keys by a rule that depends on the
name alone (see :func:`key_part`), and the user is told.

Details are streamed (``details="stream"``, the default): rows gathered from the details batches
are logged every ``rows_per_table`` rows as one table per task holding just those rows, so samples
reach Trackio during the evaluation and memory stays at ``rows_per_table`` rows; a task's
details are the concatenation of its ``details/{task}`` entries in logging order. The rows still
gathered when the run finishes are logged then, also when the evaluation failed. With
``details="final"`` each task gets one complete table at ``results_saved``, built from the
on-disk spool one task at a time (what the dashboard shows best, memory one task's table).

Trackio reports its own failures as warnings and carries on; the sink turns the warnings that say
data was dropped into an error, and checks that Trackio's sender thread drained its queue after
``finish()``, so a run the report calls ``ok`` is really written.
"""

from __future__ import annotations

import logging
import math
import os
import re
import warnings
from collections.abc import Callable, Iterator
from functools import partial
from typing import Any, ClassVar, Literal, TypeVar

import orjson
from pydantic import Field

from evalsink import (
    DetailsBatch,
    EvaluationResults,
    Run,
    Sink,
    SinkConfig,
    TrackerSettings,
    hookimpl,
    jsonsafe,
)
from evalsink.metric_keys import DETAILS_PREFIX, key_part, metric_key
from evalsink.run import nanotron_run_and_step

__all__ = ["TrackioSink", "TrackioSinkConfig", "details_key", "flatten_record", "key_part", "metric_key"]

logger = logging.getLogger("evalsink.trackio")

MAX_CELL_CHARS = 1000
"""Longest text stored in one details cell; longer text keeps its start and says what was cut."""

SPACE_ENV = "WANDB_SPACE_ID"
"""lighteval's variable for the Space to log to; read when ``space_id`` is not given."""

# Trackio warnings that mean logged data did not reach storage (it never raises for them).
_DATA_LOSS = re.compile(
    r"failed to flush|could not be persisted|could not flush|could not be sent|skipped metric|"
    r"failed to process metrics|data may be (dropped|buffered)",
    re.IGNORECASE,
)

T = TypeVar("T")


class TrackioSinkConfig(SinkConfig):
    """``sink_config={"trackio": {...}}`` or ``EVALSINK_TRACKIO__<FIELD>=...``."""

    project: str | None = Field(default=None, min_length=1)
    """Trackio project (required; there is no fallback)."""
    run_name: str | None = Field(default=None, min_length=1)
    """Run name; default ``nanotron_run_info.run`` when given, else a name Trackio generates."""
    space_id: str | None = Field(default=None, min_length=1)
    """Hugging Face Space to log to (``user/space``); default env ``WANDB_SPACE_ID``, else local."""
    dataset_id: str | None = Field(default=None, min_length=1)
    """Hugging Face Dataset Trackio persists the Space's data to (needs a Space)."""
    step: int | None = Field(default=None, ge=0)
    """Step when no ``nanotron_run_info`` gives one; default 0."""
    max_rows: int | None = Field(default=None, ge=0)
    """Row cap of each task's details; None (default) logs every sample, 0 logs no details."""
    details: Literal["stream", "final"] = "stream"
    """``stream``: tables of new rows logged during the evaluation; ``final``: one table per task at save."""
    rows_per_table: int = Field(default=1000, ge=1)
    """In ``stream`` mode, rows gathered (over all tasks) before they are logged as tables."""


def details_key(task: str) -> str:
    """``details/{task}``, the task as in its metrics' keys (:func:`key_part`)."""
    return f"{DETAILS_PREFIX}/{key_part(task, is_task=True)}"


def _renamed(name: str, *, is_task: bool) -> str | None:
    """What the user is told when a name is not kept as it is in its keys, else None."""
    part = key_part(name, is_task=is_task)
    if part == name:
        return None
    kind = "task" if is_task else "metric"
    return f"{kind} {name!r} is logged as {part!r} in keys: a '/' would add a key level (see the docs)"


def _truncate(text: str, limit: int = MAX_CELL_CHARS) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… [{len(text) - limit} more chars]"


def _cell(value: Any) -> Any:
    """A table cell: numbers, booleans and None as they are; text truncated; the rest as JSON,
    bytes (images) as their size."""
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, str):
        return _truncate(value)
    data = orjson.dumps(value, option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    if jsonsafe.has_bytes(data):
        data = orjson.dumps(jsonsafe.describe_bytes(value), option=orjson.OPT_SERIALIZE_NUMPY, default=str)
    return _truncate(data.decode())


def flatten_record(record: dict[str, Any]) -> dict[str, Any]:
    """One details row: ``doc.X``, ``model_response.X`` and ``metric.X`` columns, one level deep.

    Values nested deeper (lists, dicts) become compact JSON; text longer than
    :data:`MAX_CELL_CHARS` characters keeps its start and ends with ``… [N more chars]``.
    """
    row: dict[str, Any] = {}
    for part in ("doc", "model_response", "metric"):
        value = record.get(part)
        if isinstance(value, dict) and jsonsafe.bytes_of(value) is None:
            for key, item in value.items():
                row[f"{part}.{key}"] = _cell(item)
        elif value is not None:
            row[part] = _cell(value)
    return row


class TrackioSink(Sink):
    """Logs each saved run to one Trackio run (local SQLite, or a Space)."""

    config_model: ClassVar[type[SinkConfig]] = TrackioSinkConfig
    remote: ClassVar[bool] = True  # may upload to a Space: runs after the local sinks
    config: TrackioSinkConfig

    def __init__(self, config: TrackioSinkConfig, settings: TrackerSettings) -> None:
        super().__init__(config, settings)
        if config.project is None:
            raise ValueError(
                "the trackio sink needs a project: "
                'sink_config={"trackio": {"project": "my-evals"}} or EVALSINK_TRACKIO__PROJECT=my-evals'
            )
        # imported here, not at module import: only a tracker that enables the sink pays for it
        # (trackio pulls in gradio_client and huggingface_hub), and a broken install fails the
        # tracker's construction, before any evaluation time is spent
        import trackio
        from trackio.sqlite_storage import SQLiteStorage

        self._trackio: Any = trackio
        SQLiteStorage.validate_project_name(config.project)  # e.g. the reserved "registry-" prefix
        self.project: str = config.project
        info_run, info_step = nanotron_run_and_step(settings.nanotron_run_info)
        self.step: int = info_step if info_step is not None else (config.step or 0)
        self.run_name: str | None = config.run_name or info_run
        self.space_id: str | None = config.space_id or os.environ.get(SPACE_ENV) or None
        self.dataset_id = config.dataset_id
        if self.dataset_id is not None and self.space_id is None:
            raise ValueError(f"dataset_id needs a space_id (option space_id or env {SPACE_ENV})")
        self._run: Any = None
        self._pending: dict[str, list[dict[str, Any]]] = {}  # streamed rows not logged yet, per task
        self._pending_rows = 0
        self._accepted: dict[str, int] = {}  # rows taken per task (for max_rows)
        self._capped: dict[str, int] = {}  # rows left out per task by max_rows
        self._told: set[str] = set()  # warnings already given (a renamed name is told once)
        self._saving = False  # results_saved was called: it logs (or failed to log) the gathered rows

    @property
    def _wants_details(self) -> bool:
        return self.settings.save_details and self.config.max_rows != 0

    # -- hooks ------------------------------------------------------------------------------
    @hookimpl
    def evalsink_run_started(self, run: Run) -> None:
        # the run is created now, so bad credentials or an unreachable Space fail the sink before
        # the evaluation; the config known so far (model info) is completed at results_saved
        self._run = self._guarded(
            lambda: self._trackio.init(
                project=self.project,
                name=self.run_name,
                space_id=self.space_id,
                dataset_id=self.dataset_id,
                config={"config_general": run.config_general},
                resume="allow" if self.run_name is not None else "never",
                embed=False,
                auto_log_gpu=False,
                auto_log_cpu=False,
            )
        )

    @hookimpl
    def evalsink_details_batch(self, batch: DetailsBatch) -> None:
        if not self._wants_details or self.config.details != "stream":
            return
        cap = self.config.max_rows
        for task, record in zip(batch.task_names, batch.records(), strict=True):
            taken = self._accepted.get(task, 0)
            if cap is not None and taken >= cap:
                self._capped[task] = self._capped.get(task, 0) + 1
                continue
            self._accepted[task] = taken + 1
            rows = self._pending.get(task)
            if rows is None:
                rows = self._pending[task] = []
                self._tell(_renamed(task, is_task=True))
            rows.append(flatten_record(record))
            self._pending_rows += 1
            if self._pending_rows >= self.config.rows_per_table:
                self._log_pending()

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        self._saving = True
        trackio_run = self._run
        if trackio_run is None:
            raise RuntimeError("trackio run was not started")
        # nothing was logged yet, so the complete config goes out with the first entry
        trackio_run.config.update(
            {
                "config_general": results.config_general.model_dump(mode="json", by_alias=True),
                "config_tasks": {
                    task: config.model_dump(mode="json", by_alias=True)
                    for task, config in results.config_tasks.items()
                },
            }
        )
        metrics, table = self._metrics(results.results)
        metrics["results"] = self._trackio.Table(columns=["task", "metric", "value", "stderr"], data=table)
        self._guarded(partial(trackio_run.log, metrics, step=self.step))
        if self._wants_details and self.config.details == "stream":
            self._log_pending()
            for task, count in self._capped.items():
                logger.info(
                    "trackio: details of %s capped at %s rows (%d left out)",
                    task,
                    self.config.max_rows,
                    count,
                )
        elif self._wants_details:
            for task in run.details.tasks():
                rows = list(self._detail_rows(run, task))
                if rows:
                    self._tell(_renamed(task, is_task=True))
                    details = {details_key(task): self._trackio.Table(data=rows)}
                    self._guarded(partial(trackio_run.log, details, step=self.step))
        name = trackio_run.name
        self._finish()  # drained before save() reports the sink ok
        where = f"space {self.space_id}" if self.space_id else f"project {self.project}"
        return [f"trackio: {where}, run {name}"]

    @hookimpl
    def evalsink_run_finished(self) -> None:
        """Finish a run a failure left open (always called, also after this sink failed).

        A run that was never saved (the evaluation failed) first logs the streamed rows still
        gathered (fewer than ``rows_per_table``): its samples are worth seeing, as W&B keeps a
        failed run's streamed details. After ``results_saved``, which logs them itself (or failed
        trying, and is reported), nothing is retried.
        """
        try:
            if self._run is not None and not self._saving:
                self._log_pending()
        finally:
            self._finish()

    # -- helpers ----------------------------------------------------------------------------
    def _log_pending(self) -> None:
        """Log the gathered rows as one table per task (only these rows), then forget them."""
        pending, self._pending, self._pending_rows = self._pending, {}, 0
        if not pending:
            return
        trackio_run = self._run
        if trackio_run is None:
            raise RuntimeError("trackio run was not started")
        tables = {details_key(task): self._trackio.Table(data=rows) for task, rows in pending.items()}
        self._guarded(partial(trackio_run.log, tables, step=self.step))

    def _metrics(self, results: dict[str, dict[str, float | None]]) -> tuple[dict[str, Any], list[list[Any]]]:
        metrics: dict[str, Any] = {}
        table: list[list[Any]] = []
        skipped: list[str] = []
        for task, values in results.items():
            self._tell(_renamed(task, is_task=True))
            for metric, value in values.items():
                self._tell(_renamed(metric, is_task=False))
                if value is None or not math.isfinite(value):
                    skipped.append(f"{task}/{metric}")
                else:
                    metrics[metric_key(task, metric)] = value
                if not metric.endswith("_stderr"):
                    stderr = values.get(f"{metric}_stderr")
                    table.append([task, metric, _finite(value), _finite(stderr)])
        if skipped:
            logger.warning(
                "trackio: %d null (NaN/inf) value(s) not logged: %s", len(skipped), ", ".join(skipped)
            )
        return metrics, table

    def _tell(self, message: str | None) -> None:
        """Warn once (``save()``'s report) about a message; None is nothing to tell."""
        if message is not None and message not in self._told:
            self._told.add(message)
            self.warn(message)

    def _detail_rows(self, run: Run, task: str) -> Iterator[dict[str, Any]]:
        cap = self.config.max_rows
        for index, record in enumerate(run.details.iter_records(task)):
            if cap is not None and index >= cap:
                logger.info(
                    "trackio: details of %s capped at %d of %d rows", task, cap, run.details.count(task)
                )
                return
            yield flatten_record(record)

    def _guarded(self, call: Callable[[], T]) -> T:
        """Run a trackio call; a warning of trackio that says data was dropped becomes an error."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = call()
        lost = []
        for warning in caught:
            message = str(warning.message)
            if _DATA_LOSS.search(message):
                lost.append(message)
            else:
                warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
        if lost:
            raise RuntimeError(f"trackio dropped data: {' | '.join(lost)}")
        return result

    def _finish(self) -> None:
        """Finish the trackio run once, waiting for its sender to write every queued log."""
        trackio_run, self._run = self._run, None
        if trackio_run is None:
            return
        current = self._trackio.context_vars.current_run
        try:
            self._guarded(trackio_run.finish)
        finally:
            if current.get() is trackio_run:
                current.set(None)  # what trackio.finish() does for the current run
        sender = getattr(trackio_run, "_local_sender_thread", None) or getattr(
            trackio_run, "_client_thread", None
        )
        pending = getattr(trackio_run, "_queued_logs", None) or getattr(trackio_run, "_sending_batch", None)
        if (sender is not None and sender.is_alive()) or pending:
            raise RuntimeError("trackio could not write every log within its 30s finish timeout")


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None
