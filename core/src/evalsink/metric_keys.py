"""Task and metric names as the keys of a dashboard that nests on ``/`` (W&B, Trackio).

Such dashboards group a run's charts by what precedes the first ``/`` of a key. Keeping
lighteval's task name whole (``lighteval|mmlu:anatomy|5/acc``) puts each task's metrics in one
section and maps every key back to ``results[task][metric]`` without ambiguity. One rule, shared
by the sinks, so a run logged to both carries the same keys.
"""

from __future__ import annotations

import hashlib
import re

DETAILS_PREFIX = "details"
"""Details tables are logged as ``details/{task}``: a task of that name is changed (see key_part)."""

HASH_CHARS = 8
_HASHED = re.compile(rf"~[0-9a-f]{{{HASH_CHARS}}}$")
"""The end of a changed name: a name that already ends like this is changed too, so a changed name
can never equal a name kept as it is."""


def name_digest(name: str) -> str:
    """8 hex digits of the name's SHA-256: what tells apart names that differ only by a ``/``."""
    return hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:HASH_CHARS]


def key_part(name: str, *, is_task: bool = False) -> str:
    """A task or metric name as one key segment, unchanged unless it cannot be kept whole.

    A ``/`` would add a key level, so a name containing one has each ``/`` as ``_`` and ends with
    ``~`` and 8 hex digits of its SHA-256 (``custom|org/ds|0`` -> ``custom|org_ds|0~1a2b3c4d``):
    replacing the ``/`` alone made it collide with ``custom|org_ds|0``. A name that already ends
    like a changed one, and a task named ``details`` (its metrics would share the details tables'
    keys), are changed the same way. The rule depends on the name alone: details streamed before
    the results exist get the key the results use, without knowing the run's other names.
    """
    if "/" in name or _HASHED.search(name) or (is_task and name == DETAILS_PREFIX):
        return f"{name.replace('/', '_')}~{name_digest(name)}"
    return name


def metric_key(task: str, metric: str) -> str:
    """``{task}/{metric}``: lighteval's names verbatim (``|`` and ``:`` kept), as :func:`key_part`."""
    return f"{key_part(task, is_task=True)}/{key_part(metric)}"
