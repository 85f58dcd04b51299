"""Fixtures of the local-sink tests: a tracker factory and offline ``datasets``."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsink import EvaluationTracker


@pytest.fixture
def make_tracker(tmp_path: Path) -> Iterator[Callable[..., EvaluationTracker]]:
    """Trackers with the local sink only, writing to ``tmp_path/out`` unless told otherwise.

    Every tracker a test leaves open is closed afterwards (as the atexit hook would do).
    """
    made: list[EvaluationTracker] = []

    def make(output_dir: str | os.PathLike[str] | None = None, **kwargs: Any) -> EvaluationTracker:
        kwargs.setdefault("sinks", ["local"])
        tracker = EvaluationTracker(
            output_dir=tmp_path / "out" if output_dir is None else output_dir, **kwargs
        )
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        if tracker._started:
            tracker.close()


@pytest.fixture
def hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """``datasets`` offline, with a cache inside tmp_path (patched too if datasets is already imported)."""
    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setenv("HF_MODULES_CACHE", str(tmp_path / "hf-modules"))
    import datasets
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", tmp_path / "hf-modules")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", True)
    datasets.disable_progress_bars()
    return cache


@pytest.fixture
def memory_fs() -> Iterator[Any]:
    """fsspec's process-wide memory file system, emptied of the test's folder before and after."""
    import fsspec

    fs = fsspec.filesystem("memory")

    def clean() -> None:
        if fs.exists("/evalsink-test"):
            fs.rm("/evalsink-test", recursive=True)

    clean()
    yield fs
    clean()
