"""Which runs `evalsink recover` can save, and what it says of the others.

Ranks are trackers built in this process under RANK/WORLD_SIZE, as torchrun sets them: a rank
other than 0 that saves leaves its spool with a ``shard_done`` manifest for rank 0 to merge.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from core_helpers import run_cli

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState
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


def test_a_run_of_several_spools_is_reported_and_the_others_are_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_rank_0(tmp_path, "ddp", world=2, monkeypatch=monkeypatch)
    finish_shard(tmp_path, "ddp", rank=1, world=2, monkeypatch=monkeypatch)
    ddp = next(run for run in find_runs(tmp_path) if run.run_id == "ddp")
    assert not ddp.recoverable
    with pytest.raises(
        EvalsinkError, match=r"has 2 spools .* cannot merge several, so all are left in place"
    ):
        recover_run(tmp_path, "ddp")

    fail_run(tmp_path, "single")
    with pytest.raises(
        RecoveryError, match="1 run\\(s\\) not recovered \\(1 other run\\(s\\) recovered\\)"
    ) as raised:
        recover_all(tmp_path)
    assert list(raised.value.reports) == ["single"]
    assert raised.value.reports["single"].ok
    assert list(raised.value.failures) == ["ddp"]
    assert "resum" not in raised.value.failures["ddp"]
    assert [run.run_id for run in find_runs(tmp_path)] == ["ddp"]  # its samples are still on disk

    fail_run(tmp_path, "single2")
    listed = run_cli("recover", str(tmp_path), "--list")
    assert listed.stdout.splitlines()[0].startswith("ddp: not recoverable: run 'ddp' has 2 spools")
    done = run_cli("recover", str(tmp_path))
    assert done.returncode == 1, done.stderr
    assert "run single2 (" in done.stdout
    assert "not recovered: run 'ddp' has 2 spools" in done.stdout
    assert find_runs(tmp_path)[0].run_id == "ddp"
    assert len(find_runs(tmp_path)) == 1


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


def test_only_a_rank_0_that_had_merged_its_shards_is_said_to_hold_every_sample(tmp_path: Path) -> None:
    """Two attempts of a one-process run sharing an id each hold their own samples: moving one
    away would lose them, so that advice is only for a rank 0 whose save() had merged its shards."""

    def run_of(*manifests: RunManifest) -> RunOnDisk:
        spools = [tmp_path / f"details-{i}.jsonl" for i in range(len(manifests))]
        return RunOnDisk("r", tmp_path, spools, list(manifests))

    merged = run_of(
        RunManifest("r", "details-0.jsonl", RunState.FAILED, date_id="d", rank=0, world_size=2),
        RunManifest("r", "details-1.jsonl", RunState.SHARD_DONE, rank=1, world_size=2),
    )
    attempts = run_of(
        RunManifest("r", "details-0.jsonl", RunState.SAVED, date_id="d"),
        RunManifest("r", "details-1.jsonl", RunState.FAILED),
    )
    assert "already holds every rank's samples" in (why_not_recoverable(merged) or "")
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
