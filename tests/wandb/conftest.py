"""Fixtures of the W&B-sink tests: offline mode, private wandb folders, a clean environment.

wandb reads its ``WANDB_*`` variables once per process, into the settings of a singleton created
on first use (later changes are ignored, with a warning). So the mode and every folder variable
are set here, at the top of the conftest, before any test module (or sink) imports wandb: runs
are written offline (no network, no API key) below one temporary folder per pytest process,
removed at exit, and nothing lands in the developer's home. If wandb was set up earlier in the
same process (another test folder), the ``wandb_dirs`` fixture fails the tests rather than let
them write elsewhere.

At the end of the session ``wandb.teardown()`` stops the wandb-core service process, and the
session fails if a wandb-core process is still a child of this one.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_DIR_VARIABLES = ("WANDB_DIR", "WANDB_CACHE_DIR", "WANDB_DATA_DIR", "WANDB_ARTIFACT_DIR", "WANDB_CONFIG_DIR")

if "wandb" not in sys.modules:
    for _name in [name for name in os.environ if name.startswith("WANDB_")]:
        del os.environ[_name]  # the developer's shell: a key, a project, an entity, a base URL...
    _ROOT = Path(tempfile.mkdtemp(prefix="evalsink-wandb-tests-"))
    atexit.register(shutil.rmtree, _ROOT, ignore_errors=True)
    _FIXED = {name: str(_ROOT / name.lower()) for name in _DIR_VARIABLES}
    _FIXED["WANDB_MODE"] = "offline"
    _FIXED["NETRC"] = str(_ROOT / "no-netrc")  # never the developer's `wandb login`
    for _name, _value in _FIXED.items():
        if _name in _DIR_VARIABLES:  # not WANDB_MODE's "offline": that made ./offline in the cwd
            Path(_value).mkdir(parents=True, exist_ok=True)
        os.environ[_name] = _value
else:  # pragma: no cover - only when another test folder imported wandb first
    _ROOT = Path("<unset>")
    _FIXED = {}


@pytest.fixture(scope="session", autouse=True)
def wandb_dirs() -> Iterator[Path]:
    """The session's wandb root; tears wandb down at the end and checks wandb-core is gone."""
    if not _FIXED:
        pytest.fail(
            "wandb was imported before tests/wandb/conftest.py set WANDB_MODE and the WANDB_*_DIR "
            "variables. Run tests/wandb in its own pytest process."
        )
    yield _ROOT
    if "wandb" in sys.modules:
        import wandb

        wandb.teardown()
    from wandb_helpers import wandb_core_processes  # imports wandb: only after the env is set

    left = wandb_core_processes()
    assert not left, f"wandb-core still running after wandb.teardown(): {left}"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wandb_dirs: Path) -> None:
    """No EVALSINK_* or launcher variable of the developer's shell, nor a WANDB_* variable left by
    another test, may change what a test sees; spools go below the test's tmp_path.

    (``WANDB_SERVICE`` is wandb's own: it names the running wandb-core service.)
    """
    for key in list(os.environ):
        if key.startswith("EVALSINK_") or (
            key.startswith("WANDB_") and key not in _FIXED and key != "WANDB_SERVICE"
        ):
            monkeypatch.delenv(key)
    for key, value in _FIXED.items():
        monkeypatch.setenv(key, value)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path / "spool"))
