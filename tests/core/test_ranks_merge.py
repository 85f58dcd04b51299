"""Several ranks write one run: each spools its samples, rank 0 merges them into one saved run.

Four real processes (RANK/WORLD_SIZE as torchrun sets them) log disjoint samples into a shared
output dir; the merged run must equal a single process logging the same samples.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError

TASKS = ["lighteval|mmlu:anatomy|5", "custom|gen|0", "lighteval|arc:easy|25"]
SAMPLES = 23  # per task; not a multiple of the world size

CHILD = textwrap.dedent(
    """
    import json, sys
    from evalsink import EvaluationTracker

    output, rank, world, calls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    tasks, samples = json.loads(sys.argv[5]), int(sys.argv[6])
    sinks = ["local", "recorder-remote", "recorder-all-ranks"]
    config = {name: {"path": f"{calls}-{rank}.jsonl", "label": name} for name in sinks[1:]}
    tracker = EvaluationTracker(output, sinks=sinks, sink_config=config, flush_every=4)
    tracker.general_config_logger.log_model_info(model_name="org/sharded")
    for task in tasks:
        tracker.versions_logger.log(task, 1)
        for i in range(samples):
            if i % world != rank:
                continue
            doc = {"query": f"{task} q{i}", "choices": ["a", "b"], "gold_index": i % 2}
            response = {"input": f"{task} prompt {i}", "text": ["a"], "input_tokens": [i, i + 1]}
            metrics = {"acc": float(i % 3 == 0), "len": i}
            tracker.details_logger.log(task, doc, response, metrics)
            tracker.metrics_logger.log(task, metrics)
    report = tracker.save()
    print(json.dumps({"ok": report.ok, "date_id": report.date_id, "sinks": sorted(report.sinks)}))
    """
)


def run_ranks(
    tmp_path: Path, output: Path, world: int, ranks: list[int] | None = None
) -> list[dict[str, Any]]:
    script = tmp_path / "rank.py"
    script.write_text(CHILD, encoding="utf-8")
    children = []
    for rank in ranks if ranks is not None else range(world):
        env = {**os.environ, "RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
        env["EVALSINK_RUN_ID"] = "shared-run"
        command = [sys.executable, str(script), str(output), str(rank), str(world), str(tmp_path / "calls")]
        command += [json.dumps(TASKS), str(SAMPLES)]
        children.append(
            subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        )
    outcomes = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outcomes.append(json.loads(out.strip().splitlines()[-1]))
    return outcomes


def read_run(output: Path) -> tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]:
    [results_file] = output.glob("results/**/results_*.json")
    results = json.loads(results_file.read_text(encoding="utf-8"))
    details = {}
    for path in output.glob("details/**/details_*.parquet"):
        rows = pq.read_table(path).to_pylist()
        details[rows[0]["doc"]["query"].rsplit(" q", 1)[0]] = sorted(
            rows, key=lambda row: row["doc"]["query"]
        )
    return results, details


def calls_of(tmp_path: Path, rank: int, label: str) -> list[dict[str, Any]]:
    path = tmp_path / f"calls-{rank}.jsonl"
    if not path.exists():
        return []
    return [call for call in map(json.loads, path.read_text().splitlines()) if call["label"] == label]


def test_four_ranks_write_the_run_one_process_would(tmp_path: Path) -> None:
    merged_out, single_out = tmp_path / "merged", tmp_path / "single"
    outcomes = run_ranks(tmp_path, merged_out, world=4)
    assert all(outcome["ok"] for outcome in outcomes)
    assert outcomes[0]["sinks"] == ["local", "recorder-all-ranks", "recorder-remote"]
    assert outcomes[1]["sinks"] == ["recorder-all-ranks"]  # rank 0 writes the run; others opt in
    assert outcomes[1]["date_id"] is None
    single = tmp_path / "single-calls"
    single.mkdir()
    run_ranks(single, single_out, world=1)

    merged_results, merged_details = read_run(merged_out)
    single_results, single_details = read_run(single_out)
    assert merged_results["results"].keys() == single_results["results"].keys()
    for task, metrics in single_results["results"].items():
        assert merged_results["results"][task] == pytest.approx(metrics)
    assert merged_results["versions"] == single_results["versions"]
    for task in TASKS:
        assert (
            merged_results["summary_tasks"][task]["hashes"] == single_results["summary_tasks"][task]["hashes"]
        )
    assert merged_results["summary_general"]["hashes"] == single_results["summary_general"]["hashes"]
    assert merged_details == single_details
    for task in TASKS:  # every sample exactly once
        queries = [row["doc"]["query"] for row in merged_details[task]]
        assert sorted(queries) == sorted(f"{task} q{i}" for i in range(SAMPLES))
    # rank 0's sinks saw every rank's samples as batches; the opted-in sink saw its own rank's too
    batches = calls_of(tmp_path, 0, "recorder-remote")
    queries = [q for call in batches if call["hook"] == "details_batch" for q in call["queries"]]
    assert len(queries) == len(TASKS) * SAMPLES
    for rank in (1, 2, 3):
        assert calls_of(tmp_path, rank, "recorder-remote") == []
        own = calls_of(tmp_path, rank, "recorder-all-ranks")
        hooks = [c["hook"] for c in own]
        assert (hooks[0], hooks[-1]) == ("run_started", "run_finished")
        assert "details_batch" in hooks
        assert "results_saved" not in hooks
    assert not (merged_out / ".evalsink").exists()  # every shard merged and removed


def test_rank_zero_fails_clearly_when_a_rank_never_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="lonely", merge_timeout=0.5)
    tracker.details_logger.log(TASKS[0], {"query": "q"}, {"input": "p"}, {"acc": 1.0})
    with pytest.raises(EvalsinkError, match=r"rank\(s\) 1 of 2 did not finish their details within 0.5s"):
        tracker.save()
    assert list((tmp_path / ".evalsink" / "runs" / "lonely").glob("details-rank0-*.jsonl"))  # kept


def test_ranks_need_a_shared_run_id(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    for key in ("SLURM_JOB_ID", "TORCHELASTIC_RUN_ID"):
        monkeypatch.delenv(key, raising=False)
    with pytest.raises(EvalsinkError, match="every rank must write the same run"):
        EvaluationTracker(tmp_path, sinks=["local"])
    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    monkeypatch.setenv("SLURM_STEP_ID", "3")
    assert EvaluationTracker(tmp_path, sinks=["local"]).run_id == "slurm-4242-3"
    monkeypatch.delenv("SLURM_JOB_ID")
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "abc123")
    assert EvaluationTracker(tmp_path, sinks=["local"]).run_id == "torchrun-abc123"
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "none")  # torchrun's value when no id was given
    with pytest.raises(EvalsinkError, match="EVALSINK_RUN_ID"):
        EvaluationTracker(tmp_path, sinks=["local"])
