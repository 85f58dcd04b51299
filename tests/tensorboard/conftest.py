"""Fixtures of the TensorBoard tests: the loopback Hub, for the tests of the Hub push.

Importing ``loopback_hub.fixtures`` starts the session's loopback Hub and points ``HF_ENDPOINT`` at
it before huggingface_hub is first imported in the process (its docstring says why that matters).
Unlike tests/hub, the Hub environment is not applied to every test here: ``hub_env`` is asked for
by the push tests only (test_tensorboard_hub_push.py), so the other TensorBoard tests neither need
huggingface_hub nor see the loopback Hub's variables.
"""

from __future__ import annotations

from loopback_hub.fixtures import _loopback_hub_session, hub_env, loopback_hub

__all__ = ["_loopback_hub_session", "hub_env", "loopback_hub"]
