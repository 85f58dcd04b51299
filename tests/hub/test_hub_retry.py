"""The retry rule shared by every Hub push: which failures are retried, how long it waits, when it stops.

A fake callable raises real huggingface_hub / httpx exceptions, so the classification is checked
against what huggingface_hub actually raises; ``sleep`` is recorded instead of slept.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from typing import Any

import pytest
from huggingface_hub.errors import HfHubHTTPError, OfflineModeIsEnabled, RepositoryNotFoundError

from evalsink_hub.retry import (
    MAX_RETRY_AFTER,
    RetriesExhaustedError,
    RetryPolicy,
    call_with_retry,
    retry_after,
    transient_reason,
)

URL = "http://127.0.0.1:1/api/datasets/org/repo/commit/main"
# the HTTP library huggingface_hub raises from: httpx2 (huggingface_hub 2.x) or httpx (1.x)
httplib = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])


def http_error(
    status: int, headers: dict[str, str] | None = None, cls: type[HfHubHTTPError] = HfHubHTTPError
) -> HfHubHTTPError:
    response = httplib.Response(status, headers=headers or {}, request=httplib.Request("POST", URL))
    return cls(f"{status} Server Error for url: {URL}", response=response)


class Flaky:
    """Raises the given errors in turn, then returns ``"done"``; counts the calls."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "done"


def run(call: Callable[[], Any], policy: RetryPolicy) -> tuple[Any, list[float]]:
    waits: list[float] = []
    return call_with_retry(call, policy, what="test call", sleep=waits.append, rng=lambda: 1.0), waits


FAST = RetryPolicy(attempts=5, backoff=1.0, max_backoff=30.0, jitter=False)


def test_503_twice_then_success_returns_the_result_after_two_waits() -> None:
    flaky = Flaky(http_error(503), http_error(503))
    result, waits = run(flaky, FAST)
    assert result == "done"
    assert flaky.calls == 3
    assert waits == [1.0, 2.0]  # exponential: backoff, then twice that


@pytest.mark.parametrize("status", [500, 502, 503, 504, 507, 429, 408])
def test_server_errors_and_rate_limits_are_retried(status: int) -> None:
    flaky = Flaky(http_error(status))
    assert run(flaky, FAST)[0] == "done"
    assert flaky.calls == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 422])
def test_client_errors_fail_at_once_with_the_servers_error(status: int) -> None:
    error = http_error(status)
    flaky = Flaky(error)
    with pytest.raises(HfHubHTTPError) as raised:
        run(flaky, FAST)
    assert raised.value is error
    assert flaky.calls == 1


def test_a_missing_repository_is_not_retried() -> None:
    flaky = Flaky(http_error(404, cls=RepositoryNotFoundError))
    with pytest.raises(RepositoryNotFoundError):
        run(flaky, FAST)
    assert flaky.calls == 1


@pytest.mark.parametrize(
    "error",
    [
        httplib.ConnectError("[Errno 111] Connection refused"),
        httplib.ReadTimeout("timed out"),
        httplib.ConnectTimeout("timed out"),
        httplib.RemoteProtocolError("Server disconnected without sending a response."),
        ConnectionRefusedError(111, "Connection refused"),
        TimeoutError("timed out"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_timeouts_and_connection_errors_are_retried(error: BaseException) -> None:
    flaky = Flaky(error)
    assert run(flaky, FAST)[0] == "done"
    assert flaky.calls == 2
    assert transient_reason(error) is not None


def test_timeouts_are_named_as_such() -> None:
    assert transient_reason(httplib.ReadTimeout("timed out")) == "timeout"
    assert transient_reason(http_error(503)) == "HTTP 503"
    assert transient_reason(httplib.ConnectError("refused")) == "connection error (ConnectError)"


@pytest.mark.parametrize(
    "error",
    [ValueError("Invalid metadata in README.md"), OfflineModeIsEnabled("offline"), KeyError("x")],
    ids=lambda e: type(e).__name__,
)
def test_other_errors_fail_at_once(error: BaseException) -> None:
    flaky = Flaky(error)
    with pytest.raises(type(error)):
        run(flaky, FAST)
    assert flaky.calls == 1
    assert transient_reason(error) is None


def test_when_attempts_run_out_the_error_says_what_how_often_and_why() -> None:
    errors = [http_error(503) for _ in range(3)]
    flaky = Flaky(*errors)
    with pytest.raises(RetriesExhaustedError) as raised:
        run(flaky, RetryPolicy(attempts=3, backoff=0, jitter=False))
    assert flaky.calls == 3
    assert raised.value.attempts == 3
    assert raised.value.last_error is errors[-1]
    assert raised.value.__cause__ is errors[-1]
    message = str(raised.value)
    assert message.startswith("test call failed after 3 attempt(s)")
    assert "HfHubHTTPError: 503 Server Error" in message
    assert "\n" not in message


def test_one_attempt_means_no_retry() -> None:
    flaky = Flaky(http_error(503))
    with pytest.raises(RetriesExhaustedError):
        run(flaky, RetryPolicy(attempts=1))
    assert flaky.calls == 1


def test_backoff_doubles_up_to_the_ceiling() -> None:
    policy = RetryPolicy(attempts=10, backoff=1.0, max_backoff=5.0, jitter=False)
    assert [policy.delay(n) for n in range(1, 6)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    flaky = Flaky(*(http_error(502) for _ in range(5)))
    _, waits = run(flaky, policy)
    assert waits == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_waits_between_half_and_all_of_the_backoff() -> None:
    policy = RetryPolicy(backoff=4.0, jitter=True)
    assert policy.delay(1, rng=lambda: 0.0) == 2.0
    assert policy.delay(1, rng=lambda: 1.0) == 4.0
    assert policy.delay(2, rng=lambda: 0.5) == 6.0


def test_zero_backoff_retries_immediately() -> None:
    flaky = Flaky(http_error(503), http_error(503))
    _, waits = run(flaky, RetryPolicy(backoff=0))
    assert waits == [0.0, 0.0]


def test_retry_after_in_seconds_is_honoured() -> None:
    flaky = Flaky(http_error(429, {"Retry-After": "7"}))
    _, waits = run(flaky, FAST)
    assert waits == [7.0]  # more than the 1 s backoff: the server's wish wins


def test_retry_after_shorter_than_the_backoff_keeps_the_backoff() -> None:
    flaky = Flaky(http_error(503, {"Retry-After": "0"}))
    _, waits = run(flaky, RetryPolicy(backoff=3.0, jitter=False))
    assert waits == [3.0]


def test_retry_after_as_an_http_date() -> None:
    now = datetime(2025, 1, 1, 12, 0, 0, tzinfo=timezone.utc)
    error = http_error(503, {"Retry-After": format_datetime(now + timedelta(seconds=30), usegmt=True)})
    assert retry_after(error, now=now) == 30.0


def test_retry_after_is_bounded_and_garbage_is_ignored() -> None:
    assert retry_after(http_error(429, {"Retry-After": "99999"})) == MAX_RETRY_AFTER
    assert retry_after(http_error(429, {"Retry-After": "soon"})) is None
    assert retry_after(http_error(429)) is None
    assert retry_after(ValueError("no response")) is None


@pytest.mark.parametrize(
    "options", [{"attempts": 0}, {"backoff": -1}, {"max_backoff": -1}, {"timeout": 0}], ids=str
)
def test_a_policy_that_cannot_work_is_refused(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="must be"):
        RetryPolicy(**options)
