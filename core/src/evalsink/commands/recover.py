"""``evalsink recover``: save the runs a crash left in an output dir, marked partial."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from evalsink.recovery import RunOnDisk
    from evalsink.report import SaveReport


@click.command("recover")
@click.argument("output_dir")
@click.option("--run-id", "run_ids", metavar="RUN_ID", multiple=True, help="Only this run (repeatable).")
@click.option(
    "--to",
    "sinks",
    default="local",
    show_default=True,
    metavar="SINKS",
    help="Comma-separated sinks to save the recovered runs to (with the run's own options, which "
    "EVALSINK_<SINK>__* override).",
)
@click.option("--list", "list_only", is_flag=True, help="List the runs left in OUTPUT_DIR; recover nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
def recover(output_dir: str, run_ids: tuple[str, ...], sinks: str, list_only: bool, as_json: bool) -> None:
    """Rebuild results and details of killed runs from their spool (docs/recovery.md).

    OUTPUT_DIR is a folder or a URL (s3://...; its spools are under EVALSINK_SPOOL_DIR).
    Every run in OUTPUT_DIR/.evalsink/runs that was not saved and is not still being written is
    saved again from the samples flushed before it stopped; its results JSON says
    "evalsink_recovery": {"partial": true, ...}. Exit code 1 when a sink failed.
    """
    from pathlib import Path

    from evalsink.errors import EvalsinkError
    from evalsink.recovery import find_runs, recover_run, runs_folder

    if "://" not in output_dir and not Path(output_dir).is_dir():
        what = "a file, not an output folder" if Path(output_dir).exists() else "no such folder"
        raise EvalsinkError(f"{output_dir}: {what}")
    runs = find_runs(output_dir)
    if run_ids:
        unknown = sorted(set(run_ids) - {run.run_id for run in runs})
        if unknown:
            raise EvalsinkError(
                f"no run {', '.join(map(repr, unknown))} in {runs_folder(output_dir)}; a run leaves that "
                f"folder once saved or recovered: `evalsink show {output_dir}` lists saved runs"
            )
        runs = [run for run in runs if run.run_id in run_ids]
    if list_only:
        _print_runs(runs, as_json)
        return
    todo = [run for run in runs if run.recoverable]
    if run_ids and len(todo) < len(runs):
        skipped = [run for run in runs if not run.recoverable]
        raise EvalsinkError("; ".join(_why_not(run) for run in skipped))
    names = [name.strip() for name in sinks.split(",") if name.strip()]
    reports = {run.run_id: recover_run(output_dir, run.run_id, sinks=names) for run in todo}
    _print_reports(reports, [run for run in runs if not run.recoverable], as_json)
    if any(not report.ok for report in reports.values()):
        raise SystemExit(1)


def _why_not(run: RunOnDisk) -> str:
    writer = run.writer
    if writer is not None:
        return f"run {run.run_id!r} is still being written by process {writer.pid} on {writer.host}"
    return f"run {run.run_id!r} was saved; re-push it instead of recovering it"


def _describe(run: RunOnDisk) -> dict[str, Any]:
    return {
        "run_id": run.run_id,
        "state": run.state.value,
        "recoverable": run.recoverable,
        "spools": [str(path) for path in run.spools],
    }


def _print_runs(runs: list[RunOnDisk], as_json: bool) -> None:
    from evalsink.commands._output import echo_json

    if as_json:
        echo_json({"runs": [_describe(run) for run in runs]})
        return
    if not runs:
        click.echo("no run left to recover")
    for run in runs:
        click.echo(f"{run.run_id}: {_status(run)}")


def _status(run: RunOnDisk) -> str:
    """The run's state in words: a manifest that still says "running" may be a process long dead."""
    if not run.recoverable:
        return f"{run.state.value} ({_why_not(run)})"
    if run.state.value == "running":
        if any(m is not None and m.date_id is not None for m in run.manifests):
            return "stopped during save() (its process is gone); recoverable"
        return "stopped before save() (its process is gone); recoverable"
    if run.unpublished:
        return "saved, but its results file never reached the output; recoverable"
    return f"{run.state.value}; recoverable"


def _print_reports(reports: dict[str, SaveReport], skipped: list[RunOnDisk], as_json: bool) -> None:
    from evalsink.commands._output import echo_json

    if as_json:
        echo_json(
            {
                "recovered": {
                    run_id: {
                        "ok": report.ok,
                        "date_id": report.date_id,
                        "sinks": {
                            name: {"ok": outcome.ok, "outputs": outcome.outputs, "errors": outcome.errors}
                            for name, outcome in report.sinks.items()
                        },
                    }
                    for run_id, report in reports.items()
                },
                "skipped": [_describe(run) for run in skipped],
            }
        )
        return
    if not reports:
        click.echo("no run to recover")
    for report in reports.values():
        click.echo(str(report))
    for run in skipped:
        click.echo(f"skipped: {_why_not(run)}")
