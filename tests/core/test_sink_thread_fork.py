"""A forked child can use the sinks its parent started: it gets threads of its own."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from evalsink.sink_thread import SinkThread


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_runs_hook_calls_on_a_thread_of_its_own() -> None:
    sink_thread = SinkThread("forked")
    assert sink_thread.call(os.getpid, {}, timeout=10) == os.getpid()  # parent's thread started
    pid = os.fork()
    if pid == 0:  # the child: the parent's thread does not exist here
        try:
            answer = sink_thread.call(os.getpid, {}, timeout=10)
        except BaseException:
            os._exit(2)
        os._exit(0 if answer == os.getpid() else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    sink_thread.stop()


def _evaluate_without_saving(output: str) -> None:
    from evalsink import EvaluationTracker

    tracker = EvaluationTracker(
        output,
        sinks=["local", "recorder"],
        run_id="mp-child",
        flush_every=5,
        sink_config={"recorder": {"path": output + "/calls.jsonl"}},
    )
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(7):  # 5 flushed, 2 only in memory
        tracker.details_logger.log("custom|mp|0", {"query": f"q{i}"}, {"text": ["A"]}, {"acc": 1.0})


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_run_in_a_forked_multiprocessing_child_is_finished_when_the_child_ends(tmp_path: Path) -> None:
    """A forked ``multiprocessing`` child ends with ``os._exit()``, skipping ``atexit``: its run
    stayed "running", its last samples unflushed, its sinks never told."""
    import multiprocessing

    output = tmp_path / "out"
    output.mkdir()
    child = multiprocessing.get_context("fork").Process(target=_evaluate_without_saving, args=(str(output),))
    child.start()
    child.join(60)

    assert child.exitcode == 0
    calls = [json.loads(line) for line in (output / "calls.jsonl").read_text(encoding="utf-8").splitlines()]
    [finished] = [call for call in calls if call["hook"] == "run_finished"]
    assert finished["status"] == "failed"
    [manifest] = output.glob(".evalsink/runs/mp-child/*.meta.json")
    assert json.loads(manifest.read_text(encoding="utf-8"))["state"] == "failed"
    [spool] = output.glob(".evalsink/runs/mp-child/*.jsonl")
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 7
