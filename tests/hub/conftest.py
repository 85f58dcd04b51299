"""Fixtures of the Hub-sink tests: a loopback Hub on 127.0.0.1 and a clean Hub environment.

The fixtures live in ``loopback_hub.fixtures`` (other test folders use them too); this conftest
re-exports them all, so every test here runs in the loopback Hub's environment (``_hub_env`` is
autouse) and can ask for ``loopback_hub``. Importing that module is what starts the session's
server and points ``HF_ENDPOINT`` at it, before any test module imports huggingface_hub: see its
docstring.
"""

from __future__ import annotations

from loopback_hub.fixtures import _hub_env, _loopback_hub_session, hub_env, loopback_hub

__all__ = ["_hub_env", "_loopback_hub_session", "hub_env", "loopback_hub"]
