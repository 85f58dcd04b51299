"""Which spooled samples held NaN or ±inf values, and how many: the spool writes them as null.

A run rebuilt from a spool reports how many values were written as null, as the run itself
would have. A count per task was not enough: the manifest is written before each batch reaches
the spool, and a kill between the two left counts that took in samples the spool never got. So
each manifest records, per task, flat ``[start, stop, count, ...]`` triples: samples ``start`` to
``stop`` (exclusive) each held ``count`` such values. A metric that is NaN in every sample is one
triple, whatever the number of samples.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping

Positions = dict[str, list[int]]
"""Task name -> flat ``[start, stop, count, ...]`` triples of sample positions."""


def add(positions: Positions, task_name: str, index: int, count: int) -> None:
    """Record that sample ``index`` of ``task_name`` held ``count`` (> 0) non-finite values."""
    triples = positions.setdefault(task_name, [])
    if triples and triples[-2] == index and triples[-1] == count:
        triples[-2] = index + 1  # the run of samples with this count goes on
    else:
        triples.extend((index, index + 1, count))


def remove(positions: Positions, task_name: str, index: int) -> None:
    """Undo :func:`add` of the task's last sample ``index`` (it could not be spooled after all)."""
    triples = positions[task_name]
    triples[-2] = index
    if triples[-3] == index:  # the triple held this sample alone
        del triples[-3:]
    if not triples:
        del positions[task_name]


def count_at(positions: Mapping[str, list[int]], task_name: str, index: int) -> int:
    """How many non-finite values sample ``index`` of ``task_name`` held."""
    triples = positions.get(task_name)
    if not triples:
        return 0
    starts = triples[::3]
    at = bisect.bisect_right(starts, index) - 1
    if at < 0 or index >= triples[3 * at + 1]:
        return 0
    return triples[3 * at + 2]


def below(positions: Mapping[str, list[int]], counts: Mapping[str, int]) -> Positions:
    """Only the positions of samples that are in the spool (``counts`` per task)."""
    kept: Positions = {}
    for task_name, triples in positions.items():
        count = counts.get(task_name, 0)
        cut: list[int] = []
        for start, stop, values in zip(triples[::3], triples[1::3], triples[2::3], strict=True):
            if start < count:
                cut.extend((start, min(stop, count), values))
        if cut:
            kept[task_name] = cut
    return kept


def totals(positions: Mapping[str, list[int]]) -> dict[str, int]:
    """Per task, the non-finite values of all its recorded samples."""
    return {
        task_name: sum(
            (stop - start) * values
            for start, stop, values in zip(triples[::3], triples[1::3], triples[2::3], strict=True)
        )
        for task_name, triples in positions.items()
    }
