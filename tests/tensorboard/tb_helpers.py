"""Logging a small lighteval-shaped evaluation into a tracker, and reading event files back.

(Not in conftest.py: ``from conftest import`` would pick whichever conftest was imported first
when several test folders run in one pytest session.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker

ANATOMY = "lighteval|mmlu:anatomy|5"
ASTRONOMY = "lighteval|mmlu:astronomy|5"
PLAIN = "custom|plain|0"

# per task: the acc of each sample
SAMPLES = {ANATOMY: [1.0, 0.0], ASTRONOMY: [1.0, 1.0], PLAIN: [0.25, 0.75, 0.5]}


def log_evaluation(tracker: EvaluationTracker, samples: dict[str, list[float]] | None = None) -> None:
    """Two suite subtasks and a plain task, each sample logged as details and as metrics."""
    log_accuracy_samples(tracker, samples or SAMPLES)


def read_events(run_dir: Path) -> Any:
    """TensorBoard's own reader over one run folder, with nothing sampled away."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def text_of(accumulator: Any, tag: str) -> list[tuple[int, str]]:
    """(step, text) of every text summary stored under ``<tag>/text_summary``."""
    return [
        (event.step, event.tensor_proto.string_val[0].decode("utf-8"))
        for event in accumulator.Tensors(f"{tag}/text_summary")
    ]
