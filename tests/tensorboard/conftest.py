"""Fixtures of the TensorBoard-sink tests: a clean environment and a reader for event files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest


@pytest.fixture(autouse=True)
def _clean_evalsink_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No EVALSINK_* variable of the developer's shell may change what a test sees.

    Spools of non-local output folders go below the test's own tmp_path, never to the shared /tmp.
    """
    for key in list(os.environ):
        if key.startswith("EVALSINK_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path / "spool"))


def read_events(run_dir: Path) -> Any:
    """TensorBoard's own reader over one run folder, with nothing sampled away."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    accumulator = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "tensors": 0})
    accumulator.Reload()
    return accumulator


def text_of(accumulator: Any, tag: str) -> list[tuple[int, str]]:
    """(step, text) of every text summary stored under ``<tag>/text_summary``."""
    return [
        (event.step, event.tensor_proto.string_val[0].decode("utf-8"))
        for event in accumulator.Tensors(f"{tag}/text_summary")
    ]
