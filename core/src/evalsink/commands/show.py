"""``evalsink show``: the metrics of saved runs, from an output dir or a results JSON file."""

from __future__ import annotations

from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from evalsink.results_files import LoadedResults

Metrics = dict[str, dict[str, float | None]]


@click.command("show")
@click.argument("path", type=click.Path())
@click.option("--all", "every", is_flag=True, help="Every run, not only the newest run of each model.")
@click.option(
    "--model",
    metavar="PATTERN",
    help="Only runs whose model name ends with PATTERN (a glob: org/model, model, 'org/*').",
)
@click.option("--date", metavar="DATE_ID", help="Only runs whose date id starts with DATE_ID (2025-11-05).")
@click.option(
    "--task",
    "tasks",
    metavar="PATTERN",
    multiple=True,
    help="Only tasks matching PATTERN (glob; repeatable).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of tables.")
def show(
    path: str, every: bool, model: str | None, date: str | None, tasks: tuple[str, ...], as_json: bool
) -> None:
    """Show the metrics (± stderr) of each task of the runs in PATH.

    PATH is a folder, such as an output dir (searched for results/<model>/results_<date_id>.json;
    the newest run of each model is shown unless --all), or one results JSON file; a path or a
    file:// URL.
    """
    from evalsink.errors import EvalsinkError
    from evalsink.results_files import find_results_files, load_results, select_runs

    files = select_runs(find_results_files(path), model=model, date=date, every=every)
    runs = [(run, _only(run.results.results, tasks)) for run in map(load_results, files)]
    if tasks and not any(metrics for _, metrics in runs):
        raise EvalsinkError(f"no task matches {' or '.join(repr(t) for t in tasks)} in {path}")
    if as_json:
        _print_json(runs)
    else:
        _print_tables(runs, filtered=bool(tasks))


def _only(results: Metrics, patterns: tuple[str, ...]) -> Metrics:
    if not patterns:
        return results
    return {task: m for task, m in results.items() if any(fnmatchcase(task, p) for p in patterns)}


def _print_json(runs: list[tuple[LoadedResults, Metrics]]) -> None:
    from evalsink.commands._output import echo_json, finite

    out: list[dict[str, Any]] = []
    for run, metrics in runs:
        values = {task: {name: finite(v) for name, v in m.items()} for task, m in metrics.items()}
        out.append({**run.describe(), "results": values})
    echo_json({"runs": out})


def _print_tables(runs: list[tuple[LoadedResults, Metrics]], *, filtered: bool) -> None:
    from rich.markup import escape
    from rich.table import Table

    from evalsink.commands._output import console, fit_table, metric_rows, number

    out = console()
    for index, (run, metrics) in enumerate(runs):
        if index:
            out.print()
        title = f"{run.model} — {run.file.date_id or run.file.path.name}"
        table = Table(title=escape(title))
        table.add_column("task")  # what the reader looks for: kept on one line by fit_table
        table.add_column("metric", overflow="fold")
        table.add_column("value", justify="right", no_wrap=True)
        table.add_column("stderr", justify="right", no_wrap=True)
        for task, task_metrics in metrics.items():
            rows = metric_rows(task_metrics)
            for position, (metric, value, stderr) in enumerate(rows):
                has_stderr = f"{metric}_stderr" in task_metrics  # a null stderr is shown, not hidden
                table.add_row(
                    escape(task) if position == 0 else "",
                    escape(metric),
                    number(value),
                    f"± {number(stderr)}" if has_stderr else "",
                    end_section=position == len(rows) - 1,
                )
        if any(metrics.values()):
            out.print(fit_table(out, table))  # the metric names wrap or fold before the task names
            out.print(f"file: {run.file.path}", markup=False, soft_wrap=True, style="dim")
        else:  # an empty run still has an 'all' task, without metrics
            what = "no task matches --task" if filtered else "no results"
            out.print(f"{title}: {what} ({run.file.path})", markup=False)
