"""The details parquet files read back with pyarrow, pandas and datasets hold exactly what was logged."""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq
import pytest
from local_helpers import COLUMNS, parquet_outputs, plain, same

from evalsink import EvaluationTracker
from evalsink.demo import make_sample
from evalsink_local.parquet import MAX_GROUP_BYTES, _batches

ROW_GROUP = 7
TASKS = {"mmlu:anatomy|5": ("multiple_choice", 100), "lighteval|gsm8k|5": ("generative", 61)}


def _interleaved_run(tracker: EvaluationTracker) -> dict[str, list[dict[str, Any]]]:
    """Log both tasks alternately (as lighteval's pipeline may); return the expected rows per task."""
    rng = random.Random(1234)
    expected: dict[str, list[dict[str, Any]]] = {task: [] for task in TASKS}
    longest = max(count for _, count in TASKS.values())
    for index in range(longest):
        for task, (kind, count) in TASKS.items():
            if index >= count:
                continue
            doc, response, metrics = make_sample(rng, f"suite|{task}", kind, index, 0.5)
            tracker.metrics_logger.log(task, metrics)
            tracker.details_logger.log(task, doc, response, metrics)
            expected[task].append(
                {
                    "doc": dataclasses.asdict(doc),
                    "metric": dict(metrics),
                    "model_response": dataclasses.asdict(response),
                }
            )
    return expected


@pytest.fixture
def saved(
    make_tracker: Callable[..., EvaluationTracker],
) -> tuple[dict[str, str], dict[str, list[dict[str, Any]]]]:
    """{task: parquet path}, {task: expected rows} of one saved run with 7-row row groups."""
    tracker = make_tracker(sink_config={"local": {"row_group_size": ROW_GROUP}}, flush_every=13)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    expected = _interleaved_run(tracker)
    report = tracker.save()
    assert report["local"].ok, report
    files = parquet_outputs(report["local"].outputs)
    paths = {task: next(p for p in files if Path(p).name.startswith(f"details_{task}_")) for task in TASKS}
    return paths, expected


def test_pyarrow_reads_every_row_in_order(saved: tuple[dict[str, str], dict[str, list[Any]]]) -> None:
    paths, expected = saved
    for task, path in paths.items():
        table = pq.read_table(path)
        assert table.column_names == COLUMNS
        assert table.num_rows == len(expected[task])
        rows = table.to_pylist()
        assert rows == expected[task]
        assert all(same(row, want) for row, want in zip(rows, expected[task], strict=True))
        assert [row["doc"]["id"] for row in rows] == [f"suite|{task}-{i}" for i in range(len(rows))]


def test_row_groups_follow_row_group_size(saved: tuple[dict[str, str], dict[str, list[Any]]]) -> None:
    paths, expected = saved
    for task, path in paths.items():
        metadata = pq.ParquetFile(path).metadata
        assert metadata.num_row_groups == math.ceil(len(expected[task]) / ROW_GROUP)
        sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
        assert all(size <= ROW_GROUP for size in sizes)
        assert sum(sizes) == len(expected[task])


def test_numbers_have_statistics_and_text_has_none(
    saved: tuple[dict[str, str], dict[str, list[Any]]],
) -> None:
    paths, _ = saved
    for path in paths.values():
        row_group = pq.ParquetFile(path).metadata.row_group(0)
        columns = {
            row_group.column(i).path_in_schema: row_group.column(i) for i in range(row_group.num_columns)
        }
        assert columns["model_response.truncated_tokens_count"].statistics.has_min_max
        assert columns["model_response.input_tokens.list.element"].statistics.has_min_max
        assert columns["doc.query"].statistics is None or not columns["doc.query"].statistics.has_min_max
        assert "RLE_DICTIONARY" in columns["doc.query"].encodings  # text: dictionary-encoded
        assert "RLE_DICTIONARY" not in columns["model_response.input_tokens.list.element"].encodings


def test_pandas_reads_the_same_rows(saved: tuple[dict[str, str], dict[str, list[Any]]]) -> None:
    paths, expected = saved
    for task, path in paths.items():
        frame = pd.read_parquet(path)
        assert list(frame.columns) == COLUMNS
        assert len(frame) == len(expected[task])
        rows = [{column: plain(frame.iloc[i][column]) for column in COLUMNS} for i in range(len(frame))]
        assert rows == expected[task]


@pytest.mark.usefixtures("hf_offline")
def test_datasets_loads_the_same_rows(saved: tuple[dict[str, str], dict[str, list[Any]]]) -> None:
    from datasets import load_dataset

    paths, expected = saved
    for task, path in paths.items():
        dataset = load_dataset("parquet", data_files=path, split="train")
        assert dataset.column_names == COLUMNS
        assert dataset.num_rows == len(expected[task])
        assert dataset.to_list() == expected[task]


@pytest.mark.parametrize("compression", ["snappy", "zstd", "gzip", "none"])
def test_compression_option_is_applied(
    make_tracker: Callable[..., EvaluationTracker], compression: str
) -> None:
    tracker = make_tracker(sink_config={"local": {"compression": compression}})
    rng = random.Random(0)
    expected = []
    for index in range(20):
        doc, response, metrics = make_sample(rng, "suite|t|0", "generative", index, 0.5)
        tracker.details_logger.log("t|0", doc, response, metrics)
        expected.append(dataclasses.asdict(doc))
    report = tracker.save()
    (path,) = parquet_outputs(report["local"].outputs)
    metadata = pq.ParquetFile(path).metadata
    codecs = {
        metadata.row_group(g).column(c).compression
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    }
    assert codecs == {"UNCOMPRESSED" if compression == "none" else compression.upper()}
    assert pq.read_table(path).column("doc").to_pylist() == expected


def test_row_groups_hold_at_most_max_group_bytes_of_json_when_sizes_are_known() -> None:
    """Records carrying images: a group is cut by size as well as by count, record by record, so
    a few huge records among many small ones do not end up in one group."""
    mb = 1 << 20
    limit = MAX_GROUP_BYTES
    sizes = [1024] * 990 + [limit - 2 * mb] * 10 + [12_000] * 600
    batches = list(_batches(range(len(sizes)), 500, sizes))  # type: ignore[arg-type]
    assert sum(map(len, batches)) == len(sizes)
    assert [batch[0] for batch in batches] == sorted(batch[0] for batch in batches)  # in order
    for batch in batches:
        assert len(batch) <= 500
        assert len(batch) == 1 or sum(sizes[i] for i in batch) <= limit
    # the 990 small rows fill a group, then share one with the first big row; the big rows go
    # alone, the last with as many 12 KB rows as fit beside it
    assert [len(batch) for batch in batches] == [500, 491, *([1] * 8), 175, 426]
    assert [len(batch) for batch in _batches(range(1200), 500)] == [500, 500, 200]  # type: ignore[arg-type]
    assert [len(batch) for batch in _batches(range(3), 2, [0, 0])] == [2, 1]  # type: ignore[arg-type]
