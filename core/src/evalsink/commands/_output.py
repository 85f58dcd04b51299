"""Output shared by the commands: one number format for people, strict JSON for programs, and
tables that fit the terminal (80 columns when piped) without breaking the names readers look for."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table


def finite(value: float | None) -> float | None:
    """The value, or None when it is missing, NaN or infinite: what strict JSON can hold."""
    return value if value is not None and math.isfinite(value) else None


def number(value: float | None, *, signed: bool = False) -> str:
    """Four decimals for the usual range of scores; scientific notation where that would hide the value.

    NaN, infinities and null are spelt out, because they are what a reader most needs to see.
    """
    if value is None:
        return "null"
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    sign = "+" if signed and value != 0 else ""
    if value == 0 or 1e-4 <= abs(value) < 1e6:
        return f"{value:{sign}.4f}"
    return f"{value:{sign}.3e}"


def echo_json(data: Any) -> None:
    """Print ``data`` as strict JSON (a NaN left in it is a bug here, so it raises, not corrupts)."""
    click.echo(json.dumps(data, indent=2, ensure_ascii=False, allow_nan=False))


def console() -> Console:
    """A rich console on stdout; no guessing of colours for numbers and paths."""
    from rich.console import Console

    return Console(highlight=False)


def metric_rows(metrics: dict[str, float | None]) -> list[tuple[str, float | None, float | None]]:
    """(metric, value, stderr) rows of one task: each ``<m>_stderr`` folded into the row of ``<m>``.

    A ``_stderr`` key without its metric keeps a row of its own, so no value is hidden.
    """
    rows = []
    for key, value in metrics.items():
        if key.endswith("_stderr") and key[: -len("_stderr")] in metrics:
            continue
        stderr = None if key.endswith("_stderr") else metrics.get(f"{key}_stderr")
        rows.append((key, value, stderr))
    return rows


# a column given way to below its longest word still keeps this many characters a line
_FOLD_FLOOR = 8


def _column_sizes(out: Console, table: Table) -> list[tuple[int, int]]:
    """(longest word, longest line) of each column's header and cells, without padding."""
    from rich.measure import Measurement

    unbounded = out.options.update_width(1_000_000)
    measured: dict[str, tuple[int, int]] = {}  # a column repeats its values: measure each once
    sizes = []
    for column in table.columns:
        word = line = 0
        for cell in [column.header, *column.cells]:
            key = cell if isinstance(cell, str) else None
            size = measured.get(key) if key is not None else None
            if size is None:
                size = Measurement.get(out, unbounded, cell)
                if key is not None:
                    measured[key] = size
            word, line = max(word, size[0]), max(line, size[1])
        sizes.append((word, line))
    return sizes


def _room(out: Console, table: Table) -> int:
    """The console's width less the table's borders and cell padding.

    rich measures these in private helpers; should a rich release drop them, a border and two
    spaces of padding per column (rich's defaults) is assumed instead.
    """
    try:
        padding = sum(table._get_padding_width(i) for i in range(len(table.columns)))
        extra = table._extra_width
    except AttributeError:
        padding, extra = 2 * len(table.columns), len(table.columns) + 1
    return out.width - extra - padding


def _without_edges(table: Table) -> Table:
    table.show_edge = table.pad_edge = False
    return table


def _give_way(widths: list[int], columns: list[int], floors: list[int], excess: int) -> int:
    """Narrow ``columns``, the widest first, down to their ``floors``; return the excess left."""
    while excess > 0:
        narrowable = [i for i in columns if widths[i] > floors[i]]
        if not narrowable:
            break
        widest = max(widths[i] for i in narrowable)
        for i in narrowable:
            if widths[i] == widest and excess > 0:
                widths[i] -= 1
                excess -= 1
    return excess


def fit_table(
    out: Console, table: Table, *, keep: int = 0, narrower: Callable[[], Table] | None = None
) -> Table:
    """The table to print: ``table`` laid out within the console's width, its column ``keep`` (the
    names a reader looks for, such as task names) on one line.

    A table that does not fit as it is gets a narrower form first: ``narrower()``, by default the
    same table without its outer border. Then, where rich would narrow the widest wrapping columns
    first and so fold a task name into two-letter pieces, the other columns give way instead:
    those that may wrap (not ``no_wrap``) wrap at spaces, the widest first, then fold down to a few
    characters a line. Only when that is not enough do the kept column and then every column fold,
    the widest first: a last resort that still shows every character (rich would cut values short
    with an ellipsis).
    """
    table.columns[keep].no_wrap = True
    sizes = _column_sizes(out, table)
    if sum(line for _, line in sizes) <= _room(out, table):
        return table
    table = narrower() if narrower is not None else _without_edges(table)
    table.columns[keep].no_wrap = True
    sizes = _column_sizes(out, table)
    natural = [line for _, line in sizes]
    widths = list(natural)
    excess = sum(widths) - _room(out, table)
    wrapping = [i for i, column in enumerate(table.columns) if i != keep and not column.no_wrap]
    everyone = list(range(len(widths)))
    excess = _give_way(widths, wrapping, [word for word, _ in sizes], excess)
    excess = _give_way(widths, wrapping, [min(word, _FOLD_FLOOR) for word in natural], excess)
    excess = _give_way(widths, everyone, [min(width, _FOLD_FLOOR) for width in natural], excess)
    _give_way(widths, everyone, [1] * len(widths), excess)
    for column, width, widest in zip(table.columns, widths, natural, strict=True):
        if width < widest:
            column.width = width
            column.no_wrap = False
            column.overflow = "fold"
    return table
