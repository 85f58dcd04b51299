"""Shared fixtures of the core tests: the recorder's call log and a tracker factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import evalsink_recorder
import pytest
from core_helpers import Calls, log_samples

from evalsink import EvaluationTracker


@pytest.fixture(autouse=True)
def _every_first_party_extra_released(monkeypatch: pytest.MonkeyPatch) -> None:
    """Hints are tested as in a release where every first-party sink has its extra; the
    repository's own state (extras only for sinks that exist) is tested explicitly."""
    import evalsink.discovery

    monkeypatch.setattr(evalsink.discovery, "_declared_extras", lambda: set(evalsink.discovery.KNOWN_EXTRAS))


@pytest.fixture(autouse=True)
def _reset_recorder_calls() -> Iterator[None]:
    evalsink_recorder.CALLS.clear()
    evalsink_recorder.THREADS.clear()
    yield
    evalsink_recorder.CALLS.clear()
    evalsink_recorder.THREADS.clear()


@pytest.fixture
def calls() -> Calls:
    return Calls()


@pytest.fixture
def make_tracker(tmp_path: Path) -> Iterator[Callable[..., EvaluationTracker]]:
    """Build trackers writing below ``tmp_path``; any run a test leaves open is closed afterwards."""
    made: list[EvaluationTracker] = []

    def make(*, sinks: list[str] | None = None, subdir: str = "out", **kwargs: Any) -> EvaluationTracker:
        tracker = EvaluationTracker(
            output_dir=tmp_path / subdir, sinks=["recorder"] if sinks is None else sinks, **kwargs
        )
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        if tracker._started:
            tracker.close()


@pytest.fixture
def log() -> Callable[..., None]:
    return log_samples
