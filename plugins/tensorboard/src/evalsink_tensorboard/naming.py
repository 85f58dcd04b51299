"""Turning a results table into TensorBoard tags, the way lighteval's ``push_to_tensorboard`` named them.

Kept free of tensorboardX so the naming can be tested, documented and reasoned about on its own.
The rules (docs/sinks/tensorboard.md has the table):

* a results key ``suite|task|fewshot`` (exactly three ``|``-separated parts) is shown as its middle
  part ``task``; any other key (``all``, ``mmlu:anatomy|5``) is shown whole;
* a shown name containing ``:`` belongs to the suite before the first ``:``
  (``mmlu:anatomy`` -> ``mmlu``); its metrics go to ``{prefix}_{suite}/{task}/{metric}``;
* a suite average (shown name ``{suite}:_average``) goes to ``{prefix}/{suite}/{metric}``;
* other tasks go to ``{prefix}/{task}/{metric}``;
* a metric ending in ``_stderr`` goes to ``stderr_{prefix}/{task}/{metric}`` instead (``{task}``
  being ``{suite}`` for an average);
* when two results keys would end up on the same tag (``lighteval|mmlu:anatomy|5`` and
  ``lighteval|mmlu:anatomy|0``), every key involved is shown whole instead (a suite average then
  goes to ``{prefix}/{key}/{metric}``), so no value silently overwrites another at the same step;
* finally every character other than letters, digits, ``_``, ``-``, ``.`` and ``/`` becomes ``_``:
  tensorboardX does this to every scalar tag (so lighteval's files had these tags too); doing it
  here means the tags listed and checked for collisions are the tags in the file.
"""

from __future__ import annotations

import math
import re
import struct
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field

STDERR_SUFFIX = "_stderr"
AVERAGE_SUBTASK = "_average"

# tensorboardX.summary._INVALID_TAG_CHARACTERS: what add_scalar replaces by "_" (and it strips
# leading "/"). Repeated here so that the tags we report and de-duplicate are the stored ones.
_INVALID_TAG_CHARACTERS = re.compile(r"[^-/\w\.]")


def clean_tag(tag: str) -> str:
    """The tag as tensorboardX stores a scalar under it."""
    return _INVALID_TAG_CHARACTERS.sub("_", tag).lstrip("/")


def shown_task_name(results_key: str) -> str:
    """lighteval's rule: ``suite|task|fewshot`` is shown as ``task``; anything else whole."""
    parts = results_key.split("|")
    return parts[1] if len(parts) == 3 else results_key


@dataclass(frozen=True)
class ScalarPoint:
    """One scalar to write: its final tag, its value, and where it came from (for messages)."""

    tag: str
    value: float
    task: str
    metric: str


def _tag(prefix: str, key: str, whole: bool, metric: str) -> str:
    """The cleaned tag of ``key``'s ``metric``; ``whole`` shows the full key (after a collision)."""
    suite, colon, subtask = shown_task_name(key).partition(":")
    stderr = metric.endswith(STDERR_SUFFIX)
    if colon and subtask == AVERAGE_SUBTASK:  # a suite average stays an average when shown whole
        namespace = f"stderr_{prefix}" if stderr else prefix
        return clean_tag(f"{namespace}/{key if whole else suite}/{metric}")
    shown = key if whole else shown_task_name(key)
    if stderr:
        return clean_tag(f"stderr_{prefix}/{shown}/{metric}")
    if ":" in shown:
        return clean_tag(f"{prefix}_{shown.split(':')[0]}/{shown}/{metric}")
    return clean_tag(f"{prefix}/{shown}/{metric}")


def as_float32(value: float) -> float | None:
    """``value`` as TensorBoard stores a scalar (a float32), or None when beyond float32's range.

    tensorboardX writes ``simple_value``, a float32: a finite value above ~3.4e38 in magnitude
    would read back as ±inf and one below ~1.4e-45 as 0, silently. ``struct`` rounds exactly as
    numpy's float32 does and refuses, rather than saturates, what does not fit.
    """
    try:
        stored: float = struct.unpack("<f", struct.pack("<f", float(value)))[0]
    except OverflowError:  # beyond float32 (struct.pack), or an int beyond float64 (float())
        return None
    return stored


def _finite(value: float) -> bool:
    """Not NaN nor infinite; an int too large for a float64 is finite (and beyond float32's range)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return True


def _as_float(value: float) -> float:
    """``value`` as a float for messages; ±inf for an int too large for a float64."""
    try:
        return float(value)
    except OverflowError:
        return math.inf if value > 0 else -math.inf


@dataclass
class TagPlan:
    """What the sink writes for one results table: scalars, plus what it left out and why."""

    scalars: list[ScalarPoint]
    skipped_null: list[tuple[str, str]]
    """(task, metric) pairs whose value is null (NaN or infinite in the evaluation): not written."""
    duplicates: list[tuple[str, str, str]]
    """(task, metric, tag) left out because another value already claimed the tag."""
    out_of_range: list[tuple[str, str, float]] = field(default_factory=list)
    """(task, metric, value) beyond float32's range (TensorBoard would show ±inf): not written."""
    flushed_to_zero: list[tuple[str, str, float]] = field(default_factory=list)
    """(task, metric, value) non-zero but smaller than float32's smallest: written as 0."""


def plan_scalars(results: Mapping[str, Mapping[str, float | None]], prefix: str) -> TagPlan:
    """Every scalar tag and value for ``results`` (lighteval's ``results`` section).

    Left out, and listed in the plan so the sink can say so: null/NaN/inf values, values beyond
    float32's range (TensorBoard stores float32: they would read back as ±inf, which plots and
    smoothing take for a real value), and a value whose tag another one took. A non-zero value
    float32 can only hold as 0 is written (0 is the nearest it can store) and listed.
    """

    def tags_for(key: str, whole: bool) -> dict[str, str]:
        return {metric: _tag(prefix, key, whole, metric) for metric in results[key]}

    claims: dict[str, set[str]] = defaultdict(set)
    for key in results:
        for tag in tags_for(key, whole=False).values():
            claims[tag].add(key)
    shown_whole = {key for keys in claims.values() if len(keys) > 1 for key in keys}

    plan = TagPlan(scalars=[], skipped_null=[], duplicates=[])
    seen: set[str] = set()
    for key, metrics in results.items():
        tags = tags_for(key, whole=key in shown_whole)
        for metric, value in metrics.items():
            if value is None or not _finite(value):  # null in evalsink's files, bare in lighteval's
                plan.skipped_null.append((key, metric))
                continue
            stored = as_float32(value)
            if stored is None:  # would read back as ±inf: an overflow, not the value
                plan.out_of_range.append((key, metric, _as_float(value)))
                continue
            tag = tags[metric]
            if tag in seen:  # only left when two names differ by characters the cleaning replaced
                plan.duplicates.append((key, metric, tag))
                continue
            seen.add(tag)
            if stored == 0.0 and value != 0:
                plan.flushed_to_zero.append((key, metric, float(value)))
            plan.scalars.append(ScalarPoint(tag=tag, value=float(value), task=key, metric=metric))
    return plan
