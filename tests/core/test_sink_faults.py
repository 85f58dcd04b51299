"""A sink that hangs or raises at any point of the run costs the other sinks nothing.

Hangs are real sleeps in the test sink ``flaky`` (``hang_seconds``), cut short by its
``hook_timeout``; the run must go on within about that timeout, and the local results must be
complete.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import evalsink_recorder
import pytest
from core_helpers import Calls

from evalsink import EvaluationTracker

HOOKS = ["run_started", "details_batch", "results_saved"]


def hang(hook: str, seconds: float = 5.0, timeout: float = 0.3) -> dict[str, object]:
    return {"fail_in": hook, "hang_seconds": seconds, "hook_timeout": timeout}


def local_files(output: Path) -> list[Path]:
    return sorted(p for p in output.rglob("*") if p.is_file() and ".evalsink" not in p.parts)


@pytest.mark.parametrize("hook", HOOKS)
def test_a_hung_sink_is_abandoned_and_the_others_finish(
    make_tracker: Callable[..., EvaluationTracker],
    log: Callable[..., None],
    calls: Calls,
    tmp_path: Path,
    hook: str,
) -> None:
    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"], sink_config={"flaky": hang(hook)}, flush_every=5
    )
    started = time.monotonic()
    log(tracker, "custom|t|0", 12)
    report = tracker.save()
    elapsed = time.monotonic() - started

    assert elapsed < 3.0  # one timeout of 0.3 s, not the 5 s hang
    flaky = report["flaky"]
    assert flaky.timed_out
    assert flaky.failed_hooks == [f"evalsink_{hook}"]
    assert "no answer after 0.3s (hook_timeout)" in flaky.errors[0]
    assert report["local"].ok
    assert report["recorder"].ok
    assert len(local_files(tmp_path / "out")) == 2  # results JSON and the task's details parquet
    assert calls.queries() == [f"custom|t|0 q{i}" for i in range(12)]
    # no further hook reaches a sink stuck in an earlier one, not even run_finished
    assert [h for who, h, _ in evalsink_recorder.CALLS if who == "flaky"][-1] == hook


def test_an_exception_in_a_sink_thread_is_reported_with_its_type(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None]
) -> None:
    tracker = make_tracker(sinks=["local", "flaky"], sink_config={"flaky": {"fail_in": "details_batch"}})
    log(tracker, "custom|t|0", 3)
    report = tracker.save()
    assert report["flaky"].errors == ["evalsink_details_batch: RuntimeError: flaky sink failed on purpose"]
    assert isinstance(report["flaky"].exception, RuntimeError)
    assert not report["flaky"].timed_out
    assert report["local"].ok


def test_each_sink_keeps_one_thread_of_its_own(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None]
) -> None:
    tracker = make_tracker(sinks=["recorder", "recorder-remote"], flush_every=2)
    log(tracker, "custom|t|0", 5)
    tracker.save()
    threads = {(label, name) for label, _, name in evalsink_recorder.THREADS}
    assert threads == {("recorder", "evalsink-sink-recorder"), ("recorder", "evalsink-sink-recorder-remote")}
    # the threads end once the run is finished
    deadline = time.monotonic() + 5
    while any(t.name.startswith("evalsink-sink-") for t in threading.enumerate()):
        assert time.monotonic() < deadline, [t.name for t in threading.enumerate()]
        time.sleep(0.01)


def test_without_a_timeout_hooks_run_on_the_evaluation_thread(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None]
) -> None:
    tracker = make_tracker(sink_config={"recorder": {"hook_timeout": None}})
    log(tracker, "custom|t|0", 2)
    tracker.save()
    names = {name for _, _, name in evalsink_recorder.THREADS}
    assert names == {threading.current_thread().name}


def test_a_hung_sink_never_blocks_interpreter_exit(tmp_path: Path) -> None:
    import subprocess
    import sys

    script = (
        "from evalsink import EvaluationTracker\n"
        f"t = EvaluationTracker({str(tmp_path)!r}, sinks=['local', 'flaky'], sink_config={{'flaky': "
        "{'fail_in': 'results_saved', 'hang_seconds': 600, 'hook_timeout': 0.2}})\n"
        "t.details_logger.log('custom|t|0', {'query': 'q'}, {'input': 'p'}, {'acc': 1.0})\n"
        "t.metrics_logger.log('custom|t|0', {'acc': 1.0})\n"
        "print(t.save().failed)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['flaky']"


def test_hook_timeout_is_validated(make_tracker: Callable[..., EvaluationTracker]) -> None:
    from evalsink.errors import SinkConfigError

    with pytest.raises(SinkConfigError, match="hook_timeout"):
        make_tracker(sink_config={"recorder": {"hook_timeout": 0}})


def test_ctrl_c_during_save_does_not_wait_for_a_sink_still_at_work(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], tmp_path: Path
) -> None:
    """Ctrl-C while ``save()`` waits on a slow sink: the interrupt goes through at once, and
    ``run_finished`` does not queue behind the sink's running call (up to its ``hook_timeout``)."""
    import signal

    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"],
        sink_config={"flaky": {"fail_in": "results_saved", "hang_seconds": 5.0, "hook_timeout": 600}},
        flush_every=5,
    )
    log(tracker, "custom|t|0", 12)
    main = threading.main_thread().ident
    assert main is not None

    pressed: list[float] = []

    def ctrl_c_once_flaky_works() -> None:  # to the waiting thread (a fixed delay raced the local sink)
        while ("flaky", "results_saved", {}) not in evalsink_recorder.CALLS:
            time.sleep(0.01)
        pressed.append(time.monotonic())
        signal.pthread_kill(main, signal.SIGINT)

    presser = threading.Thread(target=ctrl_c_once_flaky_works, daemon=True)
    presser.start()
    with pytest.raises(KeyboardInterrupt):
        tracker.save()
    interrupted = time.monotonic()
    presser.join()

    # neither the 5 s of work nor the 600 s hook_timeout: run_finished only waited its catch-up
    assert interrupted - pressed[0] < 2.5
    flaky = tracker.sink_outcomes["flaky"]
    assert flaky.timed_out
    assert flaky.errors == [
        "evalsink_results_saved: interrupted (KeyboardInterrupt) while the sink was still working; "
        "left running in the background"
    ]
    # the sinks that were done got run_finished (failed, as the run was interrupted); flaky did not
    finished = [(who, info) for who, hook, info in evalsink_recorder.CALLS if hook == "run_finished"]
    assert [who for who, _ in finished] == ["recorder"]
    assert len(local_files(tmp_path / "out")) == 2  # the local files were written before the interrupt


def test_a_sink_interrupted_in_a_short_call_still_hears_how_the_run_ended(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None]
) -> None:
    """Ctrl-C (or SIGTERM) usually lands while the evaluation waits for a sink taking a batch,
    which it finishes a moment later: that sink still gets ``run_finished`` (it was skipped as
    "still stuck in an earlier hook", so the local sink's staged files and a remote run were
    never closed); one still busy after ``CATCH_UP_SECONDS`` is skipped, as above."""
    import signal

    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"],
        sink_config={"flaky": {"fail_in": "details_batch", "hang_seconds": 0.6, "hook_timeout": 600}},
        flush_every=5,
    )
    main = threading.main_thread().ident
    assert main is not None
    timer = threading.Timer(0.3, signal.pthread_kill, (main, signal.SIGINT))
    timer.start()
    with pytest.raises(KeyboardInterrupt):
        log(tracker, "custom|t|0", 5)  # the fifth sample flushes: flaky sleeps 0.6 s in the batch
    timer.cancel()
    assert tracker.sink_outcomes["flaky"].timed_out  # interrupted while at work
    tracker.close(KeyboardInterrupt())

    flaky = [hook for who, hook, _ in evalsink_recorder.CALLS if who == "flaky"]
    assert flaky == ["run_started", "details_batch", "details_batch woke up", "run_finished"]
    finished = [who for who, hook, _ in evalsink_recorder.CALLS if hook == "run_finished"]
    assert finished == ["recorder", "flaky"]


@pytest.mark.parametrize("raised", ["SystemExit", "KeyboardInterrupt"])
def test_a_sink_that_exits_on_its_own_thread_fails_alone(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], tmp_path: Path, raised: str
) -> None:
    """A client library that calls ``sys.exit()`` inside a hook used to end the whole evaluation
    at the first batch; on the sink's thread it can only be the sink's doing (signals reach the
    main thread), so it is that sink's failure."""
    from evalsink.sink_thread import SinkExitError

    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"],
        sink_config={"flaky": {"fail_in": "details_batch", "raises": raised}},
        flush_every=5,
    )
    log(tracker, "custom|t|0", 12)  # the first batch is delivered at the fifth sample
    report = tracker.save()

    flaky = report["flaky"]
    assert flaky.failed_hooks == ["evalsink_details_batch"]
    assert flaky.errors == [
        f"evalsink_details_batch: SinkExitError: {raised} raised in the hook: "
        f"{raised}('flaky sink failed on purpose')"
    ]
    assert isinstance(flaky.exception, SinkExitError)
    assert type(flaky.exception.__cause__).__name__ == raised
    assert report["local"].ok
    assert report["recorder"].ok
    assert len(local_files(tmp_path / "out")) == 2


@pytest.mark.parametrize("given", [float("inf"), "inf", 1e10])
def test_a_timeout_beyond_what_threads_can_wait_means_forever(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], given: object
) -> None:
    """``threading`` refuses waits beyond ``TIMEOUT_MAX`` (OverflowError in every hook): such a
    timeout, ``inf`` included, waits forever on the sink's thread."""
    tracker = make_tracker(sinks=["local", "recorder"], sink_config={"recorder": {"hook_timeout": given}})
    log(tracker, "custom|t|0", 3)
    report = tracker.save()
    assert report.ok, report
    assert {name for _, _, name in evalsink_recorder.THREADS} == {"evalsink-sink-recorder"}


def test_hook_timeout_none_from_the_environment(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALSINK_RECORDER__HOOK_TIMEOUT", "none")
    tracker = make_tracker(sinks=["local", "recorder"])
    log(tracker, "custom|t|0", 2)
    tracker.save()
    assert {name for _, _, name in evalsink_recorder.THREADS} == {threading.current_thread().name}


def _inline(hook: str, raised: str) -> dict[str, object]:
    return {"fail_in": hook, "raises": raised, "hook_timeout": None}


@pytest.mark.parametrize("hook", ["run_started", "details_batch", "results_saved", "run_finished"])
def test_a_sink_called_inline_that_exits_fails_alone(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], tmp_path: Path, hook: str
) -> None:
    """``hook_timeout: None`` calls the sink on the evaluation's thread; its ``sys.exit()`` used to
    end the evaluation there (and, from ``run_finished``, leave a report saying the sink was ok).
    It is the sink's failure, as on the sink's own thread."""
    from evalsink.sink_thread import SinkExitError

    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"],
        sink_config={"flaky": _inline(hook, "SystemExit")},
        flush_every=5,
    )
    log(tracker, "custom|t|0", 12)
    report = tracker.save()  # outside a with block: run_finished too

    flaky = report["flaky"]
    assert flaky.failed_hooks == [f"evalsink_{hook}"]
    assert flaky.errors == [
        f"evalsink_{hook}: SinkExitError: SystemExit raised in the hook: "
        "SystemExit('flaky sink failed on purpose')"
    ]
    assert isinstance(flaky.exception, SinkExitError)
    assert type(flaky.exception.__cause__) is SystemExit
    assert report["local"].ok
    assert report["recorder"].ok
    assert len(local_files(tmp_path / "out")) == 2
    assert {name for who, _, name in evalsink_recorder.THREADS if who == "flaky"} == {
        threading.current_thread().name
    }


def test_ctrl_c_inside_a_sink_called_inline_is_recorded_and_goes_through(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], calls: Calls, tmp_path: Path
) -> None:
    """A ``KeyboardInterrupt`` on the main thread may be the user's Ctrl-C: it ends the evaluation,
    but the sink it cut short is marked failed first (its outcome used to say ok)."""
    tracker = make_tracker(
        sinks=["local", "recorder", "flaky"],
        sink_config={"flaky": _inline("results_saved", "KeyboardInterrupt")},
    )
    log(tracker, "custom|t|0", 3)
    with pytest.raises(KeyboardInterrupt):
        tracker.save()

    flaky = tracker.sink_outcomes["flaky"]
    assert flaky.failed_hooks == ["evalsink_results_saved"]
    assert flaky.errors == [
        "evalsink_results_saved: interrupted (KeyboardInterrupt) while the sink was working"
    ]
    assert not flaky.timed_out
    # the interrupted run is still finished, for the interrupted sink too (it may close what it opened)
    assert [h for who, h, _ in evalsink_recorder.CALLS if who == "flaky"][-1] == "run_finished"
    assert calls.of("run_finished") == [{"status": "failed", "error": "flaky sink failed on purpose"}]
    assert len(local_files(tmp_path / "out")) == 2


def test_a_keyboard_interrupt_off_the_main_thread_is_the_sinks_own(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None]
) -> None:
    """No signal reaches a thread other than the main one: there, called inline, it is the sink's
    failure (``SinkExitError``), as on the sink's own thread."""
    tracker = make_tracker(
        sinks=["local", "flaky"], sink_config={"flaky": _inline("results_saved", "KeyboardInterrupt")}
    )
    log(tracker, "custom|t|0", 3)
    reports = []
    worker = threading.Thread(target=lambda: reports.append(tracker.save()), name="evaluation")
    worker.start()
    worker.join(60)

    [report] = reports
    assert report["flaky"].errors == [
        "evalsink_results_saved: SinkExitError: KeyboardInterrupt raised in the hook: "
        "KeyboardInterrupt('flaky sink failed on purpose')"
    ]
    assert report["local"].ok


def test_ctrl_c_in_one_sink_s_run_finished_still_finishes_the_sinks_after_it(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], calls: Calls, tmp_path: Path
) -> None:
    """run_finished is a sink's last call: an interrupt landing in one sink's cost the sinks
    after it theirs (a W&B or Hub run left open). They are called, then the interrupt goes on."""
    tracker = make_tracker(
        sinks=["local", "flaky", "recorder-remote"],
        sink_config={"flaky": _inline("run_finished", "KeyboardInterrupt")},
    )
    log(tracker, "custom|t|0", 3)
    with pytest.raises(KeyboardInterrupt):
        tracker.save()

    assert [(who, hook) for who, hook, _ in evalsink_recorder.CALLS if hook == "run_finished"] == [
        ("flaky", "run_finished"),
        ("recorder", "run_finished"),  # the remote recorder's label
    ]
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]
    assert tracker.sink_outcomes["flaky"].failed_hooks == ["evalsink_run_finished"]
    # the local files were written: the run waits for a re-push to the sink that did not finish
    assert len(local_files(tmp_path / "out")) == 2
    [manifest] = (tmp_path / "out").glob(".evalsink/runs/*/*.meta.json")
    assert '"state": "saved"' in manifest.read_text(encoding="utf-8")


def test_an_error_after_a_complete_save_in_a_with_block_leaves_nothing_to_recover(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[..., None], tmp_path: Path
) -> None:
    """Every sink had the run; the block then raised (or SIGTERM came). The spool was kept with a
    message to recover it, which `evalsink recover` then refused: the run was saved."""
    tracker = make_tracker(sinks=["local", "recorder"])

    def evaluate() -> None:
        with tracker:
            log(tracker, "custom|t|0", 3)
            assert tracker.save().ok
            raise RuntimeError("after the save")

    with pytest.raises(RuntimeError, match="after the save"):
        evaluate()

    assert list((tmp_path / "out").glob(".evalsink/**/*.*")) == []
    assert len(local_files(tmp_path / "out")) == 2
