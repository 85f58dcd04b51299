"""What the sink logs, read back from the offline run's own files (see wandb_runfile.py)."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from wandb_helpers import ANATOMY, PLAIN, log_evaluation, new_project, run_of, table_at, wandb_tracker

from evalsink import EvaluationTracker


def test_config_metrics_summary_tables_and_results_file(tmp_path: Path) -> None:
    tracker = wandb_tracker(tmp_path, sinks=("local", "wandb"))
    log_evaluation(tracker)
    report = tracker.save()

    assert report.ok, str(report)
    run = run_of(tracker)
    assert run.exit_code == 0
    assert run.run.display_name == "org/tiny-model"
    assert run.run.job_type == "eval"
    assert run.run.project == tracker.sink("wandb").project
    assert report["wandb"].outputs[0].startswith(f"wandb: offline run {run.run.project}/{run.run.run_id} in ")
    assert str(run.folder) in report["wandb"].outputs[0]

    # config: lighteval's general config (the final one) and the task configs
    assert run.config["config_general"]["model_name"] == "org/tiny-model"
    assert run.config["config_general"]["end_time"] is not None
    assert set(run.config["config_tasks"]) == set(tracker.results["config_tasks"])
    assert run.config["evalsink"]["run_id"] == tracker.run_id
    assert run.config["evalsink"]["date_id"] == report.date_id

    # one history row, at step 0, with every metric under '/'-separated keys
    [row] = run.history
    assert row["_step"] == 0
    assert row[f"{ANATOMY}/acc"] == pytest.approx(0.5)
    assert row[f"{ANATOMY}/acc_stderr"] == pytest.approx(0.5)
    assert row[f"{PLAIN}/acc"] == pytest.approx(0.5)
    assert row["all/acc"] == pytest.approx(0.5)

    # summary: the metrics and lighteval's summary_general
    assert run.summary[f"{ANATOMY}/acc"] == pytest.approx(0.5)
    hashes = tracker.results["summary_general"]["hashes"]
    assert run.summary["summary_general"]["hashes"] == hashes

    results = {(r["task"], r["metric"]): r for r in table_at(run, "results")}
    assert set(results) == {(ANATOMY, "acc"), (PLAIN, "acc"), ("all", "acc")}
    assert results[(ANATOMY, "acc")]["value"] == pytest.approx(0.5)
    assert results[(ANATOMY, "acc")]["stderr"] == pytest.approx(0.5)

    anatomy = table_at(run, f"details/{ANATOMY}")
    assert [r["sample"] for r in anatomy] == [0, 1]
    assert [r["metric.acc"] for r in anatomy] == [1.0, 0.0]
    assert anatomy[0]["doc.query"] == f"{ANATOMY} question 0"
    assert anatomy[0]["doc.choices"] == '["a","b"]'
    assert anatomy[0]["doc.gold_index"] == 0
    assert anatomy[0]["model_response.text"] == '["a"]'
    assert anatomy[0]["other"] is None
    assert [r["doc.query"] for r in table_at(run, f"details/{PLAIN}")] == [
        f"{PLAIN} question {i}" for i in range(3)
    ]

    # the results file, byte for byte what the local sink wrote
    artifact = run.artifact(type="evaluation-results")
    assert artifact.name == "evalsink-results-org__tiny-model"
    assert set(artifact.aliases) == {"latest", "step-0"}
    [(name, content)] = run.artifact_files(artifact).items()
    [local_file] = [path for path in report["local"].outputs if path.endswith(".json")]
    assert name == Path(local_file).name
    assert content == Path(local_file).read_bytes()
    assert json.loads(artifact.metadata)["date_id"] == report.date_id


def test_the_step_comes_from_nanotron_run_info_then_the_step_option(tmp_path: Path) -> None:
    config = {"project": new_project(), "step": 7}
    tracker = EvaluationTracker(
        tmp_path / "nanotron",
        sinks=["wandb"],
        nanotron_run_info=SimpleNamespace(run="exp", step=3000),
        sink_config={"wandb": config},
    )
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    run = run_of(tracker)
    assert run.run.display_name == "exp"
    assert run.step_of(f"{PLAIN}/acc") == [3000]
    assert run.step_of(f"details/{PLAIN}") == [3000]
    assert "step-3000" in run.artifact(type="evaluation-results").aliases

    tracker = wandb_tracker(tmp_path / "option", step=7)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert run_of(tracker).step_of(f"{PLAIN}/acc") == [7]


def test_run_options_and_environment_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    project = new_project()
    monkeypatch.setenv("WANDB_PROJECT", project)
    monkeypatch.setenv("EVALSINK_WANDB__TAGS", "nightly, mmlu")
    monkeypatch.setenv("EVALSINK_WANDB__GROUP", "ckpt-sweep")
    options = {
        "run_name": "my eval",
        "job_type": "evaluation",
        "run_id": "evalsink-run-1",
        "resume": "allow",
        "step": 3,  # offline, resuming needs one (see test_wandb_lifecycle.py)
        "entity": "my-team",
    }
    tracker = EvaluationTracker(tmp_path, sinks=["wandb"], sink_config={"wandb": options})
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok

    assert run_of(tracker).step_of(f"{PLAIN}/acc") == [3]
    run = run_of(tracker).run
    assert run.project == project
    assert run.display_name == "my eval"
    assert list(run.tags) == ["nightly", "mmlu"]
    assert run.run_group == "ckpt-sweep"
    assert run.job_type == "evaluation"
    assert run.run_id == "evalsink-run-1"
    assert run.resume is True  # offline, W&B resumes the run when the folder is synced
    assert run.entity == "my-team"


def test_without_options_wandb_chooses_the_entity_and_does_not_resume(tmp_path: Path) -> None:
    tracker = wandb_tracker(tmp_path)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    run = run_of(tracker).run
    assert run.resume is False
    assert run.entity == ""
    assert list(run.tags) == []


def test_the_project_option_wins_over_wandb_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    tracker = wandb_tracker(tmp_path, project="from-option")
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert run_of(tracker).run.project == "from-option"


def test_details_are_capped_and_keep_unicode_nan_and_late_fields(tmp_path: Path) -> None:
    # two rows per increment: the table's columns are fixed before the third sample arrives
    tracker = wandb_tracker(tmp_path, max_rows=3, max_cell_chars=100, rows_per_increment=2)
    docs: list[dict[str, Any]] = [
        {"query": "x" * 250, "nested": {"a": [1, 2]}},
        {"query": "数学の問題 🦜 héllo"},
        {"query": "late field", "added_later": True},
        {"query": "over the cap"},
    ]
    metrics: list[dict[str, Any]] = [{"acc": 1.0}, {"acc": math.nan}, {"acc": "n/a"}, {"acc": 0.0}]
    for doc, metric in zip(docs, metrics, strict=True):
        tracker.details_logger.log(PLAIN, doc, {"text": ["y"]}, metric)
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
    assert tracker.save().ok

    rows = table_at(run_of(tracker), f"details/{PLAIN}")
    assert [r["sample"] for r in rows] == [0, 1, 2]  # capped at 3 of 4
    assert rows[0]["doc.query"] == "x" * 100 + "… [150 more chars]"
    assert rows[0]["doc.nested"] == '{"a":[1,2]}'
    assert rows[1]["doc.query"] == "数学の問題 🦜 héllo"
    assert [r["metric.acc"] for r in rows] == [1.0, None, "n/a"]  # NaN stored as null, mixed types kept
    # a field first seen after the table's columns were fixed lands in `other`
    assert "doc.added_later" not in rows[0]
    assert json.loads(rows[2]["other"]) == {"doc.added_later": True}


def test_max_rows_zero_or_save_details_false_log_no_details(tmp_path: Path) -> None:
    for name, options, kwargs in (("zero", {"max_rows": 0}, {}), ("off", {}, {"save_details": False})):
        tracker = EvaluationTracker(
            tmp_path / name,
            sinks=["wandb"],
            sink_config={"wandb": {"project": new_project(), **options}},
            **kwargs,
        )
        log_evaluation(tracker)
        assert tracker.save().ok
        run = run_of(tracker)
        assert f"{PLAIN}/acc" in run.summary
        assert not [key for key in run.summary if key.startswith("details/")], name
        assert not [a for a in run.artifacts if a.type == "wandb-run-incremental-table"], name


def test_null_metrics_are_not_logged_but_kept_in_the_results_table(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with wandb_tracker(tmp_path) as tracker:
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0, "f1": math.nan})
        report = tracker.save()
    assert report.ok, str(report)
    assert f"{PLAIN}/f1" in caplog.text

    run = run_of(tracker)
    [row] = run.history
    assert row[f"{PLAIN}/acc"] == 1
    assert f"{PLAIN}/f1" not in row
    rows = {r["metric"]: r for r in table_at(run, "results") if r["task"] == PLAIN}
    assert rows["f1"]["value"] is None
    assert rows["acc"]["value"] == 1


def test_capped_tasks_are_reported_in_the_log(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="evalsink.wandb")
    tracker = wandb_tracker(tmp_path, max_rows=1)
    log_evaluation(tracker)
    assert tracker.save().ok
    assert f"details of {PLAIN} capped at 1 of 3 rows" in caplog.text
    assert f"details of {ANATOMY} capped at 1 of 2 rows" in caplog.text
