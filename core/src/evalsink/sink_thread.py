"""One daemon thread per sink, so a hook that hangs can be abandoned instead of hanging the run.

A Python thread cannot be killed, so a sink whose hook exceeds its ``hook_timeout`` is marked
failed and left running in the background; the evaluation's own thread goes on with the other
sinks. The thread is a daemon (a hung sink never blocks interpreter exit, which a
``ThreadPoolExecutor`` worker would), and each sink keeps one thread for all its hooks, so
libraries that tie state to a thread (SQLite connections, some clients) see a single caller.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from evalsink.termination import Terminated

logger = logging.getLogger(__name__)

EXIT_WAIT_SECONDS = 10.0
"""How long the exit waits for local sinks still in a call (see :func:`_let_local_sinks_finish`)."""


class HookTimeoutError(TimeoutError):
    """A sink's hook did not return within the sink's ``hook_timeout``."""


WARNINGS_LOCK = threading.Lock()
"""Held by ``Sink.warn`` and by the manager while it replaces a finished sink's ``warnings`` list
(here, not in :mod:`evalsink.sink`, which imports pydantic)."""


class SinkExitError(Exception):
    """A sink's hook raised ``SystemExit`` (a client library calling ``sys.exit()``),
    ``KeyboardInterrupt`` or another ``BaseException`` on the sink's own thread.

    Signals reach only the main thread, so such an exception is the sink's doing, never the user's:
    it becomes an ordinary failure of that sink instead of ending the evaluation. A sink called on
    the evaluation's thread (``hook_timeout`` None) gets the same, except for a ``KeyboardInterrupt``
    on the main thread: that may be the user's Ctrl-C, and goes through (see :func:`call_inline`).
    """


def _exit_error(error: BaseException) -> SinkExitError:
    return SinkExitError(f"{type(error).__name__} raised in the hook: {error!r}")


def call_inline(function: Callable[..., Any], kwargs: dict[str, Any]) -> Any:
    """Run ``function(**kwargs)`` on the caller's thread, as a sink's own thread would run it.

    A ``SystemExit`` (or other ``BaseException``) from the hook becomes :class:`SinkExitError`, so
    a client library's ``sys.exit()`` fails the sink, not the evaluation, wherever the sink runs.
    A ``KeyboardInterrupt`` on the main thread is raised as it is: the user's Ctrl-C arrives there,
    inside whatever the main thread runs, and a sink cannot tell it from its own.
    """
    try:
        return function(**kwargs)
    except BaseException as exc:
        if isinstance(exc, Exception) or _may_be_the_users(exc):
            raise
        raise _exit_error(exc) from exc


def _may_be_the_users(error: BaseException) -> bool:
    """Whether ``error`` may be the user's Ctrl-C or a scheduler's SIGTERM
    (:class:`~evalsink.termination.Terminated`) on the main thread, the only thread signals reach
    (anywhere else it can only be the sink's own doing)."""
    signal_like = isinstance(error, (KeyboardInterrupt, Terminated))
    return signal_like and threading.current_thread() is threading.main_thread()


class _Call:
    __slots__ = ("done", "error", "function", "kwargs", "result")

    def __init__(self, function: Callable[..., Any], kwargs: dict[str, Any]) -> None:
        self.function = function
        self.kwargs = kwargs
        self.done = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class SinkThread:
    """Runs one sink's hook calls in order on its own daemon thread.

    A forked child has no copy of the thread, so it starts its own on its first call (a child
    that waited on the parent's thread would wait forever).
    """

    def __init__(self, name: str, *, local: bool = False) -> None:
        self.name = name
        self.local = local
        """A sink writing local files: waited for at exit (see :func:`_let_local_sinks_finish`)."""
        self._calls: queue.SimpleQueue[_Call | None] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._last: _Call | None = None
        self.interrupted = False
        """Ctrl-C or SIGTERM cut the evaluation's wait for a call short, leaving the thread at work
        (see :func:`note_interrupt`): its run_finished waits for it briefly, and so does the exit."""
        _ALL.add(self)

    @property
    def busy(self) -> bool:
        """Whether the last call handed to the thread is still running (its caller stopped
        waiting: a timeout, or an interrupt such as Ctrl-C)."""
        return self._last is not None and not self._last.done.is_set()

    def wait_idle(self, timeout: float) -> bool:
        """Wait up to ``timeout`` seconds for the running call to end; whether the thread is idle."""
        last = self._last
        return last is None or last.done.wait(timeout)

    def _forget_thread(self) -> None:
        self._calls = queue.SimpleQueue()
        self._thread = None
        self._last = None

    def call(self, function: Callable[..., Any], kwargs: dict[str, Any], timeout: float) -> Any:
        """Run ``function(**kwargs)`` on the sink's thread; raise what it raised, or HookTimeoutError."""
        if self._thread is None:
            thread = threading.Thread(target=self._serve, name=f"evalsink-sink-{self.name}", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # no new threads at interpreter shutdown (atexit): call inline
                return call_inline(function, kwargs)
            self._thread = thread
        call = self._last = _Call(function, kwargs)
        self._calls.put(call)
        # Event.wait refuses a timeout beyond threading.TIMEOUT_MAX (OverflowError): that is forever
        if not call.done.wait(None if timeout >= threading.TIMEOUT_MAX else timeout):
            raise HookTimeoutError(
                f"no answer after {timeout:g}s (hook_timeout); the call is left running in the background"
            )
        error = call.error
        if error is not None:
            if not isinstance(error, Exception):
                raise _exit_error(error) from error
            raise error
        return call.result

    def stop(self) -> None:
        """Let the thread end once its queued calls are done (never waits for it)."""
        if self._thread is not None:
            self._calls.put(None)
            self._thread = None

    def _serve(self) -> None:
        while True:
            call = self._calls.get()
            if call is None:
                return
            try:
                call.result = call.function(**call.kwargs)
            except BaseException as exc:  # handed to the caller, which records it against the sink
                call.error = exc
            finally:
                call.done.set()


_ALL: weakref.WeakSet[SinkThread] = weakref.WeakSet()
_INTERRUPTS: list[str] = []
"""The sinks Ctrl-C or SIGTERM reached the evaluation in a call of, in this process."""


def note_interrupt(sink_thread: SinkThread | None) -> None:
    """An interrupt reached the evaluation while it waited for ``sink_thread`` (None: a sink
    called inline): the exit waits for that thread's call, unless the user interrupted again."""
    _INTERRUPTS.append("inline" if sink_thread is None else sink_thread.name)
    if sink_thread is not None and sink_thread.busy:
        sink_thread.interrupted = True


def _after_fork_in_child() -> None:
    _INTERRUPTS.clear()
    for sink_thread in list(_ALL):
        sink_thread._forget_thread()
        sink_thread.interrupted = False


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register  # registered before the tracker's exit handler, so it runs after it
def _let_local_sinks_finish() -> None:
    """At exit, wait a little for local sinks that Ctrl-C or SIGTERM left in a call.

    A local sink left converting details (pyarrow at work on its thread) is usually seconds from
    done, and the file it writes is the run's. Exiting under it lost that file, left its hidden
    temporary file behind, and could abort the interpreter: pyarrow's own threads still calling
    into a Python that was shutting down ("Fatal Python error: PyGILState_Release"). Remote
    sinks are not waited for: a stalled upload can take any time, and neither is a sink that
    merely overran its ``hook_timeout`` (hung, as far as anyone knows), nor any sink once the user
    has interrupted twice: the second Ctrl-C says not to wait.
    """
    # a forked child's are never busy
    busy = [t for t in list(_ALL) if t.local and t.interrupted and t.busy]
    if busy and len(_INTERRUPTS) > 1:
        names = ", ".join(repr(t.name) for t in busy)
        logger.warning(
            "interrupted %d times: not waiting for sink(s) %s, still at work", len(_INTERRUPTS), names
        )
        return
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    for sink_thread in busy:
        logger.warning(
            "waiting up to %gs for sink %r to finish the call it was interrupted in",
            EXIT_WAIT_SECONDS,
            sink_thread.name,
        )
        try:
            if not sink_thread.wait_idle(max(0.0, deadline - time.monotonic())):
                logger.warning("sink %r is still at work: the process exits under it", sink_thread.name)
        except KeyboardInterrupt:  # a second Ctrl-C: stop waiting
            return
