"""Output shared by the commands: one number format for people, strict JSON for programs."""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console


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
