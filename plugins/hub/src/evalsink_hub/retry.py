"""Retrying Hub calls: exponential backoff with jitter on transient failures, one rule for every sink.

:func:`call_with_retry` runs a callable (typically one ``HfApi`` call) and retries it when it fails
for a reason that may go away by itself:

* an HTTP answer 5xx, 429 (Too Many Requests) or 408 (Request Timeout), read from the exception's
  ``response.status_code`` (``HfHubHTTPError`` and httpx/requests errors all carry one); a
  ``Retry-After`` header is honoured (seconds or an HTTP date, at most :data:`MAX_RETRY_AFTER`);
* a timeout or a connection failure: ``TimeoutError``, ``ConnectionError`` (refused, reset...),
  and httpx's / httpx2's / requests' timeout, network and protocol errors;
* an answer that is not the JSON the API promised (``json.JSONDecodeError``): what a proxy's
  HTML error page looks like to huggingface_hub, which decodes some answers before checking the
  status.

Anything else — 400, 401, 403, 404, 409, 413, a malformed repository id, offline mode
(``HF_HUB_OFFLINE``) — fails at once, with the server's message. When the attempts run out,
:class:`RetriesExhaustedError` says what was tried, how often and the last error.

:class:`RetryPolicy` also bounds each HTTP request (``timeout``): huggingface_hub's shared client
waits forever by default, so a server that stops answering would hang the evaluation's ``save()``.
The bound is applied, for the duration of the call only, by an event hook on huggingface_hub's
shared HTTP client that sets httpx's per-request timeout (:func:`request_timeout`); other users of
that client are unaffected.

huggingface_hub retries a few calls itself (the pre-upload and file-listing requests, up to 5
times); those retries happen inside one attempt here.
"""

from __future__ import annotations

import contextlib
import email.utils
import json
import logging
import random
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

__all__ = [
    "MAX_RETRY_AFTER",
    "RetriesExhaustedError",
    "RetryPolicy",
    "call_with_retry",
    "describe_error",
    "request_timeout",
    "retry_after",
    "transient_reason",
]

logger = logging.getLogger("evalsink.hub")

T = TypeVar("T")

MAX_RETRY_AFTER = 600.0
"""Longest wait a ``Retry-After`` header can impose, in seconds."""

RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
"""HTTP statuses retried besides any other 5xx."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently to retry; ``backoff=0`` retries at once (tests)."""

    attempts: int = 5
    """Calls in total, the first included (1 = no retry)."""
    backoff: float = 1.0
    """Wait before the first retry, in seconds; doubled at each further retry."""
    max_backoff: float = 30.0
    """Longest wait between two attempts (a ``Retry-After`` header may ask for more)."""
    timeout: float | None = 120.0
    """Bound of each HTTP request (connect, each read and write), in seconds; None waits forever."""
    jitter: bool = True
    """Wait a random 50–100% of the computed backoff, so many clients do not retry in step."""

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, not {self.attempts}")
        if self.backoff < 0 or self.max_backoff < 0:
            raise ValueError("backoff and max_backoff must be >= 0")
        if self.timeout is not None and self.timeout <= 0:
            raise ValueError(f"timeout must be > 0 (or None), not {self.timeout}")

    def delay(self, retry: int, rng: Callable[[], float] = random.random) -> float:
        """Wait before retry number ``retry`` (1 = the first retry), jitter included."""
        base = min(self.max_backoff, self.backoff * 2.0 ** (retry - 1))
        return base * (0.5 + 0.5 * rng()) if self.jitter else base


class RetriesExhaustedError(RuntimeError):
    """Every attempt of a call failed on a transient error; ``last_error`` is the final one."""

    def __init__(self, what: str, attempts: int, seconds: float, last_error: BaseException) -> None:
        super().__init__(
            f"{what} failed after {attempts} attempt(s) over {seconds:.1f}s; "
            f"last error: {describe_error(last_error)}"
        )
        self.what = what
        self.attempts = attempts
        self.last_error = last_error


def describe_error(error: BaseException) -> str:
    """``Type: message`` on one line (huggingface_hub's messages span several)."""
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _status(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def _network_error_types() -> tuple[type[BaseException], ...]:
    """Timeout/network/protocol error classes of the HTTP libraries already imported."""
    types: list[type[BaseException]] = [TimeoutError, ConnectionError]
    for name in ("httpx2", "httpx"):
        module = sys.modules.get(name)
        if module is not None:
            for attr in ("TimeoutException", "NetworkError", "RemoteProtocolError"):
                cls = getattr(module, attr, None)
                if isinstance(cls, type) and issubclass(cls, BaseException):
                    types.append(cls)
    exceptions = sys.modules.get("requests.exceptions")
    if exceptions is not None:
        for attr in ("Timeout", "ConnectionError", "ChunkedEncodingError"):
            cls = getattr(exceptions, attr, None)
            if isinstance(cls, type) and issubclass(cls, BaseException):
                types.append(cls)
    return tuple(types)


def _is_offline_mode(error: BaseException) -> bool:
    errors = sys.modules.get("huggingface_hub.errors")
    offline = getattr(errors, "OfflineModeIsEnabled", None)
    return isinstance(offline, type) and isinstance(error, offline)


def transient_reason(error: BaseException) -> str | None:
    """Why ``error`` is worth a retry (``"HTTP 503"``, ``"timeout"``...), or None if it is not."""
    status = _status(error)
    if status is not None:
        if status in RETRY_STATUSES or status >= 500:
            return f"HTTP {status}"
        return None
    if _is_offline_mode(error):
        return None
    if isinstance(error, json.JSONDecodeError):
        return "an answer that is not JSON"
    if isinstance(error, _network_error_types()):
        kind = type(error).__name__
        return "timeout" if "timeout" in kind.lower() else f"connection error ({kind})"
    return None


def retry_after(error: BaseException, now: datetime | None = None) -> float | None:
    """Seconds the server asked to wait (``Retry-After``), at most :data:`MAX_RETRY_AFTER`."""
    response = getattr(error, "response", None)
    headers: Any = getattr(response, "headers", None)
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    value = str(value).strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=timezone.utc)
        seconds = (when - (now or datetime.now(timezone.utc))).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def call_with_retry(
    call: Callable[[], T],
    policy: RetryPolicy | None = None,
    *,
    what: str = "Hub request",
    sleep: Callable[[float], None] = time.sleep,
    rng: Callable[[], float] = random.random,
) -> T:
    """``call()``, retried on transient failures as ``policy`` says; each attempt under its timeout.

    A non-transient error is raised as it is, at once. When every attempt failed,
    :class:`RetriesExhaustedError` is raised from the last error. ``call`` must be safe to repeat:
    build fresh request objects inside it (an ``HfApi`` commit operation cannot be reused).
    """
    policy = policy or RetryPolicy()
    started = time.monotonic()
    for attempt in range(1, policy.attempts + 1):
        try:
            with request_timeout(policy.timeout):
                return call()
        except Exception as error:
            reason = transient_reason(error)
            if reason is None:
                raise
            if attempt == policy.attempts:
                raise RetriesExhaustedError(what, attempt, time.monotonic() - started, error) from error
            wait = policy.delay(attempt, rng)
            asked = retry_after(error)
            if asked is not None:
                wait = max(wait, asked)
            logger.warning(
                "%s failed (%s: %s); attempt %d of %d, retrying in %.1fs",
                what,
                reason,
                describe_error(error),
                attempt,
                policy.attempts,
                wait,
            )
            sleep(wait)
    raise AssertionError("unreachable: the last attempt returns or raises")


# -- per-request timeout on huggingface_hub's shared client ----------------------------------------

_TIMEOUT: ContextVar[float | None] = ContextVar("evalsink_hub_request_timeout", default=None)
_INSTALL_LOCK = threading.Lock()


def _apply_timeout(request: Any) -> None:
    """httpx request event hook: the timeout of the enclosing :func:`request_timeout` block."""
    seconds = _TIMEOUT.get()
    if seconds is not None:
        request.extensions["timeout"] = dict.fromkeys(("connect", "read", "write", "pool"), seconds)


def _install_hook() -> bool:
    """Add :func:`_apply_timeout` to huggingface_hub's current shared client; False if it has no hooks."""
    from huggingface_hub import get_session

    session: Any = get_session()
    hooks = getattr(session, "event_hooks", None)
    if not isinstance(hooks, dict):
        return False
    with _INSTALL_LOCK:
        hooks = session.event_hooks
        if _apply_timeout not in hooks.get("request", []):
            session.event_hooks = {**hooks, "request": [*hooks.get("request", []), _apply_timeout]}
    return True


@contextlib.contextmanager
def request_timeout(seconds: float | None) -> Iterator[None]:
    """Bound every huggingface_hub HTTP request made in this block (this thread/context) by ``seconds``.

    Requests made from worker threads huggingface_hub starts itself (parallel LFS uploads) keep
    huggingface_hub's own setting, and so does a client huggingface_hub replaces in the middle of
    the block (it does after a connection error inside its own retry loop) until the next block:
    :func:`call_with_retry` enters one per attempt.
    """
    if seconds is None:
        yield
        return
    if not _install_hook():
        logger.warning("huggingface_hub's HTTP client takes no event hooks: no request timeout applied")
    token = _TIMEOUT.set(seconds)
    try:
        yield
    finally:
        _TIMEOUT.reset(token)
