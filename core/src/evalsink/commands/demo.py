"""``evalsink demo``: a small synthetic evaluation, to see the configured sinks work end to end."""

from __future__ import annotations

import sys

import click


@click.command()
@click.option("--output-dir", default="./evalsink-demo", show_default=True, help="Where the run's files go.")
@click.option("--sinks", default=None, help="Comma-separated sinks (default: EVALSINK_SINKS or local).")
@click.option("--samples", default=100, show_default=True, type=click.IntRange(1), help="Samples per task.")
@click.option("--seed", default=0, show_default=True, type=int)
def demo(output_dir: str, sinks: str | None, samples: int, seed: int) -> None:
    """Run a small synthetic evaluation through the configured sinks."""
    from rich.console import Console
    from rich.table import Table

    from evalsink.demo import run_demo

    console = Console()
    # an empty --sinks means no sink, as an empty EVALSINK_SINKS does
    names = [name.strip() for name in sinks.split(",") if name.strip()] if sinks is not None else None
    report, results = run_demo(output_dir, names, samples_per_task=samples, seed=seed)

    table = Table(title=f"evalsink demo — run {report.run_id}")
    table.add_column("task")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for task, metrics in results.items():
        for metric, value in metrics.items():
            if metric.endswith("_stderr"):
                continue
            stderr = metrics.get(f"{metric}_stderr")
            shown = f"{value:.4f}" + (f" ± {stderr:.4f}" if stderr is not None else "")
            table.add_row(task, metric, shown)
    console.print(table)
    if not report.sinks:
        console.print("no sink is enabled (--sinks or EVALSINK_SINKS empty): nothing was written")
    for outcome in report.sinks.values():
        state = "[green]ok[/green]" if outcome.ok else "[red]failed[/red]"
        console.print(f"[bold]{outcome.name}[/bold]: {state} in {outcome.seconds:.2f}s")  # as SaveReport
        for path in outcome.outputs:
            console.print(f"  {path}", markup=False, highlight=False, soft_wrap=True)
        for error in outcome.errors:
            console.print(f"  {error}", markup=False, style="red")
    for warning in report.warnings:
        console.print(f"warning: {warning}", markup=False, style="yellow")
    if not report.ok:
        sys.exit(1)
