"""A loopback Hugging Face Hub for the test suite: see README.md next to this file.

``LoopbackHub`` serves the Hub's HTTP API (as huggingface_hub 2.4 calls it) from memory on
127.0.0.1, so the Hub sink can be tested end to end, offline, with the real client library.
"""

from __future__ import annotations

from .models import Commit, RecordedRequest, RepoState
from .server import DEFAULT_ORGS, DEFAULT_USER, DUMMY_TOKEN, LoopbackHub

__all__ = [
    "DEFAULT_ORGS",
    "DEFAULT_USER",
    "DUMMY_TOKEN",
    "Commit",
    "LoopbackHub",
    "RecordedRequest",
    "RepoState",
]
