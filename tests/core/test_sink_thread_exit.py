"""What the exit waits for: only a local sink that Ctrl-C or SIGTERM left in a call, and not
once the user interrupted twice. A sink that merely overran its hook_timeout may be hung for
good: every such exit took EXIT_WAIT_SECONDS longer (a saved run exited 10 s late)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from evalsink import sink_thread
from evalsink.sink_thread import HookTimeoutError, SinkThread


@pytest.fixture
def release() -> Iterator[threading.Event]:
    """Set at the end of each test, so that no call is left blocking its thread."""
    event = threading.Event()
    yield event
    event.set()


@pytest.fixture(autouse=True)
def no_interrupts_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sink_thread, "_INTERRUPTS", [])
    monkeypatch.setattr(sink_thread, "EXIT_WAIT_SECONDS", 0.5)


def busy_local_sink(release: threading.Event, *, interrupted: bool) -> SinkThread:
    """A local sink's thread left in a call: by a timeout, or by an interrupt (noted as the
    manager notes it)."""
    thread = SinkThread("slow", local=True)
    with pytest.raises(HookTimeoutError):
        thread.call(release.wait, {"timeout": 30}, 0.05)
    if interrupted:
        sink_thread.note_interrupt(thread)
    assert thread.busy
    return thread


def exit_seconds() -> float:
    started = time.monotonic()
    sink_thread._let_local_sinks_finish()
    return time.monotonic() - started


def test_the_exit_waits_for_a_local_sink_an_interrupt_left_in_a_call(
    release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    busy_local_sink(release, interrupted=True)
    assert exit_seconds() >= 0.5
    assert "waiting up to 0.5s for sink 'slow'" in caplog.text


def test_the_exit_does_not_wait_for_a_sink_that_overran_its_timeout(
    release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    busy_local_sink(release, interrupted=False)
    assert exit_seconds() < 0.25
    assert "waiting" not in caplog.text


def test_the_exit_does_not_wait_once_the_user_interrupted_twice(
    release: threading.Event, caplog: pytest.LogCaptureFixture
) -> None:
    busy_local_sink(release, interrupted=True)
    sink_thread.note_interrupt(None)  # a second Ctrl-C, in another sink's call
    assert exit_seconds() < 0.25
    assert "interrupted 2 times: not waiting for sink(s) 'slow', still at work" in caplog.text
