"""evalsink: an evaluation-results tracker whose outputs are plugins ("sinks").

``from evalsink import EvaluationTracker`` replaces lighteval's tracker. Names are loaded on first
use, so ``import evalsink`` stays fast and imports none of pydantic, pluggy or pyarrow until needed.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from evalsink.errors import (
        DuplicateSinkError,
        EncodeError,
        EvalsinkError,
        SinkConfigError,
        SinkFailedError,
        SinkLoadError,
        SinkNotInstalledError,
    )
    from evalsink.hookspecs import hookimpl
    from evalsink.loggers import (
        DetailsLogger,
        GeneralConfigLogger,
        MetricsLogger,
        TaskConfigLogger,
        VersionsLogger,
    )
    from evalsink.models import DetailRecord, EvaluationResults
    from evalsink.ranks import ProcessRank, current_rank
    from evalsink.report import SaveReport, SinkOutcome
    from evalsink.run import DetailsBatch, Run, RunStatus, TrackerSettings
    from evalsink.sink import Sink, SinkConfig
    from evalsink.tracker import EvaluationTracker

_EXPORTS = {
    "EvaluationTracker": "evalsink.tracker",
    "hookimpl": "evalsink.hookspecs",
    "Sink": "evalsink.sink",
    "SinkConfig": "evalsink.sink",
    "EvaluationResults": "evalsink.models",
    "DetailRecord": "evalsink.models",
    "ProcessRank": "evalsink.ranks",
    "current_rank": "evalsink.ranks",
    "SaveReport": "evalsink.report",
    "SinkOutcome": "evalsink.report",
    "Run": "evalsink.run",
    "RunStatus": "evalsink.run",
    "DetailsBatch": "evalsink.run",
    "TrackerSettings": "evalsink.run",
    "DetailsLogger": "evalsink.loggers",
    "GeneralConfigLogger": "evalsink.loggers",
    "MetricsLogger": "evalsink.loggers",
    "TaskConfigLogger": "evalsink.loggers",
    "VersionsLogger": "evalsink.loggers",
    "EvalsinkError": "evalsink.errors",
    "EncodeError": "evalsink.errors",
    "SinkConfigError": "evalsink.errors",
    "SinkFailedError": "evalsink.errors",
    "SinkLoadError": "evalsink.errors",
    "SinkNotInstalledError": "evalsink.errors",
    "DuplicateSinkError": "evalsink.errors",
}

__all__ = [
    "DetailRecord",
    "DetailsBatch",
    "DetailsLogger",
    "DuplicateSinkError",
    "EncodeError",
    "EvalsinkError",
    "EvaluationResults",
    "EvaluationTracker",
    "GeneralConfigLogger",
    "MetricsLogger",
    "ProcessRank",
    "Run",
    "RunStatus",
    "SaveReport",
    "Sink",
    "SinkConfig",
    "SinkConfigError",
    "SinkFailedError",
    "SinkLoadError",
    "SinkNotInstalledError",
    "SinkOutcome",
    "TaskConfigLogger",
    "TrackerSettings",
    "VersionsLogger",
    "current_rank",
    "hookimpl",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'evalsink' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
