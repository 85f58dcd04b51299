"""Helpers of the core tests: lighteval-shaped samples and a view of the recorder sink's calls."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import evalsink_recorder

if TYPE_CHECKING:
    from evalsink import EvaluationTracker


@dataclass
class Doc:
    """Shaped like lighteval's ``Doc`` (the fields the core reads or tests care about)."""

    query: str
    choices: list[str] = field(default_factory=lambda: ["A", "B"])
    gold_index: int = 0
    task_name: str = ""


@dataclass
class ModelResponse:
    """Shaped like lighteval's ``ModelResponse``."""

    input: str | None = None
    text: list[str] = field(default_factory=list)
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[list[int]] = field(default_factory=list)
    truncated_tokens_count: int = 0
    padded_tokens_count: int = 0


class Calls:
    """A view of ``evalsink_recorder.CALLS``: (label, hook, info) tuples in call order."""

    @property
    def all(self) -> list[tuple[str, str, dict[str, Any]]]:
        return list(evalsink_recorder.CALLS)

    def hooks(self, label: str = "recorder") -> list[str]:
        return [hook for who, hook, _ in evalsink_recorder.CALLS if who == label]

    def of(self, hook: str, label: str = "recorder") -> list[dict[str, Any]]:
        return [info for who, name, info in evalsink_recorder.CALLS if who == label and name == hook]

    def queries(self, label: str = "recorder") -> list[str]:
        return [query for info in self.of("details_batch", label) for query in info["queries"]]


def log_samples(
    tracker: EvaluationTracker, task: str, count: int, *, start: int = 0, metric: str = "acc"
) -> None:
    """Log ``count`` lighteval-shaped samples (details and metrics) of one task."""
    for i in range(start, start + count):
        doc = Doc(query=f"{task} q{i}")
        response = ModelResponse(input=f"prompt {i}", text=[f"answer {i}"], input_tokens=[i, i + 1])
        value = float(i % 2)
        tracker.details_logger.log(task, doc, response, {metric: value})
        tracker.metrics_logger.log(task, {metric: value})
