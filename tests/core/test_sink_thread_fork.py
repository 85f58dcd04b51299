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


def _rank_1_that_logs_nothing(output: str, run_id: str) -> None:
    """lighteval's rank 1: builds a tracker, never logs. Between the multiprocessing exit and the
    interpreter's, rank 0 merges its shard and deletes it (another program's atexit runs here)."""
    import atexit
    import shutil

    os.environ.update(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1")
    from evalsink import EvaluationTracker

    EvaluationTracker(output, sinks=["local"], run_id=run_id)
    run_folder = Path(output) / ".evalsink" / "runs" / run_id
    atexit.register(shutil.rmtree, run_folder)  # runs before evalsink's handler (last in, first out)


def test_a_spawned_child_leaves_its_shard_once(tmp_path: Path) -> None:
    """A spawned child runs the exit handler at its multiprocessing exit and again at the
    interpreter's: the second rewrote the shard's manifest after rank 0 had merged and deleted
    it, and `evalsink recover` then listed a run that was saved."""
    import multiprocessing

    output = tmp_path / "out"
    output.mkdir()
    child = multiprocessing.get_context("spawn").Process(
        target=_rank_1_that_logs_nothing, args=(str(output), "spawned")
    )
    child.start()
    child.join(60)

    assert child.exitcode == 0
    assert not (output / ".evalsink" / "runs" / "spawned").exists()
