"""Comparing two runs: metric deltas with a direction per metric, hash changes, missing tasks.

This is the logic of ``evalsink diff``, kept apart from printing so it can be tested and reused
(a CI script can call :func:`compare` directly).

Direction, first rule that applies: a ``--lower-is-better`` / ``--higher-is-better`` glob matching
the metric name; what the results files declare (lighteval records ``higher_is_better`` for each
metric in ``config_tasks[task]["metrics"]``; for tasks without a config, such as ``all`` and suite
averages, a declaration shared by every task that has the metric); otherwise higher is better.
``<metric>_stderr`` values are shown beside their metric and never gated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from evalsink.errors import EvalsinkError

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults
    from evalsink.results_files import LoadedResults

HASHES = {
    "hash_examples": "examples",
    "hash_full_prompts": "prompts",
    "hash_input_tokens": "input tokens",
    "hash_cont_tokens": "continuations",
}

REGRESSION = "regression"
IMPROVEMENT = "improvement"
SAME = "same"
WITHIN = "within tolerance"
CHANGED = "changed"  # an orphan _stderr value: shown, never gated
NOT_FINITE = "not finite"
ONLY_A = "only in A"
ONLY_B = "only in B"


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


@dataclass(frozen=True)
class MetricChange:
    """One metric of one task present in either run."""

    task: str
    metric: str
    a: float | None
    b: float | None
    a_stderr: float | None
    b_stderr: float | None
    higher_is_better: bool
    direction_from: str
    gated: bool
    status: str

    @property
    def delta(self) -> float | None:
        """B - A when both values are finite numbers."""
        if self.a is None or self.b is None or not (_finite(self.a) and _finite(self.b)):
            return None
        return self.b - self.a

    def to_json(self) -> dict[str, Any]:
        from evalsink.commands._output import finite

        return {
            "task": self.task,
            "metric": self.metric,
            "a": finite(self.a),
            "b": finite(self.b),
            "a_stderr": finite(self.a_stderr),
            "b_stderr": finite(self.b_stderr),
            "delta": self.delta,
            "higher_is_better": self.higher_is_better,
            "direction_from": self.direction_from,
            "gated": self.gated,
            "status": self.status,
        }


@dataclass(frozen=True)
class HashChange:
    """The four hashes of a task present in both runs: which differ, which one run lacks."""

    task: str
    changed: list[str]
    unknown: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"task": self.task, "changed": self.changed, "unknown": self.unknown}


@dataclass
class Diff:
    a: LoadedResults
    b: LoadedResults
    tolerance: float
    strict: bool
    metrics: list[MetricChange] = field(default_factory=list)
    hashes: list[HashChange] = field(default_factory=list)
    only_in_a: list[str] = field(default_factory=list)
    only_in_b: list[str] = field(default_factory=list)

    @property
    def regressions(self) -> list[MetricChange]:
        return [m for m in self.metrics if m.status == REGRESSION]

    @property
    def strict_failures(self) -> list[str]:
        """What ``--strict`` also fails on: B lost a task, a metric, or a finite value A had."""
        failures = [f"task {task} is missing from B" for task in self.only_in_a]
        for m in self.metrics:
            if m.gated and m.status == ONLY_A:
                failures.append(f"{m.task} {m.metric} is missing from B")
            elif m.gated and m.status == NOT_FINITE and _finite(m.a) and not _finite(m.b):
                failures.append(f"{m.task} {m.metric} has no finite value in B")
        return failures

    @property
    def failed(self) -> bool:
        return bool(self.regressions) or (self.strict and bool(self.strict_failures))

    def to_json(self) -> dict[str, Any]:
        return {
            "a": self.a.describe(),
            "b": self.b.describe(),
            "tolerance": self.tolerance,
            "strict": self.strict,
            "ok": not self.failed,
            "regressions": len(self.regressions),
            "strict_failures": self.strict_failures if self.strict else [],
            "tasks_only_in_a": self.only_in_a,
            "tasks_only_in_b": self.only_in_b,
            "metrics": [m.to_json() for m in self.metrics],
            "hashes": [h.to_json() for h in self.hashes],
        }


class Directions:
    """Decides, per (task, metric), whether higher is better, and says why."""

    def __init__(self, lower: tuple[str, ...], higher: tuple[str, ...], *runs: EvaluationResults) -> None:
        self.lower, self.higher = lower, higher
        self.declared: dict[tuple[str, str], bool] = {}
        for results in runs:  # the later run's declaration wins for a task both declare
            self.declared.update(declared_directions(results))
        by_metric: dict[str, set[bool]] = {}
        for (_, metric), better in self.declared.items():
            by_metric.setdefault(metric, set()).add(better)
        self.shared = {metric: next(iter(seen)) for metric, seen in by_metric.items() if len(seen) == 1}

    def of(self, task: str, metric: str) -> tuple[bool, str]:
        lower = [p for p in self.lower if fnmatchcase(metric, p)]
        higher = [p for p in self.higher if fnmatchcase(metric, p)]
        if lower and higher:
            raise EvalsinkError(
                f"metric {metric!r} matches both --lower-is-better {lower[0]!r} "
                f"and --higher-is-better {higher[0]!r}"
            )
        if lower:
            return False, "--lower-is-better"
        if higher:
            return True, "--higher-is-better"
        if (task, metric) in self.declared:
            return self.declared[(task, metric)], "results file"
        if metric in self.shared:
            return self.shared[metric], "results file"
        return True, "default"


def declared_directions(results: EvaluationResults) -> dict[tuple[str, str], bool]:
    """``higher_is_better`` per (task, metric) from lighteval's task configs, where it is recorded.

    lighteval writes ``{"metric_name": str, "higher_is_better": bool}`` per metric, or a list of
    names with a dict of booleans for metrics that compute several values; anything else is skipped.
    """
    out: dict[tuple[str, str], bool] = {}
    for task, config in results.config_tasks.items():
        metrics = (config.model_extra or {}).get("metrics")
        if not isinstance(metrics, list):
            continue
        for metric in metrics:
            if not isinstance(metric, dict):
                continue
            names, better = metric.get("metric_name"), metric.get("higher_is_better")
            for name in [names] if isinstance(names, str) else names if isinstance(names, list) else []:
                value = better.get(name) if isinstance(better, dict) else better
                if isinstance(name, str) and isinstance(value, bool):
                    out[(task, name)] = value
    return out


def _status(a: float | None, b: float | None, higher: bool, tolerance: float, gated: bool) -> str:
    if a is None or b is None or not (_finite(a) and _finite(b)):
        return NOT_FINITE
    delta = b - a
    if delta == 0:
        return SAME
    if not gated:
        return CHANGED
    worse = -delta if higher else delta
    if worse > tolerance:
        return REGRESSION
    if abs(delta) <= tolerance:
        return WITHIN
    return IMPROVEMENT


def compare(
    a: LoadedResults,
    b: LoadedResults,
    *,
    tolerance: float = 0.0,
    lower_is_better: tuple[str, ...] = (),
    higher_is_better: tuple[str, ...] = (),
    strict: bool = False,
) -> Diff:
    """Compare run B against run A (the baseline): a regression is B worse than A by more than
    ``tolerance`` (absolute) on a metric that is not a ``_stderr``."""
    if not math.isfinite(tolerance) or tolerance < 0:
        raise EvalsinkError(f"the tolerance must be a finite number >= 0, not {tolerance}")
    directions = Directions(lower_is_better, higher_is_better, a.results, b.results)
    results_a, results_b = a.results.results, b.results.results
    diff = Diff(a, b, tolerance, strict)
    diff.only_in_a = [task for task in results_a if task not in results_b]
    diff.only_in_b = [task for task in results_b if task not in results_a]
    for task, metrics_a in results_a.items():
        if task not in results_b:
            continue
        metrics_b = results_b[task]
        names = list(dict.fromkeys([*metrics_a, *metrics_b]))
        for metric in names:
            if metric.endswith("_stderr") and metric[: -len("_stderr")] in names:
                continue  # shown beside its metric
            gated = not metric.endswith("_stderr")
            higher, source = directions.of(task, metric)
            va, vb = metrics_a.get(metric), metrics_b.get(metric)
            if metric not in metrics_b:
                status = ONLY_A
            elif metric not in metrics_a:
                status = ONLY_B
            else:
                status = _status(va, vb, higher, tolerance, gated)
            stderr = f"{metric}_stderr"
            diff.metrics.append(
                MetricChange(
                    task,
                    metric,
                    va,
                    vb,
                    metrics_a.get(stderr),
                    metrics_b.get(stderr),
                    higher,
                    source,
                    gated,
                    status,
                )
            )
    summary_b = b.results.summary_tasks
    for task, summary_a in a.results.summary_tasks.items():
        if task not in summary_b:
            continue
        hashes_a, hashes_b = summary_a.hashes, summary_b[task].hashes
        pairs = {key: (getattr(hashes_a, key), getattr(hashes_b, key)) for key in HASHES}
        changed = [key for key, (x, y) in pairs.items() if x and y and x != y]
        unknown = [key for key, (x, y) in pairs.items() if not (x and y)]
        diff.hashes.append(HashChange(task, changed, unknown))
    return diff
