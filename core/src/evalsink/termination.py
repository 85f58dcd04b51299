"""SIGTERM ends a run the way an exception does, so that every sink hears how the run ended.

Schedulers stop jobs with SIGTERM and follow with SIGKILL a little later: Slurm at the time limit
or on preemption, Kubernetes when a pod is evicted (30 s of grace by default in both), torchrun
when another worker failed. Python's own answer to SIGTERM is to die on the spot, with no
``finally`` and no ``atexit``: ``evalsink_run_finished`` never reached the sinks (a W&B run was
left "running") and the samples buffered since the last flush were lost.

While a tracker is open, evalsink answers SIGTERM by raising :class:`Terminated` in the main
thread: ``with`` blocks and the exit handler finish the run as failed, the samples logged so far
are flushed to the spool for ``evalsink recover``, and the process exits with status 143
(128 + 15, what a shell reports for SIGTERM).

Only Python's default disposition is replaced: a SIGTERM handler the application (or a library
such as accelerate) installed is left alone, and so is a process whose trackers are all built
outside the main thread (only the main thread may install a handler; a tracker built on another
thread while one built on the main thread is open keeps the handler until its own run closes).
A second SIGTERM kills at once, as the default does, so a scheduler's escalation still works.
``EVALSINK_HANDLE_SIGTERM=0`` leaves SIGTERM alone altogether.
"""

from __future__ import annotations

import os
import signal
import threading
import weakref
from types import FrameType
from typing import Any, ClassVar

ENV_SWITCH = "EVALSINK_HANDLE_SIGTERM"
EXIT_STATUS = 128 + signal.SIGTERM


class Terminated(SystemExit):
    """The process received SIGTERM while a run was open.

    A ``SystemExit`` (exit status 143) so that, uncaught, it ends the program quietly after the
    ``finally`` blocks and exit handlers have run, and so that ``except Exception`` in the
    evaluation loop does not swallow it. Sinks called on the main thread let it through, as they
    do the user's Ctrl-C (see :mod:`evalsink.sink_thread`).
    """

    def __init__(self) -> None:
        super().__init__(EXIT_STATUS)

    def __str__(self) -> str:
        return "the process received SIGTERM (the job was stopped)"


class _State:
    """What the handler needs: module globals, in one place."""

    holders: ClassVar[weakref.WeakSet[Any]] = weakref.WeakSet()
    installed_in: ClassVar[int | None] = None
    """The process whose handler this is: a forked child inherits it, but has no run of its own."""
    received: ClassVar[bool] = False
    """Whether this process was stopped by SIGTERM (for the exit handler's message)."""


def received() -> bool:
    """Whether this process received SIGTERM while a run was open."""
    return _State.received


def hold(tracker: Any) -> None:
    """Handle SIGTERM for as long as ``tracker`` is open (until :func:`release`, or the exit)."""
    if os.environ.get(ENV_SWITCH, "1").strip().lower() in {"0", "false", "no", "off"}:
        return
    if threading.current_thread() is not threading.main_thread():
        # signal.signal() works only there: held only while a main-thread tracker installed the
        # handler (that tracker's close() then leaves it in place for this one's run)
        if _State.installed_in == os.getpid() and signal.getsignal(signal.SIGTERM) is _on_sigterm:
            _State.holders.add(tracker)
        return
    current = signal.getsignal(signal.SIGTERM)  # not trusted from memory: the application may
    if current is not _on_sigterm:  # have put the default back since (a fork inherits ours)
        if current is not signal.SIG_DFL:
            return  # someone else's handler (or SIGTERM ignored): theirs to decide
        signal.signal(signal.SIGTERM, _on_sigterm)
    _State.installed_in = os.getpid()
    _State.holders.add(tracker)


def release(tracker: Any) -> None:
    """The tracker's run is closed: once no open tracker is left, SIGTERM kills at once again."""
    _State.holders.discard(tracker)
    if _State.installed_in != os.getpid() or _held_here():
        return
    main = threading.current_thread() is threading.main_thread()
    if main and signal.getsignal(signal.SIGTERM) is _on_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _State.installed_in = None


def _held_here() -> bool:
    """Whether a tracker of this process is open (a forked child inherits its parent's set)."""
    here = os.getpid()
    return any(getattr(tracker, "_pid", here) == here for tracker in list(_State.holders))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM kills at once
    if os.getpid() != _State.installed_in or not _held_here():
        os.kill(os.getpid(), signal.SIGTERM)  # no run of this process is open: die as by default
        return
    _State.received = True
    raise Terminated()
