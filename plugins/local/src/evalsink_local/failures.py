"""What the local sink tells apart from real failures (shared by the sink and its streaming)."""

from __future__ import annotations


def pools_shut_down(exc: BaseException) -> bool:
    """Whether ``exc`` is a thread pool refusing work because it was shut down: the interpreter is
    exiting, or the run ended under a batch still going in (Ctrl-C while logging). The spool holds
    every sample; it was logged as a streaming failure, with a traceback."""
    return isinstance(exc, RuntimeError) and str(exc).startswith("cannot schedule new futures after")
