"""Samples whose types disagree never crash the writer and never lose a value.

Each test logs rows whose shape changes after the first row group (row_group_size=7), reads the
parquet back and decodes the JSON-text fields the file marks with ``evalsink.encoding=json``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_helpers import (
    COLUMNS,
    decoded_rows,
    drop_nulls,
    is_json_field,
    json_outputs,
    log_raw,
    parquet_outputs,
    plain,
    same,
    strict_json,
)

from evalsink import EncodeError, EvaluationTracker
from evalsink.models import EvaluationResults
from evalsink.report import SaveReport

ROW_GROUP = 7
Row = tuple[Any, Any, dict[str, Any]]


def _save(
    make_tracker: Callable[..., EvaluationTracker], rows: list[Row], task: str = "odd|0"
) -> tuple[pa.Table, SaveReport, str]:
    tracker = make_tracker(sink_config={"local": {"row_group_size": ROW_GROUP}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_raw(tracker, task, rows)
    report = tracker.save()
    assert report["local"].ok, report
    (path,) = parquet_outputs(report["local"].outputs)
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    assert table.num_rows == len(rows)
    return table, report, path


def _doc_field(table: pa.Table, name: str) -> pa.Field:
    doc = table.schema.field("doc").type
    return doc.field(doc.get_field_index(name))


def test_metric_float_then_string_is_json_text_and_decodes(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    values: list[Any] = [0.25 * i for i in range(10)] + [f"label-{i}" for i in range(10, 20)]
    rows = [
        ({"query": f"q{i}"}, {"text": ["a"]}, {"score": value, "acc": 1.0}) for i, value in enumerate(values)
    ]
    table, report, _ = _save(make_tracker, rows)

    metric = table.schema.field("metric").type
    assert is_json_field(metric.field(metric.get_field_index("score")))
    assert metric.field(metric.get_field_index("acc")).type == pa.float64()
    decoded = [row["metric"]["score"] for row in decoded_rows(table)]
    assert all(same(got, want) for got, want in zip(decoded, values, strict=True)), decoded
    assert any("not single numbers" in warning for warning in report.warnings)
    assert any(  # the details too: a reader gets text where numbers were logged
        warning.startswith("local: details of ") and "metric.score written as JSON text" in warning
        for warning in report.warnings
    ), report.warnings


def test_nested_key_first_seen_in_a_later_row_group(make_tracker: Callable[..., EvaluationTracker]) -> None:
    rows: list[Row] = []
    for i in range(20):
        doc: dict[str, Any] = {"query": f"q{i}", "specific": {"kind": "plain"}}
        if i >= 10:  # row group 2 (rows 7-13) onwards
            doc["specific"]["extra"] = {"depth": i, "tags": [f"t{i}"]}
            doc["late_top_level"] = f"late-{i}"
        rows.append((doc, {"text": ["a"]}, {"acc": 1.0}))
    table, _, path = _save(make_tracker, rows)

    docs = table.column("doc").to_pylist()
    for i, doc in enumerate(docs):
        if i < 10:
            assert doc["specific"] == {"kind": "plain", "extra": None}
            assert doc["late_top_level"] is None
        else:
            assert doc["specific"] == {"kind": "plain", "extra": {"depth": i, "tags": [f"t{i}"]}}
            assert doc["late_top_level"] == f"late-{i}"
    frame = pd.read_parquet(path)
    assert plain(frame.iloc[15]["doc"]["specific"]["extra"]) == {"depth": 15, "tags": ["t15"]}
    assert frame.iloc[3]["doc"]["specific"]["extra"] is None


def test_int_then_float_widens_to_double(make_tracker: Callable[..., EvaluationTracker]) -> None:
    values: list[int | float] = list(range(10)) + [i + 0.5 for i in range(10, 20)]
    rows = [({"n": value}, {"tokens": value}, {"m": value}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    assert _doc_field(table, "n").type == pa.float64()
    assert table.schema.field("model_response").type.field(0).type == pa.float64()
    assert table.column("doc").to_pylist() == [{"n": float(value)} for value in values]
    assert [row["metric"]["m"] for row in table.to_pylist()] == values


def test_empty_dicts_survive(make_tracker: Callable[..., EvaluationTracker]) -> None:
    rows: list[Row] = []
    for i in range(20):
        later = {"k": i} if i >= 10 else {}
        rows.append(({"always_empty": {}, "sometimes_empty": later}, {}, {"acc": float(i)}))
    table, _, _ = _save(make_tracker, rows)
    decoded = decoded_rows(table)
    assert [row["doc"]["always_empty"] for row in decoded] == [{}] * 20
    assert [drop_nulls(row["doc"]["sometimes_empty"]) for row in decoded] == [
        {"k": i} if i >= 10 else {} for i in range(20)
    ]
    assert [row["model_response"] for row in decoded] == [{}] * 20


def test_all_none_field_reads_back_as_null_everywhere(
    make_tracker: Callable[..., EvaluationTracker], hf_offline: Path
) -> None:
    from datasets import load_dataset

    rows = [({"query": f"q{i}", "nothing": None}, None, {"acc": 1.0, "na": None}) for i in range(20)]
    table, _, path = _save(make_tracker, rows)
    assert [row["doc"] for row in table.to_pylist()] == [
        {"query": f"q{i}", "nothing": None} for i in range(20)
    ]
    assert table.column("model_response").null_count == 20
    assert [row["metric"] for row in table.to_pylist()] == [{"acc": 1.0, "na": None}] * 20
    assert pd.read_parquet(path)["model_response"].isna().all()
    dataset = load_dataset("parquet", data_files=path, split="train")
    assert dataset[5]["doc"] == {"query": "q5", "nothing": None}


def test_list_mixing_ints_and_strings(make_tracker: Callable[..., EvaluationTracker]) -> None:
    values = [[1, "a", i] for i in range(10)] + [[i, i + 1] for i in range(10)] + [["x", "y"]]
    rows = [({"mixed": value}, {"text": ["a"]}, {"acc": 1.0}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    assert [row["doc"]["mixed"] for row in decoded_rows(table)] == values


def test_list_of_empty_dicts(make_tracker: Callable[..., EvaluationTracker]) -> None:
    rows = [({"items": [{}, {}]}, {"text": ["a"]}, {"acc": 1.0}) for _ in range(3)]
    table, _, _ = _save(make_tracker, rows)
    assert [row["doc"]["items"] for row in decoded_rows(table)] == [[{}, {}]] * 3


def test_ints_beyond_int64_keep_every_digit(make_tracker: Callable[..., EvaluationTracker]) -> None:
    values = [5, -(2**63), 2**63 - 1] + [2**63 + i for i in range(10)] + [2**64 - 1]
    rows = [({"big": value}, {"text": ["a"]}, {"acc": 1.0}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    decoded = [row["doc"]["big"] for row in decoded_rows(table)]
    assert decoded == values
    assert all(type(value) is int for value in decoded)


def test_ints_beyond_64_bits_are_refused_naming_the_field(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """orjson encodes 64-bit integers only: a larger one is a clear error at log(), never a
    silent str() or a crash at save()."""
    tracker = make_tracker()
    for value in (2**64, -(2**63) - 1, 10**30):
        with pytest.raises(EncodeError, match=r"doc\.huge"):
            tracker.details_logger.log("t|0", {"huge": value}, {"text": ["a"]}, {"acc": 1.0})
    assert tracker.details_logger.spool.tasks() == []


def test_large_int_then_float_in_one_field(make_tracker: Callable[..., EvaluationTracker]) -> None:
    values: list[Any] = [2**60 + 1] * 10 + [0.5] * 10
    rows = [({"id_like": value}, {"text": ["a"]}, {"acc": 1.0}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    assert [row["doc"]["id_like"] for row in decoded_rows(table)] == values


@pytest.mark.parametrize(
    "values",
    [[2**60 + 1, 0.5, 2**60 + 3, 1.5], [[2**60 + 1, 0.5], [1, 2]]],
    ids=["one-row-group", "inside-a-list"],
)
def test_large_int_and_float_side_by_side_keep_exact_values(
    make_tracker: Callable[..., EvaluationTracker], values: list[Any]
) -> None:
    rows = [({"id_like": value}, {"text": ["a"]}, {"acc": 1.0}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    assert [row["doc"]["id_like"] for row in decoded_rows(table)] == values


UNICODE = [
    "emoji \U0001f600\U0001f389\U0001f469\u200d\U0001f4bb",
    "中文 日本語 한국어",
    "עברית \u200fRTL\u200f العربية",
    "e\u0301 combining",
    "nul\x00inside",
]


def test_unicode_round_trips_in_values_and_keys(
    make_tracker: Callable[..., EvaluationTracker], hf_offline: Path
) -> None:
    from datasets import load_dataset

    rows = [
        ({"query": text, "choices": UNICODE, "键😀": text}, {"text": [text[::-1]]}, {"acc": 1.0})
        for text in UNICODE * 3
    ]
    table, _, path = _save(make_tracker, rows)
    expected = [{"doc": doc, "metric": metric, "model_response": response} for doc, response, metric in rows]
    assert table.to_pylist() == expected
    assert [plain(doc) for doc in pd.read_parquet(path)["doc"]] == [row["doc"] for row in expected]
    assert load_dataset("parquet", data_files=path, split="train").to_list() == expected


def test_results_json_is_written_and_valid_when_details_are_odd(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    tracker = make_tracker(sink_config={"local": {"row_group_size": ROW_GROUP}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for i in range(30):
        doc: dict[str, Any] = {"query": UNICODE[i % len(UNICODE)], "n": i if i < 15 else i / 2, "e": {}}
        if i > 20:
            doc["late"] = {"x": [i]}
        metrics = {"acc": float(i % 2), "label": "yes" if i % 3 else 0.5, "none": None}
        log_raw(tracker, "odd|0", [(doc, {"big": 2**63 + i}, metrics)])
        log_raw(tracker, "plain|0", [({"query": "q"}, {"text": ["a"]}, {"acc": 1.0})])
    report = tracker.save()
    assert report["local"].ok, report
    (results,) = json_outputs(report["local"].outputs)
    text = Path(results).read_bytes()
    data = strict_json(text)
    assert data["results"]["odd|0"]["acc"] == pytest.approx(0.5)
    assert data["results"]["plain|0"]["acc"] == 1.0
    EvaluationResults.model_validate_json(text)
    assert len(parquet_outputs(report["local"].outputs)) == 2
    for path in parquet_outputs(report["local"].outputs):
        assert pq.read_table(path).num_rows == 30


def test_float_and_bool_in_one_row_group_keep_their_types(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    values: list[Any] = [0.5, True, 0.25, False] * 5
    rows = [({"query": "q"}, {"text": ["a"]}, {"correct": value}) for value in values]
    table, _, _ = _save(make_tracker, rows)
    decoded = [row["metric"]["correct"] for row in decoded_rows(table)]
    assert all(same(got, want) for got, want in zip(decoded, values, strict=True)), decoded


# -- property: any mix of these shapes round-trips -------------------------------------------------
# Keys come from a small set so that samples collide often. Each run draws its numbers from ints
# within ±2**53 (beyond: the tests above) plus either floats or bools, never both (bools beside
# numbers are kept apart only in first-level fields: see the test just above); floats stay within
# ±1e100 (larger metrics: test_local_results_json.py). Lists hold scalars of any mix or strings.
_KEYS = st.sampled_from(["a", "b", "c", "", "d.e"])


def _samples(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Row]]:
    scalars = st.none() | st.integers(-(2**53), 2**53) | numbers | st.text(max_size=6)
    values = st.recursive(
        scalars | st.lists(scalars, max_size=3) | st.lists(st.text(max_size=3), max_size=3),
        lambda children: st.dictionaries(_KEYS, children, max_size=3),
        max_leaves=6,
    )
    return st.lists(
        st.tuples(
            st.dictionaries(_KEYS, values, max_size=4), values, st.dictionaries(_KEYS, scalars, max_size=3)
        ),
        min_size=1,
        max_size=12,
    )


_SAMPLES = st.sampled_from(
    [st.booleans(), st.floats(-1e100, 1e100, allow_nan=False, allow_infinity=False)]
).flatmap(_samples)


@pytest.fixture(scope="module")
def shared_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One output folder for every example (each save gets its own date_id folder)."""
    return tmp_path_factory.mktemp("property")


@settings(max_examples=75, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(samples=_SAMPLES, row_group_size=st.integers(1, 4))
def test_any_mix_of_types_round_trips(shared_output: Path, samples: list[Row], row_group_size: int) -> None:
    tracker = EvaluationTracker(
        output_dir=shared_output, sinks=["local"], sink_config={"local": {"row_group_size": row_group_size}}
    )
    with tracker:
        log_raw(tracker, "prop|0", samples)
        report = tracker.save()
    assert report["local"].ok, report
    (path,) = parquet_outputs(report["local"].outputs)
    table = pq.read_table(path)
    assert table.column_names == COLUMNS
    got = decoded_rows(table)
    want = [{"doc": doc, "metric": metric, "model_response": response} for doc, response, metric in samples]
    assert len(got) == len(want)
    for row, expected in zip(got, want, strict=True):
        assert same(drop_nulls(row), drop_nulls(expected)), (row, expected)
    assert strict_json(Path(json_outputs(report["local"].outputs)[0]).read_bytes())
