"""``evalsink push``: send saved runs to other sinks (publish later, or re-send after a failure)."""

from __future__ import annotations

from functools import partial

import click


@click.command("push")
@click.argument("path", type=click.Path())  # a file:// URL too: a missing path is reported by saved_runs
@click.option(
    "--to",
    "sinks",
    required=True,
    metavar="SINKS",
    help="Comma-separated sinks (hub, tensorboard, wandb, trackio...), configured by EVALSINK_<SINK>__*.",
)
@click.option("--model", metavar="PATTERN", help="Only runs whose model name ends with PATTERN (a glob).")
@click.option("--date", metavar="DATE_ID", help="Only runs whose date id starts with DATE_ID.")
@click.option("--all", "every", is_flag=True, help="Every run, not only the newest run of each model.")
@click.option(
    "--org", "hub_results_org", metavar="ORG", help="lighteval's hub_results_org, for the hub sink."
)
@click.option("--public", is_flag=True, help="lighteval's public flag (hub sink: public repository).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def push(
    path: str,
    sinks: str,
    model: str | None,
    date: str | None,
    every: bool,
    hub_results_org: str | None,
    public: bool,
    quiet: bool,
) -> None:
    """Replay saved runs in PATH (evalsink's or lighteval's output layout) into other sinks.

    PATH is an output dir (the newest run of each model, unless --all) or a results JSON file, as a
    path or a file:// URL.
    Each run's details are read back from its parquet files and streamed to the sinks as during
    the evaluation; its results are sent unchanged, under its original date id. A run missing a
    task's details file, or with one that is not readable parquet, is an error before anything is
    pushed. Exit code 1 when a sink failed (the files on disk are untouched: push again).
    """
    from evalsink.replay import check_targets, replay_run, saved_runs

    names = [name.strip() for name in sinks.split(",") if name.strip()]
    check_targets(names)
    runs = saved_runs(path, model=model, date=date, every=every)
    for saved in runs:  # a missing or corrupt details file refuses the push before any run is sent
        saved.checked_details_files()
    options = {"hub_results_org": hub_results_org or "", "public": public}
    failed = False
    for saved in runs:
        label = f"{saved.loaded.model} {saved.date_id}"
        if quiet:
            report = replay_run(saved, names, tracker_options=options)
        else:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
            )
            # on stderr: stdout is the report, which a script may read (a bar left a blank line there)
            with Progress(*columns, transient=True, console=Console(stderr=True)) as progress:
                bar = progress.add_task(label, total=saved.count_rows())
                report = replay_run(
                    saved, names, tracker_options=options, on_sample=partial(progress.advance, bar)
                )
        click.echo(str(report).replace(f"run {report.run_id}", f"pushed {saved.loaded.model}", 1))
        failed = failed or not report.ok
    if failed:
        raise SystemExit(1)
