"""A bool and a number under one key, at any depth, never merge: the field becomes JSON text.

Arrow's inference reads ``[[True], [0.5]]`` as ``list<double>`` ``[[1.0], [0.5]]`` (and converting
to a ``double`` type does the same), so without a check a bool logged below the first level read
back as ``1.0``, silently. Each case is saved with one row group holding every row (the fast path
meets the mix) and with one row per row group (the mix spans row groups: full path, and the
streaming JSON reader for later groups), and must read back exactly as logged.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from local_helpers import decoded_rows, parquet_outputs, same

from evalsink import EvaluationTracker
from evalsink_local.parquet import FastConverter, SchemaChangedError, infer_type

CASES: dict[str, list[dict[str, Any]]] = {
    "nested-bool-then-float": [{"specific": {"flag": True}}, {"specific": {"flag": 0.5}}],
    "nested-float-then-bool": [{"specific": {"flag": 0.5}}, {"specific": {"flag": False}}],
    "nested-bool-then-int": [{"specific": {"flag": True}}, {"specific": {"flag": 3}}],
    "list-items-in-one-row": [{"l": [True, 0.5]}, {"l": [0.25]}],
    "list-float-then-bool": [{"l": [0.5, True]}, {"l": []}],
    "list-of-objects-in-one-row": [{"opts": [{"x": True}, {"x": 2.5}]}, {"opts": []}],
    "lists-across-rows": [{"l": [True]}, {"l": [0.5]}],
    "deep": [{"a": [{"b": {"c": [1.5]}}]}, {"a": [{"b": {"c": [False, None]}}]}],
}


@pytest.mark.parametrize("row_group_size", [10, 1], ids=["one-row-group", "row-per-group"])
@pytest.mark.parametrize("docs", list(CASES.values()), ids=list(CASES))
def test_bools_and_numbers_below_the_first_level_read_back_as_logged(
    make_tracker: Callable[..., EvaluationTracker], docs: list[dict[str, Any]], row_group_size: int
) -> None:
    tracker = make_tracker(sink_config={"local": {"row_group_size": row_group_size}}, flush_every=1)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for doc in docs:
        tracker.details_logger.log("t|0", doc, {"text": ["a"]}, {"acc": 1.0})
        tracker.metrics_logger.log("t|0", {"acc": 1.0})
    report = tracker.save()
    assert report["local"].ok, report
    (path,) = parquet_outputs(report["local"].outputs)
    got = [row["doc"] for row in decoded_rows(pq.read_table(path))]
    assert all(same(read, logged) for read, logged in zip(got, docs, strict=True)), got
    assert any("written as JSON text" in warning for warning in report.warnings), report.warnings


def test_metric_float_then_bool_in_one_row_group_is_json_text(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """The first level too, in the order the old first-level check did not see (a float first)."""
    tracker = make_tracker(sink_config={"local": {"row_group_size": 10}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for value in (0.5, True):
        tracker.details_logger.log("t|0", {"q": "x"}, value, {"m": value})
    report = tracker.save()
    (path,) = parquet_outputs(report["local"].outputs)
    rows = decoded_rows(pq.read_table(path))
    assert [type(row["model_response"]) for row in rows] == [float, bool]
    assert [type(row["metric"]["m"]) for row in rows] == [float, bool]


@pytest.mark.parametrize("docs", list(CASES.values()), ids=list(CASES))
def test_the_converters_never_merge_bools_into_numbers(docs: list[dict[str, Any]]) -> None:
    records = [{"doc": doc, "metric": {}, "model_response": {}} for doc in docs]
    with pytest.raises(SchemaChangedError):
        FastConverter().convert(records)
    inferred = infer_type(docs)
    assert pa.float64() not in _leaf_types(inferred) or pa.bool_() not in _leaf_types(inferred)
    assert pa.large_string() in _leaf_types(inferred)  # JSON text where they met


def test_numbers_without_bools_keep_the_fast_path() -> None:
    records = [
        {"doc": {"l": [0.5, 1.5], "flag": True}, "metric": {"acc": 1.0}, "model_response": {"lp": [-0.5]}},
        {"doc": {"l": [2, 3], "flag": False}, "metric": {"acc": 0}, "model_response": {"lp": []}},
    ]
    batch = FastConverter().convert(records)
    assert batch.column(0).to_pylist()[0] == {"l": [0.5, 1.5], "flag": True}


def _leaf_types(kind: pa.DataType) -> set[pa.DataType]:
    if pa.types.is_struct(kind):
        return set().union(*(_leaf_types(kind.field(i).type) for i in range(kind.num_fields)))
    if pa.types.is_list(kind):
        return _leaf_types(kind.value_type)
    return {kind}
