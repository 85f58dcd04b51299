"""The loopback Hub's pytest fixtures, shared by every test folder that talks to "the Hub".

A conftest uses them by importing them (``from loopback_hub.fixtures import loopback_hub, ...``):
tests/hub/conftest.py re-exports all of them, with the per-test environment applied to every test
(``_hub_env``, autouse); a folder where only some tests need the Hub (tests/tensorboard) imports
``hub_env`` instead and asks for it where needed, so its other tests do not require huggingface_hub.

No test may reach huggingface.co (no machine here does), and none may use the developer's token or
cache. The tests talk to ``loopback_hub.LoopbackHub``, an in-memory server speaking the Hub's HTTP
API, through the real huggingface_hub client.

huggingface_hub reads ``HF_ENDPOINT`` (and its cache folders and timeouts) once, when it is first
imported, into ``huggingface_hub.constants``, and binds its module-level helpers (``upload_file``,
``create_repo``...) to an ``HfApi`` created at that moment. So the session's server is started
here, when this module is first imported (by a conftest, before any test module or sink imports
huggingface_hub), and its URL goes into ``os.environ``. The URL never changes: ``stop()``/``start()``
reuse the port. Importing this module from several conftests starts one server: Python imports a
module once per process.

If huggingface_hub was imported earlier in the same pytest process (by another test folder), the
environment above came too late; the per-test fixture therefore also patches the constants that
matter (endpoint, URL template, offline flag, cache folders, timeouts) and the module-level
``HfApi``, so every test still talks to the loopback server and writes below its own tmp_path.
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

from .server import DUMMY_TOKEN, LoopbackHub

__all__ = ["_hub_env", "_loopback_hub_session", "hub_env", "loopback_hub"]

ETAG_TIMEOUT_SECONDS = 2
DOWNLOAD_TIMEOUT_SECONDS = 2

_HUB = LoopbackHub()
_HUB.start()
atexit.register(_HUB.close)  # backstop; the session fixture closes it first when it was used

if "huggingface_hub" not in sys.modules:
    _SESSION_HF_HOME = Path(tempfile.mkdtemp(prefix="evalsink-hub-tests-"))
    atexit.register(shutil.rmtree, _SESSION_HF_HOME, ignore_errors=True)
    os.environ["HF_ENDPOINT"] = _HUB.url
    os.environ["HF_HOME"] = str(_SESSION_HF_HOME)
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"
    os.environ["HF_HUB_ETAG_TIMEOUT"] = str(ETAG_TIMEOUT_SECONDS)
    os.environ["HF_HUB_DOWNLOAD_TIMEOUT"] = str(DOWNLOAD_TIMEOUT_SECONDS)


@pytest.fixture(scope="session")
def _loopback_hub_session() -> Iterator[LoopbackHub]:
    """The one server of the session; closed (threads joined) when the session ends."""
    yield _HUB
    _HUB.close()


@pytest.fixture
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The test's Hub environment: variables of the developer's shell removed, the loopback ones set.

    ``HF_TOKEN`` is a dummy (the loopback Hub accepts any token; a test wanting none removes it
    or passes ``token=False``). ``HF_HUB_OFFLINE`` is removed because it blocks even a local
    endpoint. Caches go below the test's tmp_path, so no download is shared between tests.
    """
    for key in list(os.environ):
        if (
            key.startswith(("EVALSINK_", "HF_", "HUGGINGFACE_", "HUGGING_FACE_"))
            or key == "TRANSFORMERS_OFFLINE"
        ):
            monkeypatch.delenv(key)
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path / "spool"))
    hf_home = tmp_path / "hf-home"
    for key, value in {
        "HF_ENDPOINT": _HUB.url,
        "HF_TOKEN": DUMMY_TOKEN,
        "HF_HOME": str(hf_home),
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HUB_ETAG_TIMEOUT": str(ETAG_TIMEOUT_SECONDS),
        "HF_HUB_DOWNLOAD_TIMEOUT": str(DOWNLOAD_TIMEOUT_SECONDS),
    }.items():
        monkeypatch.setenv(key, value)

    constants = pytest.importorskip("huggingface_hub.constants")
    patched: dict[str, object] = {
        "ENDPOINT": _HUB.url,
        "HUGGINGFACE_CO_URL_TEMPLATE": _HUB.url + "/{repo_id}/resolve/{revision}/{filename}",
        "HF_HUB_OFFLINE": False,
        "HF_HUB_DISABLE_TELEMETRY": True,
        "HF_HOME": str(hf_home),
        "HF_HUB_CACHE": str(hf_home / "hub"),
        "HF_ASSETS_CACHE": str(hf_home / "assets"),
        "HF_XET_CACHE": str(hf_home / "xet"),
        "HF_TOKEN_PATH": str(hf_home / "token"),
        "HF_STORED_TOKENS_PATH": str(hf_home / "stored_tokens"),
        "HF_HUB_ETAG_TIMEOUT": ETAG_TIMEOUT_SECONDS,
        "HF_HUB_DOWNLOAD_TIMEOUT": DOWNLOAD_TIMEOUT_SECONDS,
    }
    for name, constant in patched.items():
        if hasattr(constants, name):
            monkeypatch.setattr(constants, name, constant)
    hf_api = sys.modules.get("huggingface_hub.hf_api")
    if hf_api is not None and hasattr(hf_api, "api"):
        monkeypatch.setattr(hf_api.api, "endpoint", _HUB.url)


@pytest.fixture(autouse=True)
def _hub_env(hub_env: None) -> None:
    """:func:`hub_env` for every test of a folder whose conftest imports this fixture (tests/hub)."""


@pytest.fixture
def loopback_hub(_loopback_hub_session: LoopbackHub) -> Iterator[LoopbackHub]:
    """The session's server, serving and empty: no repos, faults, request log or settings.

    After the test, a server-side exception (answered as a 500, which a retrying client might
    hide) fails the test, so a server bug is never mistaken for a sink bug.
    """
    hub = _loopback_hub_session
    hub.start()
    hub.reset()
    yield hub
    hub.start()  # a test that stopped "the Hub" leaves it serving for the next one
    if hub.server_errors:
        pytest.fail("LoopbackHub raised while serving:\n" + "\n".join(hub.server_errors), pytrace=False)
