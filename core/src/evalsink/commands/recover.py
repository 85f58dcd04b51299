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
    "evalsink_recovery": {"partial": true, ...}. Exit code 1 when a sink failed or a run could
    not be recovered (the others still are).
    """
    from pathlib import Path

    from evalsink.errors import EvalsinkError
    from evalsink.recovery import find_runs, left_alone, missing_run_error, recover_runs, why_not_recoverable

    names = [name.strip() for name in sinks.split(",") if name.strip()]
    if not list_only:
        _check_targets(names)
    if "://" not in output_dir and not Path(output_dir).is_dir():
        what = "a file, not an output folder" if Path(output_dir).exists() else "no such folder"
        raise EvalsinkError(f"{output_dir}: {what}")
    runs = find_runs(output_dir)
    if run_ids:
        unknown = sorted(set(run_ids) - {run.run_id for run in runs})
        if unknown:
            raise missing_run_error(output_dir, unknown)
        runs = [run for run in runs if run.run_id in run_ids]
    if list_only:
        _print_runs(runs, as_json)
        return
    if run_ids:  # runs asked for by name: each must be recoverable
        refused = [why for why in map(why_not_recoverable, runs) if why is not None]
        if refused:
            raise EvalsinkError("; ".join(refused))
    reports, failures = recover_runs(output_dir, runs, sinks=names)
    _print_reports(reports, [run for run in runs if left_alone(run)], failures, as_json)
    if failures or any(not report.ok for report in reports.values()):
        raise SystemExit(1)


def _check_targets(names: list[str]) -> None:
    """Refuse ``--to`` before any run is touched: with no sink a recovery saved nothing and then
    removed the spool, the run's only copy; an unknown sink failed each run's recovery in turn.

    Unlike ``push``, ``local`` is a valid target: it is where a recovered run is usually saved.
    """
    from evalsink.discovery import find_sinks

    if not names:
        raise click.BadParameter(
            "no sink to recover to (the default is local; a recovery to no sink would remove the "
            "run's spool, its only copy)",
            param_hint="'--to'",
        )
    find_sinks(names)  # not installed, or claimed twice: an EvalsinkError (exit code 2)


def _why_not(run: RunOnDisk) -> str:
    from evalsink.recovery import why_not_recoverable

    return why_not_recoverable(run) or f"run {run.run_id!r} is recoverable"


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
    """The run's state in words, and how many ranks' spools a recovery merges."""
    status = _state(run)
    if run.recoverable and len(run.spools) > 1:
        return status.replace("; recoverable", f"; recoverable, {len(run.spools)} ranks' spools merged")
    return status


def _state(run: RunOnDisk) -> str:
    """The run's state in words: a manifest that still says "running" may be a process long dead."""
    if not run.recoverable:
        from evalsink.recovery import left_alone

        if left_alone(run):
            return f"{run.state.value} ({_why_not(run)})"
        return f"not recoverable: {_why_not(run)}"
    if run.state.value == "running":
        if any(m is not None and m.date_id is not None for m in run.manifests):
            return "stopped during save() (its process is gone); recoverable"
        return "stopped before save() (its process is gone); recoverable"
    if run.unpublished:
        return "saved, but its results file never reached the output; recoverable"
    if run.state.value == "shard_done":  # only other ranks' finished shards: rank 0 never flushed
        return "never saved: rank 0 left no spool (it stopped before its first flush); recoverable"
    return f"{run.state.value}; recoverable"


def _print_reports(
    reports: dict[str, SaveReport], skipped: list[RunOnDisk], failures: dict[str, str], as_json: bool
) -> None:
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
                "failed": failures,
            }
        )
        return
    if not reports and not failures:
        click.echo("no run to recover")
    for report in reports.values():
        click.echo(str(report))
    for run in skipped:
        click.echo(f"skipped: {_why_not(run)}")
    for run_id, why in failures.items():
        # most reasons name the run already ("run 'x' has 2 spools..."); an exception's text does not
        named = why.startswith((f"run {run_id!r}", f"run {run_id} "))
        click.echo(f"not recovered: {why}" if named else f"not recovered: run {run_id!r}: {why}")
