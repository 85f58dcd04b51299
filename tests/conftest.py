"""Fixtures every test folder shares."""

from __future__ import annotations

import os
from pathlib import Path

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
