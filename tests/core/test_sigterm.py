"""SIGTERM (Slurm's time limit, a Kubernetes eviction, torchrun stopping its workers) finishes the
run as failed, tells every sink, keeps the samples for ``evalsink recover``, and exits with 143.

Children are real interpreters sent real signals; the recorder sink writes its hook calls to a
file the test reads.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from evalsink import EvaluationTracker, termination
from evalsink.recovery import find_runs, recover_run

TASK = "lighteval|term:test|0"

CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    from evalsink import EvaluationTracker

    output, mode = sys.argv[1], sys.argv[2]
    if mode == "own-handler":
        # os.write, not print: the signal may land inside the print("ready") below
        signal.signal(signal.SIGTERM, lambda *_: (os.write(1, b"own handler\\n"), os._exit(7)))
    sink_config = {"recorder": {"path": output + "/calls.jsonl"}}
    sinks = ["local", "recorder"]
    if mode in {"hung-finish", "finish-at-exit", "finish-after-save"}:
        sinks.append("flaky")
        sink_config["flaky"] = {
            "fail_in": "run_finished",
            "hang_seconds": 60,
            "hook_timeout": 120,
            "hang_marker": output + "/hung",
        }
    if mode == "local-busy":  # a local sink slow in results_saved, as when converting details
        sinks.append("flaky-local")
        sink_config["flaky-local"] = {
            "fail_in": "results_saved",
            "hang_seconds": 2,
            "hook_timeout": 120,
            "hang_marker": output + "/hung",
        }
    if mode in {"finish-at-exit", "finish-after-save"}:  # a sink after the hung one
        sinks.append("recorder-remote")
        sink_config["recorder-remote"] = {"path": output + "/calls.jsonl", "label": "after"}
    tracker = EvaluationTracker(
        output,
        sinks=sinks,
        run_id="term",
        flush_every=10,
        sink_config=sink_config,
        save_details=mode != "saved-without-details",
    )
    tracker.general_config_logger.log_model_info(model_name="org/stopped")

    def log(count):
        for i in range(count):
            doc = {"query": f"q{i}", "choices": ["A", "B"], "gold_index": 0}
            tracker.details_logger.log("TASK", doc, {"text": ["A"]}, {"acc": 1.0})
            tracker.metrics_logger.log("TASK", {"acc": 1.0})

    if mode == "unflushed":  # stopped before the first batch: the run has not started
        log(5)
        print("ready", flush=True)
        time.sleep(60)
    elif mode == "saved":
        log(25)
        tracker.save()
        print("ready", flush=True)
        time.sleep(60)
    elif mode == "finish-at-exit":  # no save(): the exit handler finishes the run
        log(25)
        print("ready", flush=True)
    elif mode in {"finish-after-save", "local-busy"}:
        log(25)
        print("ready", flush=True)
        tracker.save()
    elif mode == "saved-without-details":  # lighteval's CLI default; stopped after the save
        with tracker:
            log(25)
            tracker.save()
            print("ready", flush=True)
            time.sleep(60)
    elif mode == "with":
        with tracker:
            log(25)
            print("ready", flush=True)
            time.sleep(60)
    else:
        log(25)  # 20 flushed, 5 only in memory
        print("ready", flush=True)
        time.sleep(60)
    """
).replace("TASK", TASK)


def stop(
    tmp_path: Path, mode: str, *, signals: int = 1, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the child until it is ready, send it SIGTERM ``signals`` times, return the finished process.

    In the modes with a hung sink, the last SIGTERM waits until that sink's run_finished hangs."""
    output = tmp_path / "out"
    output.mkdir()
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(script), str(output), mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    if signals == 2:
        child.send_signal(signal.SIGTERM)
    if "finish" in mode or mode == "local-busy":
        while not (output / "hung").exists():
            time.sleep(0.01)
    child.send_signal(signal.SIGTERM)
    stdout, stderr = child.communicate(timeout=60)
    return subprocess.CompletedProcess(child.args, child.returncode, stdout, stderr)


def finished(tmp_path: Path) -> list[dict[str, Any]]:
    lines = (tmp_path / "out" / "calls.jsonl").read_text(encoding="utf-8").splitlines()
    return [call for call in map(json.loads, lines) if call["hook"] == "run_finished"]


def recovered_queries(tmp_path: Path) -> list[str]:
    report = recover_run(tmp_path / "out", "term")
    assert report.ok, str(report)
    [path] = (tmp_path / "out").glob("details/**/details_*.parquet")
    return [row["doc"]["query"] for row in pq.read_table(path).to_pylist()]


@pytest.mark.parametrize("mode", ["plain", "with"])
def test_sigterm_finishes_the_run_as_failed_and_keeps_every_sample(tmp_path: Path, mode: str) -> None:
    child = stop(tmp_path, mode)

    assert child.returncode == 143, child.stderr
    [call] = finished(tmp_path)
    assert call["status"] == "failed"
    assert "SIGTERM" in call["error"]
    assert "was stopped by SIGTERM and finished as failed; its 25 logged sample(s) are kept" in child.stderr
    assert "Traceback" not in child.stderr
    # the 5 samples logged since the last flush were flushed on the way out, not lost
    assert recovered_queries(tmp_path) == [f"q{i}" for i in range(25)]


def test_sigterm_in_one_sink_s_run_finished_lets_the_next_sink_finish(tmp_path: Path) -> None:
    """A slow sink's run_finished (W&B syncing) is where a scheduler's SIGTERM most often lands:
    the sinks after it never heard that the run ended, and at exit the manifest stayed
    "running" with a traceback printed and exit status 0."""
    child = stop(tmp_path, "finish-at-exit")

    assert child.returncode == 0  # the exit was under way: its status is the program's
    assert "Traceback" not in child.stderr
    assert [(call["label"], call["status"]) for call in finished(tmp_path)] == [
        ("recorder", "failed"),
        ("after", "failed"),
    ]
    assert "was stopped by SIGTERM and finished as failed; its 25 logged sample(s) are kept" in child.stderr
    assert recovered_queries(tmp_path) == [f"q{i}" for i in range(25)]


def test_sigterm_in_run_finished_after_a_save_points_to_push(tmp_path: Path) -> None:
    child = stop(tmp_path, "finish-after-save")

    assert child.returncode == 143, child.stderr
    assert [(call["label"], call["status"]) for call in finished(tmp_path)] == [
        ("recorder", "ok"),
        ("after", "ok"),
    ]
    output = tmp_path / "out"
    assert f"sink(s) flaky did not finish: `evalsink push {output} --to flaky --date " in child.stderr
    [manifest] = output.glob(".evalsink/runs/term/*.meta.json")
    assert json.loads(manifest.read_text(encoding="utf-8"))["state"] == "saved"  # for a re-push


def test_sigterm_before_the_first_batch_keeps_the_samples_and_says_where(tmp_path: Path) -> None:
    child = stop(tmp_path, "unflushed")

    assert child.returncode == 143, child.stderr
    assert "was stopped by SIGTERM and finished as failed; its 5 logged sample(s) are kept" in child.stderr
    assert recovered_queries(tmp_path) == [f"q{i}" for i in range(5)]


def test_sigterm_after_a_save_without_details_files_says_nothing_is_kept(tmp_path: Path) -> None:
    """The spool of a run saved without details files stays readable outside the run folder: a
    SIGTERM after the save called it "kept for evalsink recover", which then found no run."""
    child = stop(tmp_path, "saved-without-details")

    assert child.returncode == 143, child.stderr
    assert "SIGTERM" not in child.stderr
    assert len(list((tmp_path / "out").glob("results/**/results_*.json"))) == 1
    assert find_runs(tmp_path / "out") == []


def test_the_exit_lets_a_local_sink_finish_the_call_sigterm_left_it_in(tmp_path: Path) -> None:
    """A local sink converting details when SIGTERM came was exited under: its file was lost, its
    temporary file left, and pyarrow's threads could abort the interpreter as it shut down."""
    child = stop(tmp_path, "local-busy")

    assert child.returncode == 143, child.stderr
    assert "waiting up to 10s for sink 'flaky-local' to finish the call" in child.stderr
    assert (tmp_path / "out" / "hung.done").exists()  # its call ran to its end


def test_a_second_sigterm_kills_at_once(tmp_path: Path) -> None:
    """A sink hung in run_finished does not make the job unkillable: the scheduler's second
    SIGTERM ends it as the default would (and SIGKILL would anyway)."""
    child = stop(tmp_path, "hung-finish", signals=2)
    assert child.returncode == -signal.SIGTERM
    assert [call["status"] for call in finished(tmp_path)] == ["failed"]


@pytest.mark.parametrize(
    ("mode", "env", "returncode"),
    [
        pytest.param("own-handler", {}, 7, id="the-application-s-own-handler-is-left-alone"),
        pytest.param("plain", {"EVALSINK_HANDLE_SIGTERM": "0"}, -signal.SIGTERM, id="turned-off"),
        pytest.param("saved", {}, -signal.SIGTERM, id="after-the-run-is-saved"),
    ],
)
def test_sigterm_is_left_alone(tmp_path: Path, mode: str, env: dict[str, str], returncode: int) -> None:
    child = stop(tmp_path, mode, env=env)
    assert child.returncode == returncode, child.stderr
    statuses = [call["status"] for call in finished(tmp_path)]
    assert statuses == (["ok"] if mode == "saved" else [])


def test_sigterm_inside_a_sink_on_the_main_thread_is_not_taken_for_the_sink_s(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sink called on the evaluation's thread (``hook_timeout: None``) turns a ``SystemExit``
    into its own failure; the SIGTERM that lands while it runs must still stop the evaluation."""
    import evalsink_recorder

    from evalsink import hookimpl

    @hookimpl
    def evalsink_details_batch(self: Any, run: Any, batch: Any) -> None:
        signal.raise_signal(signal.SIGTERM)  # the handler raises Terminated here

    monkeypatch.setattr(evalsink_recorder.RecorderSink, "evalsink_details_batch", evalsink_details_batch)
    monkeypatch.setattr(termination._State, "received", False)
    tracker = EvaluationTracker(
        tmp_path / "out",
        sinks=["local", "recorder"],
        sink_config={"recorder": {"hook_timeout": None}},
        flush_every=5,
    )
    assert signal.getsignal(signal.SIGTERM) is termination._on_sigterm  # else this test would die

    for i in range(4):
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"text": ["A"]}, {"acc": 1.0})
    with pytest.raises(termination.Terminated):  # the fifth sample flushes: the sink gets a batch
        tracker.details_logger.log(TASK, {"query": "q4"}, {"text": ["A"]}, {"acc": 1.0})
    tracker.close(termination.Terminated())

    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # the closed run gave it back
    recorder = tracker.sink_outcomes["recorder"]
    assert recorder.errors == ["evalsink_details_batch: interrupted (Terminated) while the sink was working"]


def test_a_tracker_built_after_the_application_put_the_default_back_handles_sigterm(tmp_path: Path) -> None:
    """The handler's own record said it was installed, so a later tracker trusted it, though the
    application had restored Python's default: that tracker's run died unfinished on SIGTERM."""
    first = EvaluationTracker(tmp_path / "a", sinks=["local"])
    assert signal.getsignal(signal.SIGTERM) is termination._on_sigterm
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # e.g. a library resetting its handlers
    second = EvaluationTracker(tmp_path / "b", sinks=["local"])
    try:
        assert signal.getsignal(signal.SIGTERM) is termination._on_sigterm
    finally:
        first.close()
        second.close()


THREAD_CHILD = textwrap.dedent(
    """
    import sys, threading, time
    from evalsink import EvaluationTracker

    def fill(tracker, tag):
        tracker.general_config_logger.log_model_info(model_name="org/" + tag)
        for i in range(25):
            tracker.details_logger.log("TASK", {"query": f"{tag}{i}"}, {"text": ["A"]}, {"acc": 1.0})
            tracker.metrics_logger.log("TASK", {"acc": 1.0})

    main = EvaluationTracker(sys.argv[1], sinks=["local"], run_id="main", flush_every=10)
    fill(main, "m")
    def work():
        fill(EvaluationTracker(sys.argv[1], sinks=["local"], run_id="term", flush_every=10), "q")

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    main.save()  # the main thread's tracker closes; the worker's run is still open
    print("ready", flush=True)
    time.sleep(60)
    """
).replace("TASK", TASK)


def test_a_run_of_a_tracker_built_on_another_thread_is_finished_after_the_main_one_closed(
    tmp_path: Path,
) -> None:
    """Only the main thread may install the handler: when the main thread's tracker closed, it put
    Python's default back, and SIGTERM killed the worker's open run on the spot (its last samples
    lost, its manifest left "running")."""
    output = tmp_path / "out"
    script = tmp_path / "child.py"
    script.write_text(THREAD_CHILD, encoding="utf-8")
    child = subprocess.Popen(
        [sys.executable, str(script), str(output)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    _, stderr = child.communicate(timeout=60)

    assert child.returncode == 143, stderr
    assert "run 'term' was stopped by SIGTERM and finished as failed; its 25 logged sample(s)" in stderr
    assert recover_run(output, "term").ok
    [path] = output.glob("details/org/q/**/details_*.parquet")
    assert [row["doc"]["query"] for row in pq.read_table(path).to_pylist()] == [f"q{i}" for i in range(25)]
