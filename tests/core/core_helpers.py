"""Helpers of the core tests: lighteval-shaped samples and a view of the recorder sink's calls."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


def save_run(
    output: Path,
    samples: Mapping[str, Sequence[Mapping[str, Any]]],
    *,
    model: str = "org/m",
    prompt: str = "question",
    task_configs: Mapping[str, Any] | None = None,
    **tracker_kwargs: Any,
) -> Path:
    """Run the real tracker (local sink) and return the results file it wrote.

    Each task gets one sample per metrics dict; ``prompt`` changes the queries, so the example and
    prompt hashes change with it. Used by the CLI tests, which read the files a run leaves.
    """
    from evalsink import EvaluationTracker

    tracker = EvaluationTracker(output, sinks=["local"], **tracker_kwargs)
    tracker.general_config_logger.log_model_info(model_name=model)
    if task_configs:
        tracker.task_config_logger.log(task_configs)
    for task, rows in samples.items():
        for index, metrics in enumerate(rows):
            doc = {"query": f"{task} {prompt} {index}", "choices": ["a", "b"], "gold_index": 0}
            response = {"input": f"{task} {prompt} {index}", "text": ["a"], "input_tokens": [index]}
            tracker.details_logger.log(task, doc, response, dict(metrics))
            tracker.metrics_logger.log(task, dict(metrics))
    report = tracker.save()
    assert report.ok, str(report)
    return Path(report["local"].outputs[0])


def run_cli(
    *args: str | Path, cwd: Path | None = None, env: Mapping[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m evalsink ARGS`` in a fresh process, as a user runs it: no EVALSINK_* variables
    of the test run, unless given in ``env``, and a wide terminal (long paths on one line)."""
    environ = {key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")}
    return subprocess.run(
        [sys.executable, "-m", "evalsink", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
        env={**environ, "COLUMNS": "250", **(env or {})},
        check=False,
    )


def run_pytest(cwd: Path, *args: str) -> list[tuple[str, str, str]]:
    """Run pytest on ``args`` in a child; (class name, test name, outcome) of every test case, the
    outcome ``passed``, ``failure``, ``error`` or ``skipped`` (read from its JUnit report)."""
    import xml.etree.ElementTree as ET

    report = cwd / "report.xml"
    subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--junitxml={report}", *args],
        cwd=cwd,
        capture_output=True,
        check=False,
        timeout=300,
    )
    cases = []
    for case in ET.parse(report).getroot().iter("testcase"):
        kinds = [child.tag for child in case if child.tag in {"failure", "error", "skipped"}]
        cases.append(
            (
                case.attrib["classname"].rsplit(".", 1)[-1],
                case.attrib["name"],
                kinds[0] if kinds else "passed",
            )
        )
    return cases
