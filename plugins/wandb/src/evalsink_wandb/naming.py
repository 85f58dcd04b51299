"""W&B keys for lighteval's results, and the numbers that go under them.

W&B groups a run's charts into sections by what precedes the ``/`` of a key. Keeping the task
name whole (``lighteval|mmlu:anatomy|5/acc``) puts each task's metrics in one section and maps
every key back to ``results[task][metric]`` without ambiguity; lighteval's ``:`` -> ``/``
rewriting made ``mmlu:anatomy`` and ``mmlu/anatomy`` collide and split a task across sections.

A name that cannot be kept whole (see :func:`key_part`) is changed by a rule that depends on the
name alone, so the scalars, the results table and the details streamed before the results exist
all agree on it without knowing the other names of the run.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from evalsink.metric_keys import DETAILS_PREFIX, key_part, metric_key
from evalsink.metric_keys import name_digest as _digest

RESULTS_KEY = "results"
"""The results table (task, metric, value, stderr)."""

STDERR_SUFFIX = "_stderr"

ARTIFACT_TYPE = "evaluation-results"
_ARTIFACT_NAME_MAX = 128  # wandb's limit


def _part(name: str) -> str:
    """A name with every ``/`` (which would add a key level) as ``_``."""
    return name.replace("/", "_")


def details_key(task: str, wandb_run_id: str = "") -> str:
    """``details/{task}``: one section holds every task's details table (task as :func:`key_part`).

    W&B stores an incremental table as an artifact named ``run-{run id}-incr-{key}`` (less the
    characters artifact names refuse, plus a 7-character suffix when any were removed), and
    refuses names over 128 characters: a ~100-character task name failed the sink. A key that
    could not fit keeps the start of the task name and ends with ``~`` and 8 hex digits of the
    whole name's hash, so tasks sharing a long prefix keep separate tables.
    """
    key = f"{DETAILS_PREFIX}/{key_part(task, is_task=True)}"
    budget = _ARTIFACT_NAME_MAX - len(f"run-{wandb_run_id}-incr-") - _SANITIZED_SUFFIX
    if len(key) <= budget:
        return key
    digest = _digest(task)
    keep = max(budget - len(f"{DETAILS_PREFIX}/~{digest}"), 0)
    return f"{DETAILS_PREFIX}/{_part(task)[:keep]}~{digest}"


def renamed(name: str, *, is_task: bool = False) -> str | None:
    """What the user is told when a name is not kept as it is in its keys, else None."""
    part = key_part(name, is_task=is_task)
    if part == name:
        return None
    kind = "task" if is_task else "metric"
    return f"{kind} {name!r} is logged as {part!r} in keys: a '/' would add a key level (see the docs)"


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
    renamed: list[str] = field(default_factory=list)
    """What to tell the user about each task or metric name not kept as it is in its keys."""


def scalars(results: dict[str, dict[str, float | None]]) -> Scalars:
    """Split ``results`` (task -> metric -> value) into logged metrics and results-table rows.

    A metric ending in ``_stderr`` is the stderr of the metric without the suffix: it is logged as
    a series of its own, and shown in that metric's table row rather than as a row.
    """
    out = Scalars()
    told: set[str] = set()
    for task, values in results.items():
        for name, is_task in ((task, True), *((metric, False) for metric in values)):
            message = renamed(name, is_task=is_task)
            if message is not None and message not in told:
                told.add(message)
                out.renamed.append(message)
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
    in lighteval's Hub repo names), anything else ``_``. That alone mapped different models to one
    collection (``org/模型`` and ``org/型号`` both ``org___``; two long checkpoint paths cut at the
    same length), so a name the mapping cannot give back exactly (it replaced a character other
    than ``/``, the name already held ``__``, or it was cut to fit) ends with ``-`` and 8 hex
    digits of the model name's SHA-256. Other names are unchanged (``org/m`` -> ``org__m``).
    """
    model = model_name or "model"
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", model.replace("/", "__"))
    name = f"evalsink-results-{slug}"
    if slug.replace("__", "/") == model and len(name) <= _ARTIFACT_NAME_MAX:
        return name
    suffix = f"-{_digest(model)}"
    return name[: _ARTIFACT_NAME_MAX - len(suffix)] + suffix
