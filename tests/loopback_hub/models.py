"""The public value types of the loopback Hub: what tests read back from it.

They are plain frozen dataclasses (no behaviour) so a test can compare them, print them in an
assertion message, or keep them after ``reset()`` without them changing underneath.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class RecordedRequest:
    """One request the server answered, as seen on the wire.

    ``path`` is the URL path, percent-decoded, without the query string (``query`` keeps that,
    still encoded). ``status`` is the status code sent back, including injected faults.
    ``token`` is the bearer token the client sent, if any: a test can check which credentials a
    sink used without the server having to reject anything.
    """

    method: str
    path: str
    status: int
    query: str = ""
    token: str | None = None


@dataclass(frozen=True)
class Commit:
    """One commit on ``main``, oldest first in ``LoopbackHub.commits()``.

    ``added`` lists the paths written by the commit (new or overwritten files), in the order the
    client sent them. ``deleted`` lists the files the commit removed; a ``deletedFolder``
    operation appears as the files it removed, not as the folder. ``parent`` is ``None`` only for
    the ``initial commit`` the Hub creates with the repository.
    """

    oid: str
    summary: str
    description: str
    added: list[str]
    deleted: list[str]
    parent: str | None = None
    author: str = ""
    date: datetime | None = field(default=None, compare=False)


@dataclass(frozen=True)
class RepoState:
    """The settings of a repository (or ``exists=False`` for one that does not exist)."""

    repo_id: str
    repo_type: str
    exists: bool
    private: bool = False
    gated: str | bool = False
