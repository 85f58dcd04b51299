"""Which runs `evalsink recover` can save, and what it says of the others.

Ranks are trackers built in this process under RANK/WORLD_SIZE, as torchrun sets them: a rank
other than 0 that saves leaves its spool with a ``shard_done`` manifest for rank 0 to merge.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from core_helpers import run_cli

import evalsink.shards
from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest, write_manifest
from evalsink.recovery import (
    RecoveryError,
    RunOnDisk,
    find_runs,
    recover_all,
    recover_run,
    why_not_recoverable,
)

TASK = "lighteval|shards:test|0"


def log_samples(tracker: EvaluationTracker, indices: range) -> None:
    tracker.general_config_logger.log_model_info(model_name="org/sharded")
    tracker.versions_logger.log(TASK, 1)
    for i in indices:
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"input": f"p{i}"}, {"acc": float(i % 2)})
        tracker.metrics_logger.log(TASK, {"acc": float(i % 2)})


def finish_shard(output: Path, run_id: str, rank: int, world: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank ``rank`` logs its samples and saves: its spool stays, marked ``shard_done``."""
    with monkeypatch.context() as env:
        env.setenv("RANK", str(rank))
        env.setenv("WORLD_SIZE", str(world))
        evalsink.shards._sequences.clear()  # each rank is a process of its own
        tracker = EvaluationTracker(output, sinks=["local"], run_id=run_id, flush_every=2)
        log_samples(tracker, range(rank, 10, world))
        tracker.save()


def fail_run(output: Path, run_id: str) -> None:
    """A run whose evaluation raised: its spool stays with a ``failed`` manifest."""
    tracker = EvaluationTracker(output, sinks=["local"], run_id=run_id, flush_every=2)

    def evaluation() -> None:
        with tracker:
            log_samples(tracker, range(0, 10, 2))
            raise RuntimeError("evaluation crashed")

    with pytest.raises(RuntimeError, match="evaluation crashed"):
        evaluation()


def fail_rank_0(output: Path, run_id: str, world: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Rank 0's evaluation raised: its spool stays, ``failed``, beside the other ranks'."""
    with monkeypatch.context() as env:
        env.setenv("RANK", "0")
        env.setenv("WORLD_SIZE", str(world))
        evalsink.shards._sequences.clear()  # each rank is a process of its own
        fail_run(output, run_id)


def results_files(output: Path) -> list[dict[str, object]]:
    return [json.loads(path.read_text(encoding="utf-8")) for path in output.glob("results/**/results_*.json")]


def test_a_run_whose_rank_0_left_no_spool_is_recovered_not_called_saved(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish_shard(tmp_path, "r0dead", rank=1, world=2, monkeypatch=monkeypatch)
    [run] = find_runs(tmp_path)
    assert (run.state, run.recoverable) == (RunState.SHARD_DONE, True)

    listed = run_cli("recover", str(tmp_path), "--list")
    assert listed.stdout.strip() == (
        "r0dead: never saved: rank 0 left no spool (it stopped before its first flush); recoverable"
    )

    assert recover_run(tmp_path, "r0dead").ok
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"] == {
        "partial": True,
        "resumed_run_id": "r0dead",
        "samples_recovered": 5,  # rank 1's samples: 1, 3, 5, 7, 9
        "corrupt_lines_skipped": 0,
        "manifest_found": True,
    }
    assert find_runs(tmp_path) == []


def test_the_ranks_of_a_run_whose_rank_0_failed_are_recovered_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Rank 0 stopped before merging the other ranks: `evalsink recover` resumes its spool and
    merges theirs into it (it used to refuse a run of several spools, leaving the user to pick
    one spool and lose the others' samples)."""
    fail_rank_0(tmp_path, "ddp", world=3, monkeypatch=monkeypatch)  # samples 0, 2, 4, 6, 8
    finish_shard(tmp_path, "ddp", rank=1, world=3, monkeypatch=monkeypatch)  # 1, 4, 7
    finish_shard(tmp_path, "ddp", rank=2, world=3, monkeypatch=monkeypatch)  # 2, 5, 8
    [ddp] = find_runs(tmp_path)
    assert why_not_recoverable(ddp) is None
    listed = run_cli("recover", str(tmp_path), "--list")
    assert listed.stdout.strip() == "ddp: failed; recoverable, 3 ranks' spools merged", listed.stdout

    done = run_cli("recover", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"] == {
        "partial": True,
        "resumed_run_id": "ddp",
        "samples_recovered": 11,
        "corrupt_lines_skipped": 0,
        "manifest_found": True,
        "ranks_merged": 3,
    }
    [details] = tmp_path.glob("details/**/*.parquet")
    queries = [row["doc"]["query"] for row in pq.read_table(details).to_pylist()]
    assert sorted(queries) == sorted(f"q{i}" for i in [*range(0, 10, 2), *range(1, 10, 3), *range(2, 10, 3)])
    assert find_runs(tmp_path) == []  # every rank's spool is gone once the run is saved


def test_a_run_whose_rank_0_left_no_spool_is_recovered_from_the_other_ranks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish_shard(tmp_path, "r0gone", rank=1, world=3, monkeypatch=monkeypatch)  # 1, 4, 7
    finish_shard(tmp_path, "r0gone", rank=2, world=3, monkeypatch=monkeypatch)  # 2, 5, 8
    assert recover_run(tmp_path, "r0gone").ok
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"]["ranks_merged"] == 2
    assert results["evalsink_recovery"]["samples_recovered"] == 6
    assert find_runs(tmp_path) == []


def test_a_run_whose_rank_0_had_merged_is_recovered_from_rank_0_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    finish_shard(tmp_path, "merged", rank=1, world=2, monkeypatch=monkeypatch)
    with monkeypatch.context() as env:
        env.setenv("RANK", "0")
        env.setenv("WORLD_SIZE", "2")
        evalsink.shards._sequences.clear()
        rank0 = EvaluationTracker(
            tmp_path,
            sinks=["local", "flaky"],
            run_id="merged",
            flush_every=2,
            sink_config={"flaky": {"fail_in": "results_saved", "required": True}},
        )
        log_samples(rank0, range(0, 10, 2))
        with pytest.raises(EvalsinkError, match="required sink 'flaky' failed"):
            rank0.save()  # merged rank 1, wrote the local files, then failed: both spools stay
    # as if rank 0 had been killed after merging, before the local files: its manifest had a date id
    for results in tmp_path.glob("results/**/*.json"):
        results.unlink()
    main = manifest_path(rank0.details_logger.spool.path)
    killed = read_manifest(main)
    assert killed is not None
    assert killed.date_id is not None
    killed.state = RunState.FAILED
    write_manifest(main, killed)
    [run] = find_runs(tmp_path)
    assert len(run.spools) == 2
    assert why_not_recoverable(run) is None

    assert recover_run(tmp_path, "merged").ok
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"]["partial"] is False
    assert results["evalsink_recovery"]["samples_recovered"] == 10  # rank 0's spool: both ranks, once
    assert find_runs(tmp_path) == []


def test_a_rank_0_stopped_in_the_middle_of_its_merge_is_recovered_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed while appending rank 1's samples to its spool (before its save() chose a date id),
    rank 0 left part of the shard in its spool; the recovery merged the shard again, and those
    samples came out twice."""
    finish_shard(tmp_path, "cut", rank=1, world=2, monkeypatch=monkeypatch)
    merge_spool = EvaluationTracker._merge_spool

    def stopped_halfway(self: EvaluationTracker, manifest: RunManifest, *, whole: bool) -> None:
        merge_spool(self, manifest, whole=whole)
        self.details_logger.flush()  # rank 1's samples are in rank 0's spool
        raise KeyboardInterrupt  # and the process stops (SIGTERM, SIGKILL: the same on disk)

    with monkeypatch.context() as env:
        env.setenv("RANK", "0")
        env.setenv("WORLD_SIZE", "2")
        env.setattr(EvaluationTracker, "_merge_spool", stopped_halfway)
        evalsink.shards._sequences.clear()
        rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="cut", flush_every=2)
        log_samples(rank0, range(0, 10, 2))
        rank0.details_logger.log(TASK, {"query": "nan"}, {"input": "p"}, {"acc": float("nan")})
        rank0.metrics_logger.log(TASK, {"acc": float("nan")})
        with pytest.raises(KeyboardInterrupt):
            rank0.save()
    assert len(rank0.details_logger.spool) == 11  # its own 6, rank 1's 5
    [run] = find_runs(tmp_path)
    assert len(run.spools) == 2

    report = recover_run(tmp_path, "cut")
    assert report.ok, str(report)
    [details] = tmp_path.glob("details/**/*.parquet")
    queries = sorted(row["doc"]["query"] for row in pq.read_table(details).to_pylist())
    assert queries == sorted(["nan", *(f"q{i}" for i in range(10))])
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"]["samples_recovered"] == 11
    assert results["evalsink_recovery"]["partial"] is False  # rank 0 had flushed all it logged
    assert "1 NaN/inf value(s) written as null" in str(report)  # counted once, not twice
    assert find_runs(tmp_path) == []


def test_a_rank_0_with_no_samples_of_its_own_stopped_in_its_merge_is_recovered_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """lighteval's rank 0 may log nothing itself. Stopped as it began merging, it left a manifest
    and no spool: the recovery said "rank 0 left no spool", called the run partial, and left
    that manifest behind."""
    finish_shard(tmp_path, "empty0", rank=1, world=2, monkeypatch=monkeypatch)

    def stopped(self: EvaluationTracker, manifest: RunManifest, *, whole: bool) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as env:
        env.setenv("RANK", "0")
        env.setenv("WORLD_SIZE", "2")
        env.setattr(EvaluationTracker, "_merge_spool", stopped)
        evalsink.shards._sequences.clear()
        rank0 = EvaluationTracker(tmp_path, sinks=["local"], run_id="empty0", flush_every=2)
        log_samples(rank0, range(0))
        with pytest.raises(KeyboardInterrupt):
            rank0.save()

    assert recover_run(tmp_path, "empty0").ok
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"]["partial"] is False  # every sample was rank 1's, all there
    assert results["evalsink_recovery"]["samples_recovered"] == 5
    assert find_runs(tmp_path) == []
    assert not (tmp_path / ".evalsink").exists()


_KILLED_IN_ITS_MERGE = """
import os, signal, sys
from evalsink.recovery import recover_run
from evalsink.tracker import EvaluationTracker

output, run_id, where = sys.argv[1:]
merge_spool = EvaluationTracker._merge_spool

def killed(self, manifest, *, whole):
    if where == "halfway":
        merge_spool(self, manifest, whole=whole)
        self.details_logger.flush()
    os.kill(os.getpid(), signal.SIGKILL)

EvaluationTracker._merge_spool = killed
recover_run(output, run_id)
"""
"""`evalsink recover`, killed when it starts merging the other ranks' spools, or after the first."""


@pytest.mark.parametrize("where", ["at_start", "halfway"])
def test_a_recovery_stopped_in_the_middle_of_its_merge_can_be_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The stopped recovery rewrote rank 0's manifest as its own (world size 1): the next one
    refused the run as "not the ranks of one launch". And its record of where rank 0's samples
    end made the next recovery call a run that lost samples whole."""
    fail_rank_0(tmp_path, "again", world=3, monkeypatch=monkeypatch)  # 0, 2, 4, 6, 8
    finish_shard(tmp_path, "again", rank=1, world=3, monkeypatch=monkeypatch)  # 1, 4, 7
    finish_shard(tmp_path, "again", rank=2, world=3, monkeypatch=monkeypatch)  # 2, 5, 8
    stopped = subprocess.run(
        [sys.executable, "-c", _KILLED_IN_ITS_MERGE, str(tmp_path), "again", where],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert stopped.returncode == -signal.SIGKILL, stopped.stderr
    [run] = find_runs(tmp_path)
    assert why_not_recoverable(run) is None

    assert recover_run(tmp_path, "again").ok
    [results] = results_files(tmp_path)
    assert results["evalsink_recovery"]["partial"] is True  # rank 0 crashed mid-evaluation
    assert results["evalsink_recovery"]["ranks_merged"] == 3
    [details] = tmp_path.glob("details/**/*.parquet")
    queries = [row["doc"]["query"] for row in pq.read_table(details).to_pylist()]
    assert sorted(queries) == sorted(f"q{i}" for i in [*range(0, 10, 2), *range(1, 10, 3), *range(2, 10, 3)])
    assert find_runs(tmp_path) == []


def test_spools_of_several_attempts_are_reported_and_the_others_are_recovered(tmp_path: Path) -> None:
    """Two one-process attempts sharing a run id each hold samples of their own: merging could
    repeat samples, picking one loses the other's. Such a run is refused, saying what to do."""
    fail_run(tmp_path, "twice")
    fail_run(tmp_path, "twice")
    twice = next(run for run in find_runs(tmp_path) if run.run_id == "twice")
    assert not twice.recoverable
    with pytest.raises(EvalsinkError, match=r"has 2 spools .* cannot merge them, so all are left in place"):
        recover_run(tmp_path, "twice")

    fail_run(tmp_path, "single")
    with pytest.raises(
        RecoveryError, match="1 run\\(s\\) not recovered \\(1 other run\\(s\\) recovered\\)"
    ) as raised:
        recover_all(tmp_path)
    assert list(raised.value.reports) == ["single"]
    assert raised.value.reports["single"].ok
    assert list(raised.value.failures) == ["twice"]
    assert "To save the samples of one of them" in raised.value.failures["twice"]
    assert [run.run_id for run in find_runs(tmp_path)] == ["twice"]  # its samples are still on disk

    fail_run(tmp_path, "single2")
    listed = run_cli("recover", str(tmp_path), "--list")
    assert listed.stdout.splitlines()[0].startswith("twice: not recoverable: run 'twice' has 2 spools")
    done = run_cli("recover", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "run single2 (" in done.stdout
    assert "not recovered: run 'twice' has 2 spools" in done.stdout
    assert [run.run_id for run in find_runs(tmp_path)] == ["twice"]


def test_a_missing_run_of_a_url_output_names_the_spool_folder(tmp_path: Path) -> None:
    # memory://, not s3://: the core's test env has no s3fs (any URL output keeps its spools there)
    missing = run_cli(
        "recover", "memory://evals", "--run-id", "gone", env={"EVALSINK_SPOOL_DIR": str(tmp_path)}
    )
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"evalsink: error: no run 'gone' of memory://evals to recover in {tmp_path}/evalsink-runs "
        "(runs of an output that is not a local folder are looked for in $EVALSINK_SPOOL_DIR/"
        "evalsink-runs, else in the temp folder: set EVALSINK_SPOOL_DIR as the run had it; a run "
        "leaves that folder once saved or recovered)"
    )


def test_only_the_ranks_of_one_launch_are_merged(tmp_path: Path) -> None:
    """Ranks of another launch (a requeued job), two rank 1s, or a spool without a manifest are
    not one launch's ranks: merging them could repeat or mix samples."""

    def run_of(*manifests: RunManifest | None) -> RunOnDisk:
        spools = [tmp_path / f"details-{i}.jsonl" for i in range(len(manifests))]
        return RunOnDisk("r", tmp_path, spools, list(manifests))

    def rank(number: int, launch: str = "a", state: RunState = RunState.SHARD_DONE) -> RunManifest:
        return RunManifest(
            "r", f"details-{number}.jsonl", state, rank=number, world_size=3, launch={"job": launch}
        )

    rank_0 = rank(0, state=RunState.FAILED)
    assert why_not_recoverable(run_of(rank_0, rank(1), rank(2))) is None
    assert why_not_recoverable(run_of(rank_0, rank(1))) is None  # rank 2 left no spool
    assert why_not_recoverable(run_of(rank(1), rank(2))) is None  # rank 0 left none
    for odd in (
        [rank_0, rank(1, launch="b")],
        [rank_0, rank(1), rank(1)],
        [rank_0, None],
    ):
        assert "To save the samples of one of them" in (why_not_recoverable(run_of(*odd)) or "")
    attempts = run_of(
        RunManifest("r", "details-0.jsonl", RunState.SAVED, date_id="d"),
        RunManifest("r", "details-1.jsonl", RunState.FAILED),
    )
    assert "To save the samples of one of them" in (why_not_recoverable(attempts) or "")


def test_a_run_whose_recovery_raises_an_os_error_does_not_stop_the_others(tmp_path: Path) -> None:
    """Only EvalsinkError was caught: an OSError on one run's spool (EIO on NFS, EACCES) ended
    recover_all, and the runs after it were not recovered."""
    fail_run(tmp_path, "a-unreadable")
    fail_run(tmp_path, "b-good")
    [spool] = (tmp_path / ".evalsink" / "runs" / "a-unreadable").glob("details-*.jsonl")
    spool.unlink()
    spool.mkdir()  # reading it raises IsADirectoryError, as an unreadable file would raise OSError
    with pytest.raises(RecoveryError) as info:
        recover_all(tmp_path)
    assert list(info.value.reports) == ["b-good"]
    assert info.value.failures["a-unreadable"].startswith("IsADirectoryError")
