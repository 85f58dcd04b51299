"""What the sink logs, read back with trackio's own SQLite storage."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import pytest
from trackio_helpers import (
    ANATOMY,
    PLAIN,
    details_rows,
    log_evaluation,
    merged,
    new_project,
    read_run,
    table_rows,
)

from evalsink import EvaluationTracker


def test_metrics_config_results_and_details(tmp_path: Path) -> None:
    project = new_project()
    tracker = EvaluationTracker(
        tmp_path, sinks=["local", "trackio"], sink_config={"trackio": {"project": project}}
    )
    log_evaluation(tracker)
    report = tracker.save()

    assert report.ok, str(report)
    run, logs, config = read_run(project)
    assert report["trackio"].outputs == [f"trackio: project {project}, run {run}"]
    assert {entry["step"] for entry in logs} == {0}
    values = merged(logs)
    assert values[f"{ANATOMY}/acc"] == pytest.approx(0.5)
    assert values[f"{ANATOMY}/acc_stderr"] == pytest.approx(0.5)
    assert values[f"{PLAIN}/acc"] == pytest.approx(0.5)
    assert values["all/acc"] == pytest.approx(0.5)

    results = {(row["task"], row["metric"]): row for row in table_rows(values["results"])}
    assert set(results) == {(ANATOMY, "acc"), (PLAIN, "acc"), ("all", "acc")}
    assert results[(ANATOMY, "acc")]["value"] == pytest.approx(0.5)
    assert results[(ANATOMY, "acc")]["stderr"] == pytest.approx(0.5)

    anatomy = table_rows(values[f"details/{ANATOMY}"])
    assert [row["metric.acc"] for row in anatomy] == [1.0, 0.0]
    assert anatomy[0]["doc.query"] == f"{ANATOMY} question 0"
    assert anatomy[0]["doc.choices"] == '["a","b"]'
    assert anatomy[0]["doc.gold_index"] == 0
    assert anatomy[0]["model_response.text"] == '["a"]'
    assert len(table_rows(values[f"details/{PLAIN}"])) == 3

    assert config["config_general"]["model_name"] == "org/tiny-model"
    assert config["config_general"]["end_time"] is not None  # the final config, not the one at start
    assert set(config["config_tasks"]) == set(tracker.results["config_tasks"])


def test_step_and_run_name_from_nanotron_run_info(tmp_path: Path) -> None:
    project = new_project()
    tracker = EvaluationTracker(
        tmp_path,
        sinks=["trackio"],
        nanotron_run_info=SimpleNamespace(run="exp", step=3000),
        sink_config={"trackio": {"project": project, "step": 7}},
    )
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok

    run, logs, _ = read_run(project)
    assert run == "exp"
    assert {entry["step"] for entry in logs} == {3000}


def test_options_step_run_name_and_project_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project = new_project()
    monkeypatch.setenv("EVALSINK_TRACKIO__PROJECT", project)
    monkeypatch.setenv("EVALSINK_TRACKIO__RUN_NAME", "from-env")
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": {"step": 7}})
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok

    run, logs, _ = read_run(project)
    assert run == "from-env"
    assert {entry["step"] for entry in logs} == {7}
    assert merged(logs)[f"{PLAIN}/acc"] == pytest.approx(0.5)


def test_details_are_capped_and_long_text_truncated(tmp_path: Path) -> None:
    project = new_project()
    tracker = EvaluationTracker(
        tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": project, "max_rows": 2}}
    )
    for index in range(5):
        doc = {"query": "x" * 5000 if index == 0 else "short", "nested": {"a": [1, 2]}}
        tracker.details_logger.log(PLAIN, doc, {"text": ["y"]}, {"acc": 1.0})
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
    assert tracker.save().ok

    _, logs, _ = read_run(project)
    rows = details_rows(logs, f"details/{PLAIN}")
    assert len(rows) == 2
    assert rows[0]["doc.query"] == "x" * 1000 + "… [4000 more chars]"
    assert rows[1]["doc.query"] == "short"
    assert rows[0]["doc.nested"] == '{"a":[1,2]}'


def test_max_rows_zero_or_save_details_false_logs_no_details(tmp_path: Path) -> None:
    for options, kwargs in (({"max_rows": 0}, {}), ({}, {"save_details": False})):
        project = new_project()
        tracker = EvaluationTracker(
            tmp_path / project,
            sinks=["trackio"],
            sink_config={"trackio": {"project": project, **options}},
            **kwargs,
        )
        log_evaluation(tracker)
        assert tracker.save().ok
        _, logs, _ = read_run(project)
        values = merged(logs)
        assert f"{PLAIN}/acc" in values
        assert not [key for key in values if key.startswith("details/")]


def test_null_values_are_not_logged_but_kept_in_the_table(tmp_path: Path) -> None:
    project = new_project()
    with EvaluationTracker(
        tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": project}}
    ) as tracker:
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0, "f1": math.nan})
        report = tracker.save()
    assert report.ok, str(report)

    _, logs, _ = read_run(project)
    values = merged(logs)
    assert values[f"{PLAIN}/acc"] == 1.0
    assert f"{PLAIN}/f1" not in values
    rows = {row["metric"]: row for row in table_rows(values["results"]) if row["task"] == PLAIN}
    assert rows["f1"]["value"] is None


@pytest.mark.parametrize("mode", ["stream", "final"])
def test_details_stream_during_the_evaluation_or_come_whole_at_save(tmp_path: Path, mode: str) -> None:
    project = new_project()
    config = {"project": project, "details": mode, "rows_per_table": 4, "max_rows": 9}
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": config}, flush_every=3)
    for index in range(12):
        for task in (PLAIN, ANATOMY):
            doc = {"query": f"{task} q{index}"}
            tracker.details_logger.log(task, doc, {"text": ["y"]}, {"acc": 1.0})
            tracker.metrics_logger.log(task, {"acc": 1.0})
    sink = tracker.sink("trackio")
    if mode == "stream":  # rows left the sink as they came: never more than rows_per_table held
        assert sink._pending_rows < 4
        assert sum(sink._accepted.values()) == 18  # 2 x 9 rows so far (the cap), 6 left out
    else:
        assert sink._pending_rows == 0
    assert tracker.save().ok

    _, logs, _ = read_run(project)
    for task in (PLAIN, ANATOMY):
        key = f"details/{task}"
        entries = [entry for entry in logs if key in entry]
        rows = details_rows(logs, key)
        assert [row["doc.query"] for row in rows] == [f"{task} q{i}" for i in range(9)]
        if mode == "stream":
            assert len(entries) > 1  # several small tables, each holding only its new rows
            assert all(len(table_rows(entry[key])) <= 4 for entry in entries)
        else:
            assert len(entries) == 1


def test_images_and_bytes_show_as_their_size_in_the_details_table(tmp_path: Path) -> None:
    """A multimodal doc's images are {path, bytes}: the table says how big, not kilobytes of base64."""
    project = new_project()
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": project}})
    image = {"path": None, "bytes": b"\x89PNG" + bytes(1230)}
    doc = {"query": "what is shown?", "images": [image, {"path": "/data/cat.png", "bytes": b"x"}]}
    tracker.details_logger.log(PLAIN, doc, {"text": ["a cat"]}, {"acc": 1.0, "raw": b"\x00\x01"})
    tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
    assert tracker.save().ok

    _, logs, _ = read_run(project)
    [row] = details_rows(logs, f"details/{PLAIN}")
    shown = '[{"path":null,"bytes":"<1,234 bytes>"},{"path":"/data/cat.png","bytes":"<1 byte>"}]'
    assert row["doc.images"] == shown
    assert row["metric.raw"] == '"<2 bytes>"'


def test_a_whole_part_that_is_bytes_is_one_cell_saying_its_size() -> None:
    from evalsink_trackio import flatten_record

    record = {"doc": {"q": "hi"}, "model_response": {"$evalsink.bytes": "cmF3"}, "metric": {"acc": 1.0}}
    assert flatten_record(record) == {"doc.q": "hi", "model_response": '"<3 bytes>"', "metric.acc": 1.0}


def _key(name: str) -> str:
    """A task or metric name in keys, as docs/sinks/trackio.md says (for names with no '~')."""
    return (
        f"{name.replace('/', '_')}~{hashlib.sha256(name.encode()).hexdigest()[:8]}" if "/" in name else name
    )


@pytest.mark.parametrize("mode", ["stream", "final"])
def test_names_that_differ_by_a_slash_keep_their_own_values_and_tables(tmp_path: Path, mode: str) -> None:
    """'/' -> '_' alone made custom|org/ds|0 and custom|org_ds|0 (acc/norm and acc_norm) one key:
    one value and one task's details were lost, and the report said ok."""
    slashed, underscored = "custom|org/ds|0", "custom|org_ds|0"
    project = new_project()
    config = {"project": project, "details": mode, "rows_per_table": 2}
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": config})
    for index in range(3):
        for task, value in ((slashed, 0.1), (underscored, 0.9)):
            metrics = {"acc/norm": value, "acc_norm": 1 - value}
            tracker.details_logger.log(task, {"query": f"{task} q{index}"}, {"text": ["a"]}, metrics)
            tracker.metrics_logger.log(task, metrics)
    report = tracker.save()
    assert report.ok, str(report)

    _, logs, _ = read_run(project)
    values = merged(logs)
    results = tracker.results["results"]
    for task, metrics in results.items():
        for metric, value in metrics.items():
            assert values[f"{_key(task)}/{_key(metric)}"] == pytest.approx(value), (task, metric)
    assert values[f"{underscored}/acc_norm"] == pytest.approx(0.1)  # names without '/' keep their keys
    for task in (slashed, underscored):
        rows = details_rows(logs, f"details/{_key(task)}")
        assert [row["doc.query"] for row in rows] == [f"{task} q{i}" for i in range(3)]
    told = [warning.split(" is logged")[0] for warning in report.warnings if warning.startswith("trackio: ")]
    assert told == [
        f"trackio: task {slashed!r}",
        "trackio: metric 'acc/norm'",
        "trackio: metric 'acc/norm_stderr'",
    ]


def test_a_failed_evaluation_keeps_the_rows_streamed_so_far(tmp_path: Path) -> None:
    """Rows gathered but fewer than rows_per_table were dropped when the evaluation failed."""
    project = new_project()
    config = {"project": project, "run_name": "failing", "rows_per_table": 4}
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="evaluation broke"),
        EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": config}) as tracker,
    ):
        log_evaluation(tracker, {PLAIN: [0.25, 0.75, 0.5], ANATOMY: [1.0, 0.0]})  # 4 logged, 1 gathered
        raise RuntimeError("evaluation broke")
    assert tracker.sink_outcomes["trackio"].ok

    _, logs, _ = read_run(project, "failing")
    assert [row["metric.acc"] for row in details_rows(logs, f"details/{PLAIN}")] == [0.25, 0.75, 0.5]
    assert [row["metric.acc"] for row in details_rows(logs, f"details/{ANATOMY}")] == [1.0, 0.0]
    assert not [key for entry in logs for key in entry if key.endswith("/acc")]  # never saved: no metrics
