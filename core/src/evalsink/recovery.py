"""Turning what a killed run left on disk (spool + manifest) into a saved run, marked partial.

A run killed before ``save()`` leaves ``.evalsink/runs/<run_id>/details-<id>.jsonl`` (every sample
flushed before the kill) and its ``.meta.json`` manifest (:mod:`evalsink.manifest`). Recovering
resumes that run in a new tracker — the loggers are rebuilt from the spool — and saves it at
once: the results JSON says ``"evalsink_recovery": {"partial": true, ...}`` and holds the metrics
of the recovered samples, aggregated as means (a task's own ``aggregation()`` needs the task
objects, which only the evaluation has).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest
from evalsink.report import SaveReport


@dataclass
class RunOnDisk:
    """A run folder under ``.evalsink/runs``: its spools and what their manifests say."""

    run_id: str
    folder: Path
    spools: list[Path]
    manifests: list[RunManifest | None] = field(default_factory=list)

    @property
    def state(self) -> RunState:
        """RUNNING if any spool's writer may still be at work, else the worst state recorded."""
        states = [m.state if m is not None else RunState.FAILED for m in self.manifests]
        if RunState.RUNNING in states:
            return RunState.RUNNING
        return RunState.FAILED if RunState.FAILED in states else RunState.SAVED

    @property
    def writer(self) -> RunManifest | None:
        """The manifest of a process that may still be writing the run (running, and alive)."""
        return next(
            (
                m
                for m in self.manifests
                if m is not None and m.state is RunState.RUNNING and m.process_alive()
            ),
            None,
        )

    @property
    def alive(self) -> bool:
        return self.writer is not None

    @property
    def recoverable(self) -> bool:
        """Not saved, and nobody still writing it."""
        return self.state is not RunState.SAVED and not self.alive


def runs_folder(output_dir: str | Path) -> Path:
    return Path(output_dir) / ".evalsink" / "runs"


def find_runs(output_dir: str | Path) -> list[RunOnDisk]:
    """Every run with a spool left in ``output_dir``, oldest first."""
    root = runs_folder(output_dir)
    if not root.is_dir():
        return []
    runs = []
    for folder in sorted(root.iterdir(), key=lambda path: path.stat().st_mtime):
        spools = sorted(folder.glob("details-*.jsonl"))
        if folder.is_dir() and spools:
            manifests = [read_manifest(manifest_path(spool)) for spool in spools]
            runs.append(RunOnDisk(folder.name, folder, spools, manifests))
    return runs


def recover_run(
    output_dir: str | Path,
    run_id: str,
    *,
    sinks: Sequence[str] = ("local",),
    sink_config: Mapping[str, Any] | None = None,
) -> SaveReport:
    """Save the run ``run_id`` from its spool, marked partial, to ``sinks`` (default: local files)."""
    from evalsink.tracker import EvaluationTracker

    run = next((found for found in find_runs(output_dir) if found.run_id == run_id), None)
    if run is None:
        raise EvalsinkError(f"no run {run_id!r} to recover in {runs_folder(output_dir)}")
    writer = run.writer
    if writer is not None:
        raise EvalsinkError(
            f"run {run_id!r} is still being written by process {writer.pid} on {writer.host}; "
            "not recovering it"
        )
    if run.state is RunState.SAVED:
        raise EvalsinkError(
            f"run {run_id!r} was saved (a sink failed after the local files were written): "
            "re-push it with `evalsink push` instead"
        )
    manifest = next((m for m in run.manifests if m is not None), None)
    settings = manifest.settings if manifest is not None else {}
    tracker = EvaluationTracker(
        output_dir,
        results_path_template=settings.get("results_path_template"),
        save_details=bool(settings.get("save_details", True)),
        sinks=list(sinks),
        sink_config=sink_config,
        run_id=run_id,
        resume=True,
    )
    assert tracker.recovery is not None
    tracker.recovery["partial"] = True
    return tracker.save()


def recover_all(output_dir: str | Path, **options: Any) -> dict[str, SaveReport]:
    """Recover every recoverable run of ``output_dir``; run id -> report."""
    return {
        run.run_id: recover_run(output_dir, run.run_id, **options)
        for run in find_runs(output_dir)
        if run.recoverable
    }
