"""The pytest plugin evalsink registers (entry point ``pytest11``), loaded by every pytest run.

It stays tiny and imports nothing of evalsink: it registers the ``evalsink_conformance`` marker
(so suites run with ``--strict-markers`` accept the kit's tests and ``-m "not
evalsink_conformance"`` deselects them) and provides :func:`evalsink_env`.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "evalsink_conformance: tests of evalsink's sink conformance kit (evalsink.testing)"
    )


@pytest.fixture
def evalsink_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ``EVALSINK_*`` variable of the developer's shell reaches the test; spools go to tmp_path.

    Returns the spool folder used for output folders that are not local paths.
    """
    for key in list(os.environ):
        if key.startswith("EVALSINK_"):
            monkeypatch.delenv(key)
    spool = tmp_path / "evalsink-spool"
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(spool))
    return spool
