"""W&B keys for lighteval's results, and the numbers that go under them.

W&B groups a run's charts into sections by what precedes the ``/`` of a key. Keeping the task
name whole (``lighteval|mmlu:anatomy|5/acc``) puts each task's metrics in one section and maps
every key back to ``results[task][metric]`` without ambiguity; lighteval's ``:`` -> ``/``
rewriting made ``mmlu:anatomy`` and ``mmlu/anatomy`` collide and split a task across sections.
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field

RESULTS_KEY = "results"
"""The results table (task, metric, value, stderr)."""

DETAILS_PREFIX = "details"
"""Details tables are logged as ``details/{task}``."""

STDERR_SUFFIX = "_stderr"

ARTIFACT_TYPE = "evaluation-results"
_ARTIFACT_NAME_MAX = 128  # wandb's limit


def _part(name: str) -> str:
    """A task or metric name as one key segment: a ``/`` would add a level, so it becomes ``_``."""
    return name.replace("/", "_")


def metric_key(task: str, metric: str) -> str:
    """``{task}/{metric}``, lighteval's names verbatim (``|`` and ``:`` kept, ``/`` -> ``_``)."""
    return f"{_part(task)}/{_part(metric)}"


def details_key(task: str, wandb_run_id: str = "") -> str:
    """``details/{task}``: one section holds every task's details table.

    W&B stores an incremental table as an artifact named ``run-{run id}-incr-{key}`` (less the
    characters artifact names refuse, plus a 7-character suffix when any were removed), and
    refuses names over 128 characters: a ~100-character task name failed the sink. A key that
    could not fit keeps the start of the task name and ends with ``~`` and 8 hex digits of the
    whole name's hash, so tasks sharing a long prefix keep separate tables.
    """
    key = f"{DETAILS_PREFIX}/{_part(task)}"
    budget = _ARTIFACT_NAME_MAX - len(f"run-{wandb_run_id}-incr-") - _SANITIZED_SUFFIX
    if len(key) <= budget:
        return key
    digest = hashlib.sha256(task.encode("utf-8", "surrogatepass")).hexdigest()[:8]
    keep = max(budget - len(f"{DETAILS_PREFIX}/~{digest}"), 0)
    return f"{DETAILS_PREFIX}/{_part(task)[:keep]}~{digest}"


_SANITIZED_SUFFIX = 7  # "-" and 6 characters, added by wandb when it removes characters from a name


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


@dataclass
class Scalars:
    """The aggregated results as W&B receives them."""

    metrics: dict[str, float] = field(default_factory=dict)
    """``{task}/{metric}`` -> value, stderrs included; only finite values."""
    rows: list[list[str | float | None]] = field(default_factory=list)
    """Results-table rows ``[task, metric, value, stderr]``; null where a value is NaN/inf/missing."""
    skipped: list[str] = field(default_factory=list)
    """Keys left out of ``metrics`` because their value was null (NaN or infinite)."""


def scalars(results: dict[str, dict[str, float | None]]) -> Scalars:
    """Split ``results`` (task -> metric -> value) into logged metrics and results-table rows.

    A metric ending in ``_stderr`` is the stderr of the metric without the suffix: it is logged as
    a series of its own, and shown in that metric's table row rather than as a row.
    """
    out = Scalars()
    for task, values in results.items():
        for metric, value in values.items():
            key = metric_key(task, metric)
            finite = _finite(value)
            if finite is None:
                out.skipped.append(key)
            else:
                out.metrics[key] = finite
            if not metric.endswith(STDERR_SUFFIX):
                out.rows.append([task, metric, finite, _finite(values.get(metric + STDERR_SUFFIX))])
    return out


def artifact_name(model_name: str | None) -> str:
    """``evalsink-results-{model}``: one artifact per model, a new version per evaluation.

    Artifact names allow letters, digits, ``-``, ``_`` and ``.`` only: ``/`` becomes ``__`` (as
    in lighteval's Hub repo names), anything else ``_``.
    """
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", (model_name or "model").replace("/", "__"))
    return f"evalsink-results-{slug}"[:_ARTIFACT_NAME_MAX]
