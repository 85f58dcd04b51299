"""Rank 0 merges only the shards of its own evaluation, and stops waiting for a rank that failed.

The ranks are simulated in this one process: the rank is read from the environment when a tracker
is built, and ``new_process`` also forgets how many trackers "this process" built for a run id
(what tells the k-th evaluation of a loop from the next).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

import evalsink.shards
from evalsink import EvaluationTracker, none_metrics, nonfinite
from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest, write_manifest

TASK = "custom|t|0"
_LAUNCHER_KEYS = (
    "RANK",
    "WORLD_SIZE",
    "LOCAL_RANK",
    "EVALSINK_RUN_ID",
    "TORCHELASTIC_RUN_ID",
    "TORCHELASTIC_RESTART_COUNT",
    "SLURM_JOB_ID",
    "SLURM_STEP_ID",
    "SLURM_RESTART_COUNT",
    "SLURM_PROCID",
    "SLURM_NTASKS",
    "SLURM_LOCALID",
)

NewProcess = Callable[..., None]


@pytest.fixture
def new_process(monkeypatch: pytest.MonkeyPatch) -> Iterator[NewProcess]:
    """Make the trackers built next those of rank ``rank`` of a new process (``env`` added)."""

    def switch(rank: int, world: int = 2, **env: str) -> None:
        for key in _LAUNCHER_KEYS:
            monkeypatch.delenv(key, raising=False)
        monkeypatch.setenv("RANK", str(rank))
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("LOCAL_RANK", str(rank))
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        getattr(evalsink.shards, "_sequences", {}).clear()

    yield switch
    getattr(evalsink.shards, "_sequences", {}).clear()


@pytest.fixture
def single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The trackers built next belong to a process launched alone (no launcher's variables)."""
    for key in _LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)


def log(tracker: EvaluationTracker, queries: list[str], acc: float = 1.0, task: str = TASK) -> None:
    for query in queries:
        tracker.details_logger.log(task, {"query": query}, {"text": ["a"]}, {"acc": acc})
        tracker.metrics_logger.log(task, {"acc": acc})


def shard(
    output: Path, run_id: str, queries: list[str], model: str = "org/m", acc: float = 1.0
) -> EvaluationTracker:
    """A rank > 0 that logged ``queries`` and saved (its shard marked done)."""
    tracker = EvaluationTracker(output, sinks=["local"], run_id=run_id, flush_every=2)
    tracker.general_config_logger.log_model_info(model_name=model)
    log(tracker, queries, acc)
    tracker.save()
    return tracker


def saved_queries(output: Path, model: str = "org/m") -> list[str]:
    [path] = (output / "details" / model).glob("*/details_*.parquet")
    return sorted(row["doc"]["query"] for row in pq.read_table(path).to_pylist())


def saved_results(output: Path, model: str = "org/m") -> list[dict[str, Any]]:
    return [
        json.loads(path.read_text()) for path in sorted((output / "results" / model).glob("results_*.json"))
    ]


def save_in_thread(tracker: EvaluationTracker) -> tuple[threading.Thread, dict[str, Any]]:
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            outcome["report"] = tracker.save()
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=run)
    thread.start()
    return thread, outcome


# -- fix 1: a shard is merged only into the evaluation it belongs to ---------------------------


def test_a_requeued_job_waits_for_its_own_rank_not_the_earlier_attempts_shard(
    tmp_path: Path, new_process: NewProcess, caplog: pytest.LogCaptureFixture
) -> None:
    slurm = {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0"}  # run id slurm-4242-0 both times
    new_process(1, **slurm)  # attempt 1: rank 1 finished, rank 0 was killed before save()
    old = EvaluationTracker(tmp_path, sinks=["local"], flush_every=2)
    log(old, ["old q1", "old q3"])
    old.save()
    new_process(0, **slurm, SLURM_RESTART_COUNT="1")  # the requeued job: Slurm counts the restart
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], flush_every=2, merge_timeout=20)
    rank0.general_config_logger.log_model_info(model_name="org/m")
    log(rank0, ["new q0", "new q2"])
    new_process(1, **slurm, SLURM_RESTART_COUNT="1")
    rank1 = EvaluationTracker(tmp_path, sinks=["local"], flush_every=2)
    rank1.general_config_logger.log_model_info(model_name="org/m")
    log(rank1, ["new q1", "new q3"])

    with caplog.at_level(logging.WARNING, logger="evalsink"):
        thread, outcome = save_in_thread(rank0)  # the earlier attempt's shard is already done
        time.sleep(1)
        rank1.save()
        thread.join(30)
    assert "error" not in outcome, outcome
    assert saved_queries(tmp_path) == ["new q0", "new q1", "new q2", "new q3"]
    stale = manifest_path(old.details_logger.spool.path)
    assert f"not merging {stale}: another launch" in caplog.text
    # once the requeued attempt saved, what the earlier one left is gone: a later `evalsink
    # recover` sweep published it as a second, partial results file of the run
    assert not stale.exists()
    assert not old.details_logger.spool.path.exists()
    from evalsink.recovery import find_runs

    assert find_runs(tmp_path) == []


def test_a_loop_over_evaluations_never_takes_the_next_evaluations_shard(
    tmp_path: Path, new_process: NewProcess
) -> None:
    # one Slurm step, so one derived run id for both evaluations of each rank's loop
    slurm = {"SLURM_JOB_ID": "777", "SLURM_STEP_ID": "0"}
    new_process(1, **slurm)
    first = EvaluationTracker(tmp_path, sinks=["local"], flush_every=2)  # its shard is late
    shard(tmp_path, "", ["second q1"])  # rank 1 is already done with the second evaluation
    new_process(0, **slurm)
    rank0_first = EvaluationTracker(tmp_path, sinks=["local"], merge_timeout=1)
    rank0_first.general_config_logger.log_model_info(model_name="org/m")
    log(rank0_first, ["first q0"])
    with pytest.raises(EvalsinkError, match=r"rank\(s\) 1 of 2 did not finish"):
        rank0_first.save()  # not: rank 1's second evaluation merged into the first
    del first

    rank0_second = EvaluationTracker(tmp_path, sinks=["local"], merge_timeout=5)
    rank0_second.general_config_logger.log_model_info(model_name="org/m")
    log(rank0_second, ["second q0"])
    assert rank0_second.save().ok
    assert saved_queries(tmp_path) == ["second q0", "second q1"]


def test_a_shard_of_another_model_is_refused_naming_it(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)  # job B's rank 1, started with the same EVALSINK_RUN_ID as job A
    other = shard(tmp_path, "nightly", ["B q1"], model="org/B")
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="nightly", merge_timeout=5)
    rank0.general_config_logger.log_model_info(model_name="org/A")
    log(rank0, ["A q0"])
    path = manifest_path(other.details_logger.spool.path)
    with pytest.raises(EvalsinkError, match=rf"{path} is rank 1's shard of model 'org/B'.*'org/A'"):
        rank0.save()
    assert not (tmp_path / "results").exists()


def test_two_shards_claiming_one_rank_are_refused(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)
    first = shard(tmp_path, "again", ["q1"])
    new_process(1)
    second = shard(tmp_path, "again", ["q1"])
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="again", merge_timeout=5)
    rank0.general_config_logger.log_model_info(model_name="org/m")
    log(rank0, ["q0"])
    with pytest.raises(EvalsinkError, match="2 spools claim to be rank 1") as error:
        rank0.save()
    for tracker in (first, second):
        assert str(manifest_path(tracker.details_logger.spool.path)) in str(error.value)


def test_manifests_without_launch_or_sequence_are_still_read(tmp_path: Path) -> None:
    data = json.loads(RunManifest(run_id="r", spool="details-x.jsonl").to_json())
    del data["launch"], data["sequence"]
    manifest = RunManifest.from_json(json.dumps(data).encode())
    assert (manifest.launch, manifest.sequence) == ({}, 0)


def test_launch_identity_tells_a_requeue_apart() -> None:
    first = evalsink.shards.launch_identity({"SLURM_JOB_ID": "9"})
    assert first == {"SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "0"}
    requeued = evalsink.shards.launch_identity({"SLURM_JOB_ID": "9", "SLURM_RESTART_COUNT": "1"})
    assert first != requeued
    # torchrun's restart count is per node (only the agent whose workers failed counts), so two
    # ranks of one attempt may disagree on it: the run id alone identifies the launch
    restarted = evalsink.shards.launch_identity(
        {"TORCHELASTIC_RUN_ID": "x", "TORCHELASTIC_RESTART_COUNT": "2"}
    )
    assert restarted == {"TORCHELASTIC_RUN_ID": "x"}
    assert evalsink.shards.launch_identity({}) == {}


# -- fix 2: a resumed run saves under the date id its manifest recorded -----------------------

KILLED_IN_SAVE = """
import os, signal, sys
import evalsink_local
from evalsink import EvaluationTracker
evalsink_local.LocalSink._write_details = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)
tracker = EvaluationTracker(sys.argv[1], sinks=["local"], run_id="killsave", flush_every=4)
tracker.general_config_logger.log_model_info(model_name="org/m")
for i in range(10):
    tracker.details_logger.log("custom|t|0", {"query": f"q{i}"}, {"text": ["a"]}, {"acc": float(i % 2)})
    tracker.metrics_logger.log("custom|t|0", {"acc": float(i % 2)})
tracker.save()
"""


def test_a_run_killed_inside_save_is_resumed_under_its_date_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in _LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_IN_SAVE, str(tmp_path)], capture_output=True, check=False
    )
    assert killed.returncode == -9, killed.stderr
    [published] = (tmp_path / "results" / "org" / "m").glob("results_*.json")
    date_id = published.stem.removeprefix("results_")

    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="killsave", resume=True)
    assert tracker.save().date_id == date_id
    assert list((tmp_path / "results" / "org" / "m").glob("results_*.json")) == [published]
    assert [p.parent.name for p in (tmp_path / "details" / "org" / "m").glob("*/*.parquet")] == [date_id]


# -- fix 3: a NaN metric read back from a spool is NaN again ----------------------------------


def test_a_nan_metric_of_another_rank_makes_the_mean_nan(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)
    shard(tmp_path, "nan", ["q1"], acc=math.nan)
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="nan", merge_timeout=5)
    rank0.general_config_logger.log_model_info(model_name="org/m")
    log(rank0, ["q0"], acc=1.0)
    report = rank0.save()
    assert math.isnan(rank0.metrics_logger.metric_aggregated[TASK]["acc"])  # as one process
    assert saved_results(tmp_path)[0]["results"][TASK]["acc"] is None
    # and the NaN written as null in rank 1's details is reported, as in one process
    assert f"details of {TASK!r}: 1 NaN/inf value(s) written as null" in report.warnings


@pytest.mark.usefixtures("single_process")
def test_a_nan_metric_logged_before_a_resume_makes_the_mean_nan(tmp_path: Path) -> None:
    crashed = EvaluationTracker(tmp_path, sinks=["local"], run_id="nan-resume", flush_every=1)
    log(crashed, ["q0"], acc=math.nan)
    crashed.close(RuntimeError("killed"))  # its spool and manifest stay, as after a crash
    resumed = EvaluationTracker(tmp_path, sinks=["local"], run_id="nan-resume", resume=True)
    log(resumed, ["q1"], acc=math.inf)
    report = resumed.save()
    assert math.isnan(resumed.metrics_logger.metric_aggregated[TASK]["acc"])
    # the NaN logged before the crash is still reported, beside the inf logged after it
    assert f"details of {TASK!r}: 2 NaN/inf value(s) written as null" in report.warnings


def _log_values(tracker: EvaluationTracker, values: list[float | None], first: int = 0) -> None:
    for i, value in enumerate(values, start=first):
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"text": ["a"]}, {"acc": value, "em": 1.0})
        tracker.metrics_logger.log(TASK, {"acc": value, "em": 1.0})


def test_a_none_metric_of_another_rank_is_left_out_of_the_mean(
    tmp_path: Path, new_process: NewProcess
) -> None:
    """None and NaN are both null in a spool: rank 1's None (left out of the mean in one process)
    became NaN when rank 0 merged it, and the mean NaN. Its manifest now says which was None."""
    new_process(1)
    rank1 = EvaluationTracker(tmp_path, sinks=["local"], run_id="none", flush_every=2)
    rank1.general_config_logger.log_model_info(model_name="org/m")
    _log_values(rank1, [None, 0.0, None, None, 1.0], first=1)
    rank1.save()
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="none", merge_timeout=5)
    rank0.general_config_logger.log_model_info(model_name="org/m")
    _log_values(rank0, [1.0])
    rank0.save()

    assert saved_results(tmp_path)[0]["results"][TASK]["acc"] == pytest.approx(2 / 3)  # 1, 0 and 1
    assert saved_results(tmp_path)[0]["results"][TASK]["em"] == 1.0
    assert len(saved_queries(tmp_path)) == 6  # every sample, None or not, is in the details


@pytest.mark.usefixtures("single_process")
def test_a_none_metric_logged_before_a_resume_stays_none(tmp_path: Path) -> None:
    crashed = EvaluationTracker(tmp_path, sinks=["local"], run_id="none-resume", flush_every=1)
    crashed.general_config_logger.log_model_info(model_name="org/m")
    _log_values(crashed, [None, 1.0])
    crashed.close(RuntimeError("killed"))  # its spool and manifest stay, as after a crash

    resumed = EvaluationTracker(tmp_path, sinks=["local"], run_id="none-resume", resume=True, flush_every=1)
    _log_values(resumed, [0.0, None], first=2)
    resumed.close(RuntimeError("killed again"))  # the resumed run's manifest keeps both Nones

    again = EvaluationTracker(tmp_path, sinks=["local"], run_id="none-resume", resume=True)
    again.save()
    assert saved_results(tmp_path)[0]["results"][TASK]["acc"] == pytest.approx(0.5)  # 1 and 0


@pytest.mark.usefixtures("single_process")
def test_the_nones_of_a_batch_are_in_the_manifest_before_the_batch_is_on_disk(tmp_path: Path) -> None:
    """The manifest was written after each batch: a kill in between left the batch's Nones out of
    it, and the recovered run read them as NaN (the mean NaN)."""
    killed = EvaluationTracker(tmp_path, sinks=["local"], run_id="none-kill", flush_every=2)
    killed.general_config_logger.log_model_info(model_name="org/m")
    _log_values(killed, [1.0, 0.0])

    def killed_here(batch: object) -> None:  # what follows the spool's write never happens
        raise KeyboardInterrupt

    killed.details_logger.on_batch = killed_here
    with pytest.raises(KeyboardInterrupt):
        _log_values(killed, [None, None], first=2)  # the second one writes the batch
    manifest = read_manifest(manifest_path(killed.details_logger.spool.path))
    assert manifest is not None
    assert manifest.none_metrics == {TASK: {"acc": [2, 4]}}

    resumed = EvaluationTracker(tmp_path, sinks=["local"], run_id="none-kill", resume=True)
    resumed.save()
    assert saved_results(tmp_path)[0]["results"][TASK]["acc"] == pytest.approx(0.5)  # 1 and 0
    killed.details_logger.on_batch = None
    killed.close(RuntimeError("killed"))


@pytest.mark.usefixtures("single_process")
def test_nan_values_a_kill_kept_out_of_the_spool_are_not_reported(tmp_path: Path) -> None:
    """The manifest is written before each batch reaches the spool: a kill in between left counts
    that took in the batch, and the recovered run reported NaN values it did not hold."""
    killed = EvaluationTracker(tmp_path, sinks=["local"], run_id="nan-kill", flush_every=2)
    killed.general_config_logger.log_model_info(model_name="org/m")
    _log_values(killed, [1.0, float("nan")])
    spool = killed.details_logger.spool
    write_manifest_first = spool.before_write
    assert write_manifest_first is not None

    def killed_after_the_manifest() -> None:
        write_manifest_first()
        raise KeyboardInterrupt  # SIGKILL: the batch never reaches the spool

    spool.before_write = killed_after_the_manifest
    with pytest.raises(KeyboardInterrupt):
        _log_values(killed, [float("nan"), float("inf")], first=2)
    manifest = read_manifest(manifest_path(spool.path))
    assert manifest is not None
    assert manifest.nonfinite == {TASK: 3}
    assert manifest.nonfinite_at == {TASK: [1, 4, 1]}

    resumed = EvaluationTracker(tmp_path, sinks=["local"], run_id="nan-kill", resume=True)
    report = resumed.save()
    assert "1 NaN/inf value(s) written as null" in str(report), str(report)
    spool.before_write = None
    killed.close(RuntimeError("killed"))


def test_nonfinite_positions_count_only_the_samples_in_the_spool() -> None:
    positions: nonfinite.Positions = {}
    for index, count in [(0, 2), (1, 2), (2, 1), (5, 1)]:
        nonfinite.add(positions, "t", index, count)
    assert positions == {"t": [0, 2, 2, 2, 3, 1, 5, 6, 1]}
    assert [nonfinite.count_at(positions, "t", i) for i in range(7)] == [2, 2, 1, 0, 0, 1, 0]
    assert nonfinite.count_at(positions, "u", 0) == 0
    assert nonfinite.below(positions, {"t": 2}) == {"t": [0, 2, 2]}
    assert nonfinite.totals(nonfinite.below(positions, {"t": 5})) == {"t": 5}
    nonfinite.remove(positions, "t", 5)
    nonfinite.remove(positions, "t", 2)
    nonfinite.remove(positions, "t", 1)
    assert positions == {"t": [0, 1, 2]}
    nonfinite.remove(positions, "t", 0)
    assert positions == {}


def test_a_sample_that_could_not_be_spooled_leaves_no_none_position() -> None:
    positions: none_metrics.Positions = {}
    none_metrics.add(positions, "t", 0, ["acc", "em"])
    none_metrics.add(positions, "t", 1, ["acc"])
    none_metrics.remove(positions, "t", 1, ["acc"])
    assert positions == {"t": {"acc": [0, 1], "em": [0, 1]}}
    none_metrics.remove(positions, "t", 0, ["acc", "em"])
    assert positions == {}


def test_none_positions_outside_the_spool_are_dropped() -> None:
    """A sample lost unflushed in a crash: the resumed run logs its next sample at that position."""
    positions = {"t": {"acc": [0, 2, 5, 9], "em": [7, 8]}, "u": {"acc": [0, 1]}}
    assert none_metrics.below(positions, {"t": 6, "u": 1}) == {
        "t": {"acc": [0, 2, 5, 6]},
        "u": {"acc": [0, 1]},
    }
    assert none_metrics.names_at(positions, "t", 1) == {"acc"}
    assert none_metrics.names_at(positions, "t", 2) == set()
    assert none_metrics.names_at(positions, "t", 7) == {"acc", "em"}
    assert none_metrics.names_at(positions, "v", 0) == set()
    grown: none_metrics.Positions = {}
    for index in (0, 1, 2, 4):
        none_metrics.add(grown, "t", index, ["acc"])
    assert grown == {"t": {"acc": [0, 3, 4, 5]}}


# -- fix 5: a rank > 0 marks its shard done at save(), also inside a with block ---------------


def test_a_rank_in_a_with_block_marks_its_shard_done_at_save(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)
    with EvaluationTracker(tmp_path, sinks=["local"], run_id="with", flush_every=2) as rank1:
        rank1.general_config_logger.log_model_info(model_name="org/m")
        log(rank1, ["q1"])
        rank1.save()
        manifest = read_manifest(manifest_path(rank1.details_logger.spool.path))
        assert manifest is not None
        assert manifest.state is RunState.SHARD_DONE  # before the block ends
        with pytest.raises(EvalsinkError, match="handed its details to rank 0"):
            log(rank1, ["late"])
        new_process(0)  # rank 0 merges (and removes) the shard while rank 1 is still in its block
        rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="with", merge_timeout=5)
        rank0.general_config_logger.log_model_info(model_name="org/m")
        log(rank0, ["q0"])
        assert rank0.save().ok
    assert saved_queries(tmp_path) == ["q0", "q1"]
    assert not (tmp_path / ".evalsink").exists()  # leaving the block wrote no manifest back


# -- fix 6: resume=True never takes over the run of another URL output ------------------------


def test_resume_refuses_a_run_of_another_url_output(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("fsspec")
    for key in _LAUNCHER_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path))
    crashed = EvaluationTracker(
        "memory://evalsink-ranks/a", sinks=["local"], run_id="shared-id", flush_every=1
    )
    log(crashed, ["q0"])
    crashed.close(RuntimeError("killed"))
    with pytest.raises(EvalsinkError, match="saves to memory://evalsink-ranks/a"):
        EvaluationTracker("memory://evalsink-ranks/b", sinks=["local"], run_id="shared-id", resume=True)
    resumed = EvaluationTracker("memory://evalsink-ranks/a", sinks=["local"], run_id="shared-id", resume=True)
    assert resumed.recovery is not None
    assert resumed.recovery["samples_recovered"] == 1
    resumed.close()


# -- fix 7: rank 0 stops waiting for a rank that failed ---------------------------------------


def test_rank_zero_fails_fast_when_a_rank_failed(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)
    failed = EvaluationTracker(tmp_path, sinks=["local"], run_id="r1fails", flush_every=1)
    log(failed, ["q1"])
    failed.close(RuntimeError("evaluation blew up"))
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="r1fails", merge_timeout=8)
    log(rank0, ["q0"])
    start = time.monotonic()
    path = manifest_path(failed.details_logger.spool.path)
    with pytest.raises(
        EvalsinkError, match=rf"rank 1 did not finish its details: its manifest {path} says failed"
    ):
        rank0.save()
    assert time.monotonic() - start < 4


def test_rank_zero_fails_fast_when_a_ranks_process_died(tmp_path: Path, new_process: NewProcess) -> None:
    new_process(1)
    killed = EvaluationTracker(tmp_path, sinks=["local"], run_id="r1died", flush_every=1)
    log(killed, ["q1"])  # flushed: a running manifest
    path = manifest_path(killed.details_logger.spool.path)
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True
    )
    manifest = read_manifest(path)
    assert manifest is not None
    assert manifest.state is RunState.RUNNING
    write_manifest(path, dataclasses.replace(manifest, pid=int(gone.stdout)))  # as if SIGKILLed
    new_process(0)
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="r1died", merge_timeout=8)
    log(rank0, ["q0"])
    start = time.monotonic()
    with pytest.raises(EvalsinkError, match=r"rank 1 did not finish its details: .* which has died"):
        rank0.save()
    assert time.monotonic() - start < 4
    killed.close(RuntimeError("killed"))


_LIGHTEVAL_RANK = """
import os, signal, sys
from evalsink import EvaluationTracker

output, rank, mode = sys.argv[1], int(sys.argv[2]), sys.argv[3]


def main():  # lighteval's main_accelerate: every rank builds the tracker, only rank 0 logs and saves
    tracker = EvaluationTracker(output, sinks=["local"], run_id="gathered", merge_timeout=60)
    tracker.general_config_logger.log_model_info(model_name="org/m")
    if mode == "crash":
        raise RuntimeError("this rank failed before it logged anything")
    if mode == "stopped":  # the scheduler's SIGTERM, during this rank's part of the inference
        os.kill(os.getpid(), signal.SIGTERM)
    if rank == 0:
        for i in range(3):
            tracker.details_logger.log("custom|t|0", {"query": f"q{i}"}, {"text": ["a"]}, {"acc": 1.0})
            tracker.metrics_logger.log("custom|t|0", {"acc": 1.0})
        tracker.save()


main()  # the tracker is dropped when main() returns, as lighteval's is
"""


@pytest.mark.parametrize("rank_1", ["exits", "crash", "stopped"])
def test_ranks_that_log_nothing_do_not_hold_rank_0_up(tmp_path: Path, rank_1: str) -> None:
    """lighteval gathers every rank's responses on rank 0, which alone logs and saves: the other
    ranks build a tracker and never use it. Rank 0 waited merge_timeout for their shards, then
    failed. Now a rank that logged nothing leaves, at exit, an empty shard (or a failed one).

    A rank stopped by SIGTERM before it logged left an empty shard too, and rank 0 saved a run
    without that rank's samples, silently."""
    script = tmp_path / "lighteval_rank.py"
    script.write_text(_LIGHTEVAL_RANK, encoding="utf-8")
    output = tmp_path / "out"

    def run(rank: int, mode: str) -> subprocess.CompletedProcess[str]:
        env = {
            **{k: v for k, v in os.environ.items() if k not in _LAUNCHER_KEYS},
            "RANK": str(rank),
            "WORLD_SIZE": "2",
            "LOCAL_RANK": str(rank),
        }
        return subprocess.run(
            [sys.executable, str(script), str(output), str(rank), mode],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            check=False,
        )

    first = run(1, rank_1)
    assert first.returncode == {"exits": 0, "crash": 1, "stopped": 143}[rank_1], first.stderr
    started = time.monotonic()
    main = run(0, "log")
    assert time.monotonic() - started < 30  # not merge_timeout (60 s)
    if rank_1 == "exits":
        assert main.returncode == 0, main.stderr
        [details] = output.glob("details/org/m/*/details_custom|t|0_*.parquet")
        assert pq.read_table(details).num_rows == 3
    else:
        assert main.returncode == 1
        assert "rank 1" in main.stderr
        assert "failed" in main.stderr


def test_an_attempt_that_died_is_stale_beside_the_rank_s_finished_spool(
    tmp_path: Path, new_process: NewProcess
) -> None:
    """A torchrun restart on a membership change keeps the launch identity: the killed attempt's
    spool of rank 1 (its writer dead) sat beside the new attempt's finished one, and rank 0
    refused both as "2 spools claim to be rank 1"."""
    output = tmp_path / "out"
    new_process(1, TORCHELASTIC_RUN_ID="elastic")
    dead = EvaluationTracker(output, sinks=["local"], run_id="elastic", flush_every=1)
    dead.general_config_logger.log_model_info(model_name="org/m")
    log(dead, ["old"])
    path = manifest_path(dead.details_logger.spool.path)
    stale = read_manifest(path)
    assert stale is not None
    stale.pid, stale.state = 2**22 + 12345, RunState.RUNNING  # its process is gone
    write_manifest(path, stale)
    _forget_dead_process(dead)
    new_process(0, TORCHELASTIC_RUN_ID="elastic")  # rank 0 of the killed attempt: failed at exit
    dead_main = EvaluationTracker(output, sinks=["local"], run_id="elastic", flush_every=1)
    dead_main.general_config_logger.log_model_info(model_name="org/m")
    log(dead_main, ["old q0"])
    dead_main.close(RuntimeError("killed by the agent"))
    new_process(1, TORCHELASTIC_RUN_ID="elastic")
    shard(output, "elastic", ["q1"])
    new_process(0, TORCHELASTIC_RUN_ID="elastic")
    main = EvaluationTracker(output, sinks=["local"], run_id="elastic", merge_timeout=5)
    main.general_config_logger.log_model_info(model_name="org/m")
    log(main, ["q0"])
    assert main.save().ok
    [details] = output.glob("details/org/m/*/*.parquet")
    assert sorted(row["doc"]["query"] for row in pq.read_table(details).to_pylist()) == ["q0", "q1"]
    main.close()
    # what the killed attempt left is gone once the restart saved: a later `evalsink recover`
    # sweep published it as a second, partial results file of the run
    from evalsink.recovery import find_runs

    assert not path.exists()
    assert not dead.details_logger.spool.path.exists()
    assert not dead_main.details_logger.spool.path.exists()
    assert find_runs(output) == []
    assert len(list(output.glob("results/org/m/*.json"))) == 1


def _forget_dead_process(tracker: EvaluationTracker) -> None:
    """Forget a simulated dead process's tracker (its process would be gone, not exiting here)."""
    import evalsink.tracker

    evalsink.tracker._OTHER_RANKS.discard(tracker)
    evalsink.tracker._BUILT.discard(tracker)


def test_a_failed_construction_takes_no_sequence_number(tmp_path: Path, new_process: NewProcess) -> None:
    """The number was taken before construction could still fail: one rank retrying a tracker
    (a bad option on that node) then said sequence 1 while rank 0's evaluation was 0, and rank 0
    waited merge_timeout for a shard it would never take."""
    new_process(1)
    with pytest.raises(EvalsinkError):
        EvaluationTracker(tmp_path / "out", sinks=["local"], run_id="retry", sink_config={"local": {"x": 1}})
    tracker = shard(tmp_path / "out", "retry", ["q1"])
    [path] = (tmp_path / "out" / ".evalsink" / "runs" / "retry").glob("details-rank1-*.meta.json")
    manifest = read_manifest(path)
    assert manifest is not None
    assert manifest.sequence == 0
    assert tracker.report is not None


def test_a_model_path_that_differs_per_node_is_merged_within_a_launch(
    tmp_path: Path, new_process: NewProcess, caplog: pytest.LogCaptureFixture
) -> None:
    """Weights staged on each node's own disk give each node its own model path: within one
    launch that is no reason to strand the run (it was refused as another evaluation's shard)."""
    new_process(1, TORCHELASTIC_RUN_ID="job")
    shard(tmp_path, "job", ["q1"], model="/scratch/node1/m")
    new_process(0, TORCHELASTIC_RUN_ID="job")
    rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="job", merge_timeout=5)
    rank0.general_config_logger.log_model_info(model_name="/scratch/node0/m")
    log(rank0, ["q0"])
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        assert rank0.save().ok
    assert "names model '/scratch/node1/m'" in caplog.text
