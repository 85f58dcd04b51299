"""``evalsink diff``: what changed between two runs, and a CI gate on metric regressions.

Exit codes: 0 no regression, 1 a metric regressed by more than the tolerance (or, with
``--strict``, B lost a task, a metric or a finite value), 2 a usage or input error.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from evalsink.commands.compare import Diff, MetricChange
    from evalsink.results_files import LoadedResults


def _tolerance(ctx: click.Context, param: click.Parameter, value: float) -> float:
    """A NaN tolerance would make every comparison false and silently turn the gate off."""
    if not math.isfinite(value) or value < 0:
        raise click.BadParameter(f"must be a finite number >= 0, not {value}")
    return value


@click.command("diff")
@click.argument("a", type=click.Path())
@click.argument("b", type=click.Path())
@click.option(
    "--tolerance",
    default=0.0,
    show_default=True,
    type=float,
    callback=_tolerance,
    help="Absolute change a metric may worsen by before it counts as a regression.",
)
@click.option(
    "--lower-is-better",
    "lower",
    metavar="METRIC",
    multiple=True,
    help="Metric (glob) where lower is better, such as perplexity or loss; repeatable.",
)
@click.option(
    "--higher-is-better",
    "higher",
    metavar="METRIC",
    multiple=True,
    help="Metric (glob) where higher is better, overriding the results files; repeatable.",
)
@click.option(
    "--model",
    metavar="PATTERN",
    help="In a folder holding several models' runs, the model to use (a glob on its name).",
)
@click.option("--strict", is_flag=True, help="Also fail when B lacks a task, metric or finite value A has.")
@click.option("--show-same", is_flag=True, help="Also list the metrics whose value did not change.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON (every metric) instead of tables.")
def diff(
    a: str,
    b: str,
    tolerance: float,
    lower: tuple[str, ...],
    higher: tuple[str, ...],
    model: str | None,
    strict: bool,
    show_same: bool,
    as_json: bool,
) -> None:
    """Compare run B against baseline run A; exit 1 when a metric regresses.

    A and B are results JSON files or output dirs, as paths or file:// URLs (the newest run of each
    is used). Higher is better unless --lower-is-better or the results files' task configs say
    otherwise; *_stderr values are shown, not gated.
    """
    from evalsink.commands.compare import compare
    from evalsink.results_files import newest_run

    run_a, run_b = newest_run(a, model=model), newest_run(b, model=model)
    result = compare(
        run_a, run_b, tolerance=tolerance, lower_is_better=lower, higher_is_better=higher, strict=strict
    )
    if as_json:
        from evalsink.commands._output import echo_json

        echo_json(result.to_json())
    else:
        _print(result, show_same=show_same)
    if result.failed:
        sys.exit(1)


_STYLES = {
    "regression": "bold red",
    "improvement": "green",
    "within tolerance": "yellow",
    "not finite": "magenta",
    "only in A": "yellow",
    "only in B": "yellow",
    "same": "dim",
}


def _print(result: Diff, *, show_same: bool) -> None:
    from evalsink.commands._output import console, number
    from evalsink.commands.compare import SAME

    out = console()
    out.print(f"A: {_describe(result.a)}", markup=False, soft_wrap=True)
    out.print(f"B: {_describe(result.b)}", markup=False, soft_wrap=True)
    # a diff is read for what changed; unchanged rows would bury it (and a 3,000-task run would
    # take seconds to lay out)
    listed = [m for m in result.metrics if show_same or m.status != SAME]
    if listed:
        _print_metrics(out, listed)
    hidden = len(result.metrics) - len(listed)
    if hidden:
        out.print(
            f"{hidden} metric(s) with the same value in both runs, not listed (--show-same lists them)",
            style="dim",
        )
    _print_hashes(out, result)
    for label, tasks in (("only in A", result.only_in_a), ("only in B", result.only_in_b)):
        if tasks:
            out.print(f"tasks {label}: {', '.join(tasks)}", markup=False, style="yellow", soft_wrap=True)
    regressions = result.regressions
    if regressions:
        named = [f"{m.task} {m.metric} {number(m.delta, signed=True)}" for m in regressions[:10]]
        more = f" and {len(regressions) - 10} more" if len(regressions) > 10 else ""
        out.print(
            f"{len(regressions)} regression(s) beyond tolerance {result.tolerance:g}: "
            + ", ".join(named)
            + more,
            markup=False,
            style="bold red",
            soft_wrap=True,
        )
    else:
        out.print(f"no regression beyond tolerance {result.tolerance:g}", markup=False, style="green")
    if result.strict:
        for failure in result.strict_failures:
            out.print(f"strict: {failure}", markup=False, style="bold red", soft_wrap=True)


def _print_metrics(out: Console, metrics: list[MetricChange]) -> None:
    from evalsink.commands._output import fit_table

    # too wide: the direction beside the metric, each stderr under its value and no outer border
    # (about 27 columns narrower), then the metrics and statuses wrap; the task names stay on one line
    natural = _metrics_table(metrics, compact=False)
    table = fit_table(out, natural, narrower=lambda: _metrics_table(metrics, compact=True))
    out.print(table)
    if table is not natural:  # no 'better' column to say what the arrows mean
        out.print("↑ higher is better, ↓ lower is better", style="dim")
    if any(m.direction_from != "default" for m in metrics):
        out.print("* direction from --lower/--higher-is-better or the results files", style="dim")


def _metrics_table(metrics: list[MetricChange], *, compact: bool) -> Table:
    from rich.markup import escape
    from rich.table import Table

    from evalsink.commands._output import number

    table = Table(title="metrics (B - A)", show_edge=not compact, pad_edge=not compact)
    table.add_column("task")  # names are what the reader looks for: kept on one line by fit_table
    table.add_column("metric", overflow="fold")
    if not compact:
        table.add_column("better", no_wrap=True)
    for column in ("A", "B", "Δ"):
        table.add_column(column, justify="right", no_wrap=True)
    table.add_column("status", overflow="fold")
    previous = None
    for m in metrics:
        better = ("↑" if m.higher_is_better else "↓") + ("" if m.direction_from == "default" else " *")
        status = escape(m.status)
        style = _STYLES.get(m.status)
        table.add_row(
            escape(m.task) if m.task != previous else "",
            *([f"{escape(m.metric)} {better}"] if compact else [escape(m.metric), better]),
            _value(m.a, m.a_stderr, m, "a", compact=compact),
            _value(m.b, m.b_stderr, m, "b", compact=compact),
            "" if m.delta is None else number(m.delta, signed=True),
            f"[{style}]{status}[/{style}]" if style else status,
        )
        previous = m.task
    return table


def _describe(run: LoadedResults) -> str:
    date = f" {run.file.date_id}" if run.file.date_id else ""
    return f"{run.model}{date} ({run.file.path})"


def _value(value: float | None, stderr: float | None, m: MetricChange, side: str, *, compact: bool) -> str:
    from evalsink.commands._output import number
    from evalsink.commands.compare import ONLY_A, ONLY_B

    if (side == "a" and m.status == ONLY_B) or (side == "b" and m.status == ONLY_A):
        return "—"
    if stderr is None:
        return number(value)
    return number(value) + ("\n" if compact else " ") + f"± {number(stderr)}"  # compact: stacked


def _print_hashes(out: Console, result: Diff) -> None:
    """Same prompts? Same generations? One line when every task tells the same story, else a table
    of the tasks whose hashes differ."""
    from rich.markup import escape
    from rich.table import Table

    from evalsink.commands.compare import HASHES

    if not result.hashes:
        out.print("hashes: no task has hashes in both runs", style="dim")
        return
    stories = {(tuple(h.changed), tuple(h.unknown)) for h in result.hashes}
    if len(stories) == 1:
        [(changed, unknown)] = stories
        count = len(result.hashes)
        if not changed and not unknown:
            out.print(
                f"hashes identical for all {count} task(s) in both runs: "
                "same examples, prompts, input tokens and continuations"
            )
            return
        states = {key: "changed" if key in changed else "?" if key in unknown else "same" for key in HASHES}
        parts = ", ".join(f"{label} {states[key]}" for key, label in HASHES.items())
        out.print(f"hashes of all {count} task(s) in both runs: {parts}", markup=False)
        if unknown:
            out.print("? = not recorded in one of the runs", style="dim")
        return
    from evalsink.commands._output import fit_table

    table = Table(title="hashes that differ (task in both runs)")
    table.add_column("task")
    for label in HASHES.values():
        table.add_column(label, overflow="fold")  # 'input tokens' wraps at its space
    differing = [h for h in result.hashes if h.changed or h.unknown]
    for h in differing:
        cells = [
            "[red]changed[/red]" if key in h.changed else "?" if key in h.unknown else "[dim]same[/dim]"
            for key in HASHES
        ]
        table.add_row(escape(h.task), *cells)
    out.print(fit_table(out, table))
    if any(h.unknown for h in differing):
        out.print("? = not recorded in one of the runs", style="dim")
    if len(differing) < len(result.hashes):
        out.print(
            f"the other {len(result.hashes) - len(differing)} task(s) have identical hashes", style="dim"
        )
