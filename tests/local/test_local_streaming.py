"""Details converted while the evaluation runs give the very files save() would have converted.

Each scenario is logged twice, into a tracker that streams (the default) and one that converts
everything at save(); the parquet files must be byte-identical. The conversion done at save() is
watched, so each test also checks which tasks streaming handled and which it left to save().
"""

from __future__ import annotations

import decimal
import logging
import math
import os
import socket
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import evalsink_local.parquet
import evalsink_local.streaming
from evalsink import EvaluationTracker

Sample = tuple[str, Any, Any, dict[str, Any]]


def _sample(task: str, i: int, metric: Any = None) -> Sample:
    doc = {"query": f"{task} question {i}", "choices": ["a", "b"], "gold_index": i % 2, "id": str(i)}
    response = {
        "text": [f"answer {i}"],
        "input_tokens": list(range(i % 7, i % 7 + 20)),
        "output_tokens": [[i, i + 1]],
        "logprobs": [-0.5, -1.5 * (i % 3)],
    }
    return task, doc, response, {"em": float(i % 2) if metric is None else metric, "acc": i % 3 == 0}


@pytest.fixture
def converted_at_save(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Task names whose details were converted by save() (not streamed)."""
    real = evalsink_local.parquet.write_details
    names: list[str] = []

    def watched(read: Callable[[], Iterable[dict[str, Any]]], *args: Any, **kwargs: Any) -> int:
        first = next(iter(read()))
        names.append(first["task_name"])
        return real(read, *args, **kwargs)

    monkeypatch.setattr(evalsink_local.parquet, "write_details", watched)
    return names


def _save(
    tmp_path: Path, name: str, samples: Iterable[Sample], *, stream: bool, **local: Any
) -> dict[str, bytes]:
    config = {"row_group_size": 10, "stream_details": stream, **local}
    tracker = EvaluationTracker(
        tmp_path / name, sinks=["local"], sink_config={"local": config}, flush_every=25, run_id="same"
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for task, doc, response, metrics in samples:
        tracker.metrics_logger.log(task, metrics)
        tracker.details_logger.log(task, doc, response, metrics)
    report = tracker.save()
    assert report.ok, report
    folder = tmp_path / name / "details" / "org" / "model" / str(report.date_id)
    assert not (tmp_path / name / ".evalsink").exists()  # spool and staged files gone
    return {
        path.name.replace(str(report.date_id), "D"): path.read_bytes() for path in sorted(folder.iterdir())
    }


def _both(tmp_path: Path, samples: list[Sample], converted: list[str], **local: Any) -> dict[str, bytes]:
    unstreamed = _save(tmp_path, "unstreamed", samples, stream=False, **local)
    all_tasks = list(converted)
    converted.clear()
    streamed = _save(tmp_path, "streamed", samples, stream=True, **local)
    assert sorted(all_tasks) == sorted({sample[0] for sample in samples})
    assert streamed.keys() == unstreamed.keys()
    for name, data in streamed.items():
        assert data == unstreamed[name], name
    return streamed


def test_one_large_task_streams_whole_and_matches(tmp_path: Path, converted_at_save: list[str]) -> None:
    files = _both(tmp_path, [_sample("big|0", i) for i in range(237)], converted_at_save)
    assert converted_at_save == []
    (data,) = files.values()
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    assert (metadata.num_rows, metadata.num_row_groups) == (237, 24)


def test_row_groups_cut_by_bytes_match(
    tmp_path: Path, converted_at_save: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Long rows close a row group before ``row_group_size`` rows, where save() would close it
    (a row larger than the limit alone), so streaming keeps huge texts in bounded memory."""
    for module in (evalsink_local.parquet, evalsink_local.streaming):
        monkeypatch.setattr(module, "MAX_GROUP_BYTES", 4096)
    samples = []
    for i in range(97):
        task, doc, response, metrics = _sample("long|0", i)
        doc["query"] = "x" * (10_000 if i == 41 else 2_500 if i % 5 == 0 else 100)
        samples.append((task, doc, response, metrics))
    files = _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []
    (data,) = files.values()
    metadata = pq.ParquetFile(pa.BufferReader(data)).metadata
    sizes = [metadata.row_group(index).num_rows for index in range(metadata.num_row_groups)]
    assert sum(sizes) == 97
    assert max(sizes) < 10  # 10 rows never fit in 4 KB
    assert 1 in sizes  # row 41 alone
    table = pq.read_table(pa.BufferReader(data))
    assert [len(doc["query"]) for doc in table.column("doc").to_pylist()][40:43] == [2_500, 10_000, 100]


class _CountingLines(list[bytes]):
    """Pending lines that count how often a line is looked at."""

    looks = 0

    def __getitem__(self, index: Any) -> Any:
        _CountingLines.looks += 1
        return super().__getitem__(index)


def test_group_cuts_fed_line_by_line_match_save_and_look_at_each_line_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines arriving one batch at a time (flush_every=1) are cut where save() cuts them, and the
    scan resumes where it stopped: rescanning every pending line per batch cost 46 s of converter
    time (which logging waits on) for 20,000 one-line batches with row_group_size=20,000."""
    monkeypatch.setattr(evalsink_local.streaming, "MAX_GROUP_BYTES", 100_000)
    monkeypatch.setattr(evalsink_local.parquet, "MAX_GROUP_BYTES", 100_000)
    sizes = [(i * 37) % 450 + 1 for i in range(3000)] + [250_000] + [300] * 200  # and one line alone
    task = evalsink_local.streaming._TaskFile(tmp_path / "t.parquet.part", None)  # type: ignore[arg-type]
    task.pending = _CountingLines()
    _CountingLines.looks = 0
    cuts = []
    for size in sizes:
        task.pending.append(b"x" * size)
        while count := task.complete_group(2000):
            cuts.append(count)
            task.pending = _CountingLines(task.pending[count:])
            task.scanned = task.scanned_bytes = 0  # as _convert does
    expected = [len(group) for group in evalsink_local.parquet._batches(range(len(sizes)), 2000, sizes)]  # type: ignore[arg-type]
    assert [*cuts, len(task.pending)] == expected
    assert _CountingLines.looks < 3 * len(sizes)


def test_the_json_reader_takes_lines_longer_than_its_block() -> None:
    """A 3 MB prompt is one line longer than the reader's 1 MB block, which it would refuse
    (sending the row group to the slower Python conversion, GIL held)."""
    schema = pa.schema(
        [
            ("doc", pa.struct([("query", pa.string())])),
            ("metric", pa.struct([("em", pa.float64())])),
            ("model_response", pa.struct([("text", pa.list_(pa.string()))])),
        ]
    )
    converter = evalsink_local.parquet.JsonLinesConverter(schema)
    queries = ["short", "y" * 3_000_000, "z" * 1_500_000]
    lines = [
        b'{"task_name":"t","doc":{"query":"%s"},"metric":{"em":0.5},"model_response":{"text":["a"]}}'
        % query.encode()
        for query in queries
    ]
    batch = converter.convert(lines)
    assert batch is not None
    assert [doc["query"] for doc in batch.column(0).to_pylist()] == queries


def test_many_small_tasks_stream_and_match(tmp_path: Path, converted_at_save: list[str]) -> None:
    samples = [_sample(f"small|{t}|0", i) for t in range(40) for i in range(3)]
    files = _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []
    assert len(files) == 40


def test_nan_and_values_the_logger_does_not_copy_match(tmp_path: Path, converted_at_save: list[str]) -> None:
    samples = [_sample("odd|0", i, metric=math.nan if i % 5 == 0 else 0.5) for i in range(60)]
    task, doc, response, _ = _sample("odd|0", 60)
    samples.append((task, doc, response, {"em": decimal.Decimal("0.5"), "acc": True}))  # not copied: decoded
    _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []


def test_a_schema_change_leaves_the_task_to_save(tmp_path: Path, converted_at_save: list[str]) -> None:
    samples = [_sample("steady|0", i) for i in range(30)]
    samples += [_sample("changing|0", i, metric=0.5 if i < 15 else f"label {i}") for i in range(30)]
    _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == ["changing|0"]


def _drifting(name: str, late: Callable[[int], dict[str, Any]]) -> list[Sample]:
    """30 samples whose metrics follow one shape for the first two row groups (10 rows each,
    the first converted in Python, the second by Arrow's JSON reader), then ``late(i)``."""
    samples = []
    for i in range(30):
        task, doc, response, _ = _sample(name, i)
        samples.append((task, doc, response, {"em": 0.5 + i, "count": i} if i < 20 else late(i)))
    return samples


@pytest.mark.parametrize(
    ("late", "streamed"),
    [
        pytest.param(lambda i: {"em": 2**53 + i, "count": i}, False, id="int-beyond-2**53-into-double"),
        pytest.param(lambda i: {"em": 0.5, "count": float(i)}, False, id="integral-float-into-int"),
        pytest.param(lambda i: {"em": True, "count": i}, False, id="bool-into-double"),
        pytest.param(lambda i: {"em": "0.5", "count": i}, False, id="string-into-double"),
        pytest.param(lambda i: {"em": 0.5, "count": i, "new": 1}, False, id="new-key"),
        pytest.param(lambda i: {"em": 1e300, "count": i}, True, id="huge-float-decoded-then-streamed"),
        pytest.param(lambda i: {"em": 7, "count": None}, True, id="int-into-double-and-null"),
    ],
)
def test_rows_the_json_reader_must_not_take_are_converted_like_save_would(
    tmp_path: Path, converted_at_save: list[str], late: Callable[[int], dict[str, Any]], streamed: bool
) -> None:
    _both(tmp_path, _drifting("drift|0", late), converted_at_save)
    assert converted_at_save == ([] if streamed else ["drift|0"])


def test_a_task_that_comes_back_after_its_file_was_finished_is_left_to_save(
    tmp_path: Path, converted_at_save: list[str]
) -> None:
    samples = [_sample("first|0", i) for i in range(30)]
    samples += [_sample("second|0", i) for i in range(60)]  # batches without first|0: its file is finished
    samples += [_sample("first|0", i) for i in range(30, 40)]
    _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == ["first|0"]


def test_interleaved_tasks_match(tmp_path: Path, converted_at_save: list[str]) -> None:
    samples = [_sample(f"mix|{i % 3}|0", i) for i in range(150)]
    _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []


def test_more_open_tasks_than_the_limit_match(tmp_path: Path, converted_at_save: list[str]) -> None:
    tasks = evalsink_local.streaming.MAX_OPEN * 2
    samples = [_sample(f"wide|{i % tasks}|0", i) for i in range(tasks * 12)]
    _both(tmp_path, samples, converted_at_save, row_group_size=100)
    assert converted_at_save  # tasks closed for the limit came back: save() converted them


def test_a_failed_staged_write_is_converted_at_save(
    tmp_path: Path,
    converted_at_save: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = evalsink_local.streaming.open_writer
    opened: list[str] = []

    def failing(sink: Any, *args: Any, **kwargs: Any) -> Any:
        opened.append(str(sink))
        if len(opened) == 2:
            raise OSError(28, "No space left on device (injected)")
        return real(sink, *args, **kwargs)

    monkeypatch.setattr(evalsink_local.streaming, "open_writer", failing)
    samples = [_sample(f"disk|{t}|0", i) for t in range(3) for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == ["disk|1|0"]
    assert "No space left on device (injected)" in caplog.text


def test_staged_files_are_removed_when_the_run_fails(tmp_path: Path) -> None:
    config = {"local": {"row_group_size": 10}}
    tracker = EvaluationTracker(tmp_path / "out", sinks=["local"], sink_config=config, flush_every=5)
    with pytest.raises(RuntimeError, match="evaluation crashed"), tracker:  # noqa: PT012
        for i in range(40):
            task, doc, response, metrics = _sample("crash|0", i)
            tracker.details_logger.log(task, doc, response, metrics)
        staged = list((tmp_path / "out" / ".evalsink").rglob("*.parquet.part"))
        assert staged  # streaming was under way
        raise RuntimeError("evaluation crashed")
    assert list((tmp_path / "out" / ".evalsink").rglob("*.parquet.part")) == []
    assert list((tmp_path / "out" / ".evalsink").rglob("details-*.jsonl"))  # the spool is kept


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


def test_staging_left_by_a_dead_process_is_removed(tmp_path: Path) -> None:
    host = socket.gethostname()
    dead = tmp_path / f"{evalsink_local.streaming.STAGING_PREFIX}{host}-{_dead_pid()}-abcd"
    alive = tmp_path / f"{evalsink_local.streaming.STAGING_PREFIX}{host}-{os.getpid()}-abcd"
    other_host = tmp_path / f"{evalsink_local.streaming.STAGING_PREFIX}elsewhere-{_dead_pid()}-abcd"
    for folder in (dead, alive, other_host):
        folder.mkdir()
        (folder / "x.parquet").write_bytes(b"PAR1")
    evalsink_local.streaming.remove_stale_staging(tmp_path)
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted([alive.name, other_host.name])


def test_outputs_that_are_not_local_folders_get_the_staged_files_uploaded(
    memory_fs: Any, converted_at_save: list[str]
) -> None:
    """memory:// stands for an object store: streaming stages files on local disk beside the
    spool, and save() uploads them as they are instead of converting."""
    files = {}
    for stream in (False, True):
        tracker = EvaluationTracker(
            f"memory://evalsink-test/stream-{stream}",
            sinks=["local"],
            sink_config={"local": {"row_group_size": 10, "stream_details": stream}},
            flush_every=25,
        )
        tracker.general_config_logger.log_model_info(model_name="org/model")
        for t in range(3):
            for i in range(30):
                task, doc, response, metrics = _sample(f"remote|{t}|0", i)
                tracker.details_logger.log(task, doc, response, metrics)
        report = tracker.save()
        assert report.ok, report
        date_id = str(report.date_id)
        root = f"/evalsink-test/stream-{stream}"
        folder = f"{root}/details/org/model/{date_id}"
        files[stream] = {
            path.rsplit("/", 1)[1].replace(date_id, "D"): memory_fs.cat_file(path)
            for path in memory_fs.ls(folder, detail=False)
        }
        assert memory_fs.exists(f"{root}/results/org/model/results_{date_id}.json")
    assert converted_at_save == ["remote|0|0", "remote|1|0", "remote|2|0"]  # the unstreamed run's only
    assert files[True] == files[False]
    assert len(files[True]) == 3


@pytest.mark.parametrize("where", ["add", "finish"])
def test_streaming_that_breaks_down_leaves_every_task_to_save(
    tmp_path: Path,
    converted_at_save: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    where: str,
) -> None:
    def broken(self: Any, *args: Any) -> Any:
        raise OSError(f"streaming {where} broke (injected)")

    monkeypatch.setattr(evalsink_local.streaming.StreamingDetails, where, broken)
    samples = [_sample(f"broken|{t}|0", i) for t in range(2) for i in range(30)]
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        _both(tmp_path, samples, converted_at_save)  # the same files, and the report is ok
    assert converted_at_save == ["broken|0|0", "broken|1|0"]
    assert f"streaming {where} broke (injected)" in caplog.text
    assert "every task will be converted at save() instead" in caplog.text


def test_pools_refusing_work_at_interpreter_exit_is_no_streaming_failure(
    tmp_path: Path,
    converted_at_save: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Ctrl-C while logging: the thread pools refuse work as the interpreter exits, which was
    logged as "streaming the details failed" with a traceback, after the user's own."""

    def exiting(self: Any, *args: Any) -> Any:
        raise RuntimeError("cannot schedule new futures after interpreter shutdown")

    monkeypatch.setattr(evalsink_local.streaming.StreamingDetails, "_add_batch", exiting)
    samples = [_sample(f"exit|{t}|0", i) for t in range(2) for i in range(30)]
    with caplog.at_level(logging.DEBUG, logger="evalsink"):
        _both(tmp_path, samples, converted_at_save)  # the same files: the spool has every sample
    assert "streaming the details failed" not in caplog.text
    assert "streaming the details stopped: the run is ending" in caplog.text


def test_a_list_of_nulls_streams_without_errors(
    tmp_path: Path, converted_at_save: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Arrow's JSON reader builds an invalid array for ``list<null>`` (``combine_chunks`` raised
    ArrowIndexError, which stopped streaming for every task): such a file is converted in Python."""
    samples = []
    for i in range(40):
        samples.append(_sample("other|0", i))
        task, doc, response, metrics = _sample("nulls|0", i)
        samples.append((task, doc, {**response, "logprobs": [None, None]}, metrics))
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []
    assert caplog.records == []


def test_empty_lists_of_nulls_go_through_the_json_reader(
    tmp_path: Path, converted_at_save: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """lighteval's ``fewshot_samples`` is ``[]`` in every row (``list<null>``): such rows used to
    be converted in Python, batch after batch (1 x 50,000 took 12-17 s instead of 8.4 s); Arrow's
    JSON reader reads them right, and refuses only null items (the test above)."""
    real = evalsink_local.parquet.JsonLinesConverter.convert
    outcomes: list[bool] = []

    def watched(self: Any, lines: list[bytes]) -> Any:
        batch = real(self, lines)
        outcomes.append(batch is not None)
        return batch

    monkeypatch.setattr(evalsink_local.parquet.JsonLinesConverter, "convert", watched)
    samples = []
    for i in range(60):
        task, doc, response, metrics = _sample("fewshot|0", i)
        samples.append((task, {**doc, "fewshot_samples": []}, response, metrics))
    _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == []
    assert outcomes
    assert all(outcomes)


def test_an_unexpected_conversion_error_leaves_only_that_task_to_save(
    tmp_path: Path,
    converted_at_save: list[str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real = evalsink_local.parquet.JsonLinesConverter.convert

    def failing(self: Any, lines: list[bytes]) -> Any:
        if any(b"bad|0" in line for line in lines):
            raise pa.ArrowIndexError("conversion broke (injected)")
        return real(self, lines)

    monkeypatch.setattr(evalsink_local.parquet.JsonLinesConverter, "convert", failing)
    samples = [_sample(task, i) for i in range(30) for task in ("good|0", "bad|0")]
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        _both(tmp_path, samples, converted_at_save)
    assert converted_at_save == ["bad|0"]  # good|0 kept streaming
    assert "conversion broke (injected)" in caplog.text
    assert "every task will be converted" not in caplog.text
