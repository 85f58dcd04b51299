"""Which spooled samples had a metric logged as ``None``: JSON writes None and NaN alike as null.

A metric value of None is left out of the mean (and counted), where a NaN makes the mean NaN. In
one process the logger sees which it was; a run rebuilt from a spool (another rank's details
merged by rank 0, a resumed or recovered run) only sees null. Each spool's run manifest therefore
records, per task and metric, the positions of the samples whose value was None, in the task's
spool order, as flat ``[start, stop, start, stop, ...]`` ranges: a metric that is None in every
sample is one range, whatever the number of samples. Every other null read back is a NaN (or
±inf: the mean is not finite either way, and written as null).
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

Positions = dict[str, dict[str, list[int]]]
"""Task name -> metric name -> flat ``[start, stop, ...]`` ranges of sample positions."""


def add(positions: Positions, task_name: str, index: int, metric_names: list[str]) -> None:
    """Record that sample ``index`` of ``task_name`` had these metrics logged as None."""
    by_metric = positions.setdefault(task_name, {})
    for name in metric_names:
        ranges = by_metric.setdefault(name, [])
        if ranges and ranges[-1] == index:
            ranges[-1] = index + 1  # the run of Nones goes on
        else:
            ranges.extend((index, index + 1))


def remove(positions: Positions, task_name: str, index: int, metric_names: list[str]) -> None:
    """Undo :func:`add` of the task's last sample ``index`` (it could not be spooled after all)."""
    by_metric = positions[task_name]
    for name in metric_names:
        ranges = by_metric[name]
        ranges[-1] = index
        if ranges[-2] == index:  # the range held this sample alone
            del ranges[-2:]
        if not ranges:
            del by_metric[name]
    if not by_metric:
        del positions[task_name]


def names_at(positions: Mapping[str, Mapping[str, list[int]]], task_name: str, index: int) -> set[str]:
    """The metrics of sample ``index`` of ``task_name`` that were logged as None."""
    by_metric = positions.get(task_name)
    if not by_metric:
        return set()
    return {name for name, ranges in by_metric.items() if bisect.bisect_right(ranges, index) % 2 == 1}


def below(positions: Mapping[str, Mapping[str, list[int]]], counts: Mapping[str, int]) -> Positions:
    """Only the positions of samples that are in the spool (``counts`` per task): a resumed run
    logs its new samples after them, and must not inherit a None of a sample lost unflushed."""
    kept: Positions = {}
    for task_name, by_metric in positions.items():
        count = counts.get(task_name, 0)
        for name, ranges in by_metric.items():
            cut: list[int] = []
            for start, stop in zip(ranges[::2], ranges[1::2], strict=True):
                if start < count:
                    cut.extend((start, min(stop, count)))
            if cut:
                kept.setdefault(task_name, {})[name] = cut
    return kept
