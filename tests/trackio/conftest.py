"""Fixtures of the Trackio-sink tests: a private TRACKIO_DIR and a clean environment.

trackio reads ``TRACKIO_DIR`` once, when it is first imported, so the variable is set here, at
the top of the conftest, before any test module (or sink) imports trackio. The folder is one per
pytest process and removed at exit. If trackio was imported earlier in the same process (another
test folder), the ``trackio_dir`` fixture fails the tests rather than let them write elsewhere.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest

if "trackio" not in sys.modules:
    _TRACKIO_DIR = Path(tempfile.mkdtemp(prefix="evalsink-trackio-tests-"))
    os.environ["TRACKIO_DIR"] = str(_TRACKIO_DIR)
    atexit.register(shutil.rmtree, _TRACKIO_DIR, ignore_errors=True)
else:  # pragma: no cover - only when another test folder imported trackio first
    _TRACKIO_DIR = Path(os.environ.get("TRACKIO_DIR", "<unset>"))


@pytest.fixture(scope="session")
def trackio_dir() -> Path:
    import trackio.utils

    if Path(trackio.utils.TRACKIO_DIR) != _TRACKIO_DIR:
        pytest.fail(
            f"trackio was imported before tests/trackio/conftest.py set TRACKIO_DIR; it writes to "
            f"{trackio.utils.TRACKIO_DIR}. Run tests/trackio in its own pytest process."
        )
    return _TRACKIO_DIR


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, trackio_dir: Path) -> None:
    """No EVALSINK_*/TRACKIO_*/WANDB_* variable of the developer's shell may change what a test sees.

    Nothing goes to a Space or a server; spools go below the test's own tmp_path.
    """
    for key in list(os.environ):
        if key.startswith(("EVALSINK_", "WANDB_")) or (key.startswith("TRACKIO_") and key != "TRACKIO_DIR"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path / "spool"))
    # trackio asks the Hub who the user is (for the run config); never from the tests
    import trackio.run

    def no_user() -> str:
        raise RuntimeError("no Hub user in tests")

    monkeypatch.setattr(trackio.run, "_get_default_namespace", no_user)
