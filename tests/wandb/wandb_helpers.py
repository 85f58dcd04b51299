"""Logging a small lighteval-shaped evaluation, and reading the sink's W&B run back.

(Not in conftest.py: ``from conftest import`` would pick whichever conftest was imported first
when several test folders run in one pytest session.)
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sink_samples import log_accuracy_samples
from wandb_runfile import OfflineRun, read_run

from evalsink import EvaluationTracker

ANATOMY = "lighteval|mmlu:anatomy|5"
PLAIN = "custom|plain|0"

# per task: the acc of each sample
SAMPLES = {ANATOMY: [1.0, 0.0], PLAIN: [0.25, 0.75, 0.5]}


def new_project() -> str:
    """A project of its own per test (runs are told apart by folder anyway, but it reads better)."""
    return f"evalsink-test-{uuid.uuid4().hex[:10]}"


def log_evaluation(tracker: EvaluationTracker, samples: dict[str, list[float]] | None = None) -> None:
    """Each sample logged as details and as metrics."""
    log_accuracy_samples(tracker, samples or SAMPLES)


def wandb_tracker(output_dir: Path, sinks: tuple[str, ...] = ("wandb",), **options: Any) -> EvaluationTracker:
    """A tracker with the wandb sink; ``options`` go to the sink's config (project defaulted)."""
    config = {"project": new_project(), **options}
    return EvaluationTracker(output_dir, sinks=list(sinks), sink_config={"wandb": config})


def run_of(tracker: EvaluationTracker) -> OfflineRun:
    """The offline W&B run the tracker's wandb sink created, read back from its files."""
    run_dir = tracker.sink("wandb").run_dir
    assert run_dir is not None, "the wandb sink created no run"
    return read_run(run_dir)


def table_at(run: OfflineRun, key: str) -> list[dict[str, Any]]:
    """The rows of the table logged under ``key`` (its latest value, as the W&B UI shows it)."""
    return run.table(run.summary[key])


def wandb_core_processes() -> list[object]:
    """wandb-core service processes that are children of this process."""
    import psutil

    found = []
    for child in psutil.Process().children(recursive=True):
        try:
            if "wandb-core" in child.name() or any("wandb-core" in part for part in child.cmdline()):
                found.append(child)
        except psutil.NoSuchProcess:
            continue
    return found
