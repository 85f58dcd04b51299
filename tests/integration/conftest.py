"""Every sink in one process: the offline environments of tests/wandb, tests/trackio and the loopback Hub.

Each of those folders prepares its backend before the backend is first imported (wandb and trackio
read their variables once, on import or first use; huggingface_hub reads ``HF_ENDPOINT`` on
import). Their conftests are reused here, not copied: they are loaded as modules at the top of this
file, before any test module imports wandb, trackio or huggingface_hub, so

* ``loopback_hub.fixtures`` starts the session's loopback Hub and points ``HF_ENDPOINT`` at it;
* ``tests/wandb/conftest.py`` sets ``WANDB_MODE=offline`` and every ``WANDB_*_DIR`` below one
  temporary folder (and removes the developer's ``WANDB_*`` variables);
* ``tests/trackio/conftest.py`` sets ``TRACKIO_DIR`` to a temporary folder.

Their session fixtures (``wandb_dirs``: wandb teardown and the wandb-core check; ``trackio_dir``;
the loopback Hub's) are re-exported. Their per-test environment fixtures are applied by
:func:`_every_sink_env`, in an order where none undoes another: the Hub's (``hub_env``), then
trackio's ``_clean_env`` (it removes every ``WANDB_*`` variable), then wandb's ``_clean_env``
(which sets the offline mode and folders again). Both ``_clean_env`` fixtures share one name, so
they are called through the functions they wrap rather than registered twice.

The helper modules of those folders (``wandb_runfile``, ``trackio_helpers``, ``tb_helpers``) are
importable from the tests here. The backends themselves are imported by the tests, not here, so
a pytest process running other folders first does not carry them (nor their memory) into those.
Run this folder in its own pytest process, as tests/wandb and tests/trackio; after folders that
import none of the backends (``pytest tests/core tests/local tests/integration``) works too.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

# Starts the loopback Hub and sets HF_ENDPOINT before huggingface_hub is imported.
from loopback_hub.fixtures import _loopback_hub_session, hub_env, loopback_hub

TESTS = Path(__file__).resolve().parent.parent


def _load_conftest(folder: str) -> ModuleType:
    """Import ``tests/<folder>/conftest.py`` under a name of its own (pytest imports every conftest
    as ``conftest``), which runs its environment setup now."""
    name = f"evalsink_{folder}_conftest"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, TESTS / folder / "conftest.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


for _folder in ("wandb", "trackio", "tensorboard"):  # their helper modules
    if str(TESTS / _folder) not in sys.path:
        sys.path.append(str(TESTS / _folder))

WANDB = _load_conftest("wandb")
TRACKIO = _load_conftest("trackio")

wandb_dirs = WANDB.wandb_dirs
trackio_dir = TRACKIO.trackio_dir

__all__ = ["_loopback_hub_session", "hub_env", "loopback_hub", "trackio_dir", "wandb_dirs"]


@pytest.fixture(autouse=True)
def _every_sink_env(
    hub_env: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, wandb_dirs: Path, trackio_dir: Path
) -> None:
    """The per-test environment of the Hub, trackio and wandb test folders, in that order."""
    TRACKIO._clean_env.__wrapped__(monkeypatch, tmp_path, trackio_dir)
    WANDB._clean_env.__wrapped__(monkeypatch, tmp_path, wandb_dirs)
