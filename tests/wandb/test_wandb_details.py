"""Details rows: flattening, and streaming into incremental tables with bounded memory."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from wandb_helpers import ANATOMY, PLAIN, run_of, table_at

from evalsink import EvaluationTracker

# isort: split
# (its own block: sorted the same whether or not evalsink_wandb is a known first-party module)
from evalsink_wandb import backend, details_key, flatten_record, metric_key
from evalsink_wandb.details import DetailsStream, cell


# -- pure functions ---------------------------------------------------------------------------
def test_flatten_record_one_level_deep_with_truncated_text() -> None:
    record = {
        "task_name": "t",
        "doc": {"query": "q" * 30, "choices": ["a", "b"], "gold_index": 0, "meta": {"k": [1.5]}},
        "model_response": {"text": ["a"], "logprobs": None},
        "metric": {"acc": 1.0, "bad": math.inf, "flag": True},
    }
    assert flatten_record(record, limit=20) == {
        "doc.query": "q" * 20 + "… [10 more chars]",
        "doc.choices": '["a","b"]',
        "doc.gold_index": 0,
        "doc.meta": '{"k":[1.5]}',
        "model_response.text": '["a"]',
        "model_response.logprobs": None,
        "metric.acc": 1.0,
        "metric.bad": None,
        "metric.flag": True,
    }
    assert flatten_record({"doc": "plain text", "metric": None}, limit=5) == {"doc": "plain… [5 more chars]"}


def test_cells_keep_unicode_and_cut_by_characters() -> None:
    assert cell("数学の問題 🦜", 100) == "数学の問題 🦜"
    assert cell("🦜" * 5, 2) == "🦜🦜… [3 more chars]"
    assert cell(["é"], 100) == '["é"]'


def test_keys() -> None:
    assert metric_key("lighteval|mmlu:anatomy|5", "acc") == "lighteval|mmlu:anatomy|5/acc"
    assert metric_key("custom/task|0", "f1/macro").startswith("custom_task|0~")  # test_wandb_names.py
    assert details_key("custom|task|0") == "details/custom|task|0"


class _Recorder:
    """Stands in for wandb: tables are lists of columns, sends are recorded."""

    def __init__(self) -> None:
        self.tables: list[list[str]] = []
        self.sends: list[tuple[str, list[list[Any]]]] = []

    def new_table(self, columns: list[str]) -> list[str]:
        self.tables.append(columns)
        return columns

    def send(self, key: str, table: Any, rows: list[list[Any]]) -> None:
        self.sends.append((key, rows))


def _record(index: int, **doc: Any) -> dict[str, Any]:
    return {"doc": {"query": f"q{index}", **doc}, "model_response": {"text": ["a"]}, "metric": {"acc": 1.0}}


def test_stream_sends_bounded_increments_per_task() -> None:
    sink = _Recorder()
    stream = DetailsStream(
        new_table=sink.new_table, send=sink.send, max_rows=None, rows_per_increment=3, max_cell_chars=100
    )
    for index in range(4):
        stream.add("a", _record(index))
        stream.add("b", _record(index))
        assert stream.pending < 3
    stream.flush()
    assert stream.pending == 0
    sent: dict[str, list[int]] = {}
    for key, rows in sink.sends:
        assert 0 < len(rows) <= 3
        sent.setdefault(key, []).extend(row[0] for row in rows)
    assert sent == {"details/a": [0, 1, 2, 3], "details/b": [0, 1, 2, 3]}
    assert len(sink.tables) == 2  # one table per task, created once
    assert stream.sent() == {"a": 4, "b": 4}


def test_stream_fixes_columns_at_the_first_increment_and_keeps_later_fields_in_other() -> None:
    sink = _Recorder()
    stream = DetailsStream(
        new_table=sink.new_table, send=sink.send, max_rows=None, rows_per_increment=1, max_cell_chars=100
    )
    stream.add("a", _record(0))
    stream.add("a", _record(1, later="x"))
    assert sink.tables == [["sample", "doc.query", "model_response.text", "metric.acc", "other"]]
    assert sink.sends[0][1] == [[0, "q0", '["a"]', 1.0, None]]
    assert sink.sends[1][1] == [[1, "q1", '["a"]', 1.0, '{"doc.later":"x"}']]


def test_stream_caps_rows_per_task() -> None:
    sink = _Recorder()
    stream = DetailsStream(
        new_table=sink.new_table, send=sink.send, max_rows=2, rows_per_increment=100, max_cell_chars=100
    )
    for index in range(5):
        stream.add("a", _record(index))
    assert stream.full("a")
    assert not stream.full("b")
    stream.flush()
    [(_, rows)] = sink.sends
    assert [row[0] for row in rows] == [0, 1]


# -- against wandb ----------------------------------------------------------------------------
def test_many_batches_stream_in_increments_and_memory_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent_sizes: list[int] = []
    held_after_send: list[int] = []
    pending_seen: list[int] = []
    original_send = backend.send_increment
    original_add = DetailsStream.add

    def send(log: Any, key: str, table: Any, rows: list[list[Any]]) -> None:
        original_send(log, key, table, rows)
        sent_sizes.append(len(rows))
        held_after_send.append(len(table.data))

    def add(self: DetailsStream, task: str, record: dict[str, Any]) -> None:
        original_add(self, task, record)
        pending_seen.append(self.pending)

    monkeypatch.setattr(backend, "send_increment", send)
    monkeypatch.setattr(DetailsStream, "add", add)
    tracker = EvaluationTracker(
        tmp_path,
        sinks=["wandb"],
        flush_every=7,
        sink_config={"wandb": {"project": "p", "rows_per_increment": 10}},
    )
    counts = {ANATOMY: 40, PLAIN: 25}
    for index in range(max(counts.values())):
        for task, count in counts.items():
            if index < count:
                doc = {"query": f"{task} {index} ✓"}
                tracker.details_logger.log(task, doc, {"text": [str(index)]}, {"acc": float(index % 2)})
                tracker.metrics_logger.log(task, {"acc": float(index % 2)})
    report = tracker.save()
    assert report.ok, str(report)

    assert max(pending_seen) < 10  # never more than rows_per_increment rows waiting
    assert set(held_after_send) == {0}  # the tables forget every row they sent
    assert sum(sent_sizes) == 65
    assert len(sent_sizes) >= 6
    run = run_of(tracker)
    for task, count in counts.items():
        rows = table_at(run, f"details/{task}")
        assert [row["sample"] for row in rows] == list(range(count))
        assert [row["doc.query"] for row in rows] == [f"{task} {i} ✓" for i in range(count)]
        assert run.summary[f"details/{task}"]["increment_num"] >= 2


def test_an_increment_wandb_did_not_log_fails_the_sink_but_not_the_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If wandb ignores a table log (or changes how incremental tables track rows), rows are not
    dropped silently: the sink fails and the run is marked failed, once the metrics are logged."""
    import wandb

    original = wandb.Run.log

    def log_without_tables(self: Any, data: dict[str, Any], step: Any = None, commit: Any = None) -> None:
        kept = {key: value for key, value in data.items() if not isinstance(value, wandb.Table)}
        original(self, kept, step=step, commit=commit)

    monkeypatch.setattr(wandb.Run, "log", log_without_tables)
    tracker = EvaluationTracker(
        tmp_path,
        sinks=["local", "wandb"],
        flush_every=2,
        sink_config={"wandb": {"project": "p", "rows_per_increment": 2}},
    )
    for index in range(5):
        tracker.details_logger.log(PLAIN, {"query": str(index)}, {"text": ["a"]}, {"acc": 1.0})
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
    report = tracker.save()

    assert report.failed == ["wandb"]
    assert report["wandb"].failed_hooks == ["evalsink_results_saved"]
    assert "details tables could not be sent" in report["wandb"].errors[0]
    assert "did not log the increment of table 'details/custom|plain|0'" in report["wandb"].errors[0]
    assert report["wandb"].outputs[1].startswith("wandb artifact: ")
    run = run_of(tracker)
    assert run.exit_code == 1
    assert run.summary[f"{PLAIN}/acc"] == 1  # the metrics were logged all the same
    assert run.artifact(type="evaluation-results")


def test_a_details_failure_of_a_failed_evaluation_is_reported_at_finish(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(log: Any, key: str, table: Any, rows: list[list[Any]]) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(backend, "send_increment", broken)
    tracker = EvaluationTracker(tmp_path, sinks=["wandb"], sink_config={"wandb": {"project": "p"}})
    with pytest.raises(RuntimeError, match="evaluation broke"), tracker:  # noqa: PT012
        tracker.details_logger.log(PLAIN, {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
        raise RuntimeError("evaluation broke")
    outcome = tracker.sink_outcomes["wandb"]
    assert outcome.failed_hooks == ["evalsink_run_finished"]
    assert "OSError: disk full" in outcome.errors[0]
    assert run_of(tracker).exit_code == 1


def test_long_task_names_get_tables_of_their_own(tmp_path: Path) -> None:
    """W&B names an incremental table's artifact after the run id and the key, and refuses names
    over 128 characters: a ~100-character task name failed the sink and lost later tables."""
    prefix = "custom|" + "very_long_subject_name_" * 12  # 283 characters before the suffix
    tasks = [f"{prefix}a|0", f"{prefix}b|0", PLAIN]
    tracker = EvaluationTracker(
        tmp_path, sinks=["wandb"], sink_config={"wandb": {"project": "p", "rows_per_increment": 5}}
    )
    for index in range(12):
        for task in tasks:
            tracker.details_logger.log(task, {"query": f"{task[-3:]} {index}"}, {"text": ["x"]}, {"acc": 1.0})
            tracker.metrics_logger.log(task, {"acc": 1.0})
    report = tracker.save()
    assert report.ok, str(report)
    run = run_of(tracker)
    wandb_run_id = run.run.run_id  # the RunRecord read back from the run file
    keys = [details_key(task, wandb_run_id) for task in tasks]
    assert keys[2] == f"details/{PLAIN}"  # short names keep their plain key
    assert len(set(keys)) == 3  # the two long names share 283 characters, not a table
    for task, key in zip(tasks, keys, strict=True):
        assert len(f"run-{wandb_run_id}-incr-{key}") <= 128 - 7
        assert any(artifact.name.startswith(f"run-{wandb_run_id}-incr-details") for artifact in run.artifacts)
        rows = table_at(run, key)
        assert [row["doc.query"] for row in rows] == [f"{task[-3:]} {i}" for i in range(12)]


def test_images_and_bytes_show_as_their_size_in_the_details_table(tmp_path: Path) -> None:
    """A multimodal doc's images are {path, bytes}: the table says how big, not kilobytes of base64."""
    tracker = EvaluationTracker(tmp_path, sinks=["wandb"], sink_config={"wandb": {"project": "p"}})
    doc = {"query": "what is shown?", "images": [{"path": None, "bytes": b"\x89PNG" + bytes(1230)}]}
    tracker.details_logger.log(PLAIN, doc, {"text": ["a cat"]}, {"acc": 1.0})
    tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
    assert tracker.save().ok

    [row] = table_at(run_of(tracker), f"details/{PLAIN}")
    assert row["doc.images"] == '[{"path":null,"bytes":"<1,234 bytes>"}]'


def test_a_whole_part_that_is_bytes_is_one_cell_saying_its_size() -> None:
    record = {"doc": {"q": "hi"}, "model_response": {"$evalsink.bytes": "cmF3"}, "metric": {"acc": 1.0}}
    expected = {"doc.q": "hi", "model_response": '"<3 bytes>"', "metric.acc": 1.0}
    assert flatten_record(record, limit=100) == expected
