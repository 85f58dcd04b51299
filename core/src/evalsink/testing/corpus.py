"""Evaluations the conformance kit logs: an ordinary one, and one full of what breaks backends.

The odd evaluation gathers what real runs produce and sinks most often mishandle: text in many
scripts, control characters, very long generations, fields missing from some samples or appearing
only in later ones, NaN and infinite metric values, task names with lighteval's ``|`` and ``:``.
Every value is plain Python, so any sink can be run against it without extra libraries.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

PLAIN_TASKS = ("lighteval|mmlu:anatomy|5", "custom|plain|0")

ODD_TEXTS = (
    "héllo wörld",
    "数学の問題 🦜",
    "مرحبا بالعالم",  # right-to-left
    "e\u0301 combining, zero\u200bwidth, \u202eoverride",
    'tab\tnew\nline\r\nquote" backslash\\',
    "nul\x00inside",
    "",
)


@dataclass
class Sample:
    """One logged sample, as a lighteval pipeline passes it to ``details_logger.log``."""

    task: str
    doc: dict[str, Any]
    model_response: dict[str, Any]
    metrics: dict[str, Any]


@dataclass
class Evaluation:
    """The samples of an evaluation, plus what the kit can assert about any sink's output."""

    samples: list[Sample] = field(default_factory=list)

    @property
    def tasks(self) -> list[str]:
        return list(dict.fromkeys(sample.task for sample in self.samples))

    def count(self, task: str) -> int:
        return sum(1 for sample in self.samples if sample.task == task)


def plain_evaluation(samples_per_task: int = 5) -> Evaluation:
    """Two tasks (a ``suite:subtask`` and a plain one), multiple-choice samples, one ``acc``."""
    evaluation = Evaluation()
    for task in PLAIN_TASKS:
        for index in range(samples_per_task):
            query = f"{task} question {index}"
            evaluation.samples.append(
                Sample(
                    task=task,
                    doc={"query": query, "choices": ["yes", "no"], "gold_index": index % 2},
                    model_response={"input": query, "text": ["yes"]},
                    metrics={"acc": float(index % 2 == 0)},
                )
            )
    return evaluation


def odd_evaluation(large_task_samples: int = 1500) -> Evaluation:
    """Odd values, odd task names, and one task large enough to arrive in many batches."""
    evaluation = Evaluation()
    unicode_task = "custom|ünïcödé:数学|0"
    for index, text in enumerate(ODD_TEXTS):
        doc: dict[str, Any] = {"query": text, "gold_index": 0}
        if index % 2 == 0:
            doc["choices"] = [text, "other"]  # a field missing from every other sample
        if index >= 4:
            doc["late_field"] = {"nested": [index, text]}  # appears only in later samples
        evaluation.samples.append(
            Sample(
                task=unicode_task,
                doc=doc,
                model_response={"input": text, "text": [text * 3]},
                metrics={"acc": float(index % 2), "score": index / 7},
            )
        )
    for value in (math.nan, math.inf, -math.inf, 0.5):
        evaluation.samples.append(
            Sample(
                task="custom|non_finite|0",
                doc={"query": f"value {value}"},
                model_response={"input": f"value {value}", "text": [""]},
                metrics={"acc": value},
            )
        )
    for index in range(3):  # bytes (an image as lighteval's multimodal docs carry it): base64 in JSON
        image = {"path": None, "bytes": b"\x89PNG\r\n\x1a\n" + bytes(range(index * 80, index * 80 + 80))}
        evaluation.samples.append(
            Sample(
                task="custom|image_bytes|0",
                doc={"query": f"what is in image {index}?", "images": [image] if index else None},
                model_response={"input": f"<image> what is in image {index}?", "text": ["a cat"]},
                metrics={"acc": float(index % 2)},
            )
        )
    long_text = "long generation " * 8192  # ~128 KiB in one cell
    evaluation.samples.append(
        Sample(
            task="custom|long_text|0",
            doc={"query": long_text, "choices": []},
            model_response={"input": long_text, "text": [long_text]},
            metrics={"acc": 1.0},
        )
    )
    for index in range(large_task_samples):
        query = f"large task question {index}"
        evaluation.samples.append(
            Sample(
                task="lighteval|large:many_batches|0",
                doc={"query": query, "choices": ["a", "b", "c"], "gold_index": index % 3},
                model_response={"input": query, "text": ["abc"[index % 3]]},
                metrics={"acc": float(index % 3 == 0)},
            )
        )
    return evaluation
