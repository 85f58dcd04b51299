"""evalsink's conformance kit for sink authors (``pip install "evalsink[testing]"``).

Subclass :class:`SinkConformance` in a sink's test suite; docs/writing-a-sink.md walks through it.
Importing this package imports pytest, so nothing outside tests should.
"""

from __future__ import annotations

from evalsink.testing.conformance import (
    MODEL_NAME,
    FailedRun,
    SavedRun,
    SinkConformance,
    log_evaluation,
)
from evalsink.testing.corpus import Evaluation, Sample, odd_evaluation, plain_evaluation

__all__ = [
    "MODEL_NAME",
    "Evaluation",
    "FailedRun",
    "Sample",
    "SavedRun",
    "SinkConformance",
    "log_evaluation",
    "odd_evaluation",
    "plain_evaluation",
]
