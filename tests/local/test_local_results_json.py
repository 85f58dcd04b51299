"""The results file is strict JSON that lighteval's readers and evalsink's model both load."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from local_helpers import json_outputs, log_demo_samples, log_raw, parquet_outputs, strict_json

from evalsink import EvaluationTracker
from evalsink.models import EvaluationResults


def _results_file(report_outputs: list[str]) -> bytes:
    (path,) = json_outputs(report_outputs)
    return Path(path).read_bytes()


def test_strict_json_check_rejects_nan_tokens() -> None:
    """The parser the other tests rely on does refuse what lighteval writes."""
    with pytest.raises(ValueError, match="NaN"):
        strict_json('{"acc": NaN}')
    with pytest.raises(ValueError, match="Infinity"):
        strict_json('{"acc": -Infinity}')


def test_nan_and_inf_metrics_become_null(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_raw(
        tracker,
        "nan|0",
        [({"query": "q0"}, {"text": ["a"]}, {"acc": 1.0, "bad": math.nan, "worse": math.inf})],
    )
    log_raw(tracker, "fine|0", [({"query": f"q{i}"}, {"text": ["a"]}, {"acc": i / 2}) for i in range(4)])
    tracker.details_logger.log("nan|0", {"query": "q", "score": math.nan}, {"logprobs": [math.inf]}, {})
    report = tracker.save()
    assert report["local"].ok

    data = strict_json(_results_file(report["local"].outputs))
    assert data["results"]["nan|0"] == {"acc": 1.0, "bad": None, "worse": None}
    assert data["results"]["fine|0"]["acc"] == pytest.approx(0.75)
    assert data["results"]["all"]["bad"] is None
    assert any("'bad'" in warning and "null" in warning for warning in report.warnings)
    assert any("details of 'nan|0'" in warning for warning in report.warnings)

    nan_file = next(p for p in parquet_outputs(report["local"].outputs) if "details_nan|0_" in p)
    rows = pq.read_table(nan_file).to_pylist()
    assert rows[0]["metric"] == {"acc": 1.0, "bad": None, "worse": None}
    assert rows[1]["doc"]["score"] is None
    assert rows[1]["model_response"]["logprobs"] == [None]


def test_nan_metric_in_several_samples_becomes_null(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker()
    rows = [
        ({"query": f"q{i}"}, {"text": ["a"]}, {"acc": 1.0, "bad": math.nan if i else 0.5}) for i in range(4)
    ]
    log_raw(tracker, "nan|0", rows)
    report = tracker.save()
    data = strict_json(_results_file(report["local"].outputs))
    assert data["results"]["nan|0"]["bad"] is None
    assert data["results"]["nan|0"]["acc"] == 1.0


def test_numpy_values_become_json_numbers(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(
        model_config={"model_name": "org/model", "max_length": np.int64(4096), "temperature": np.float32(0.5)}
    )
    tracker.task_config_logger.log(
        {"np|0": {"name": "np|0", "num_samples": np.int64(3), "w": np.float64(0.25)}}
    )
    metrics_per_sample = [
        {"acc": np.float64(1.0), "f1": np.float32(0.5), "count": np.int64(3), "ok": np.bool_(True)},
        {"acc": np.float64(0.0), "f1": np.float32(0.25), "count": np.int64(5), "ok": np.bool_(False)},
    ]
    for metrics in metrics_per_sample:
        tracker.metrics_logger.log("np|0", metrics)
        tracker.details_logger.log(
            "np|0", {"query": "q", "gold": np.int64(2)}, {"logprobs": np.array([0.5, -1.0])}, metrics
        )
    report = tracker.save()
    assert report["local"].ok

    text = _results_file(report["local"].outputs)
    data = strict_json(text)
    results = data["results"]["np|0"]
    assert results["acc"] == 0.5
    assert results["f1"] == pytest.approx(0.375)
    assert results["count"] == 4.0
    assert results["ok"] == 0.5
    assert all(isinstance(value, float) for value in results.values())
    assert data["config_general"]["model_config"]["max_length"] == 4096
    assert data["config_general"]["model_config"]["temperature"] == 0.5
    assert data["config_tasks"]["np|0"]["num_samples"] == 3
    assert data["config_tasks"]["np|0"]["w"] == 0.25
    assert b'"4096"' not in text
    assert b'"3"' not in text

    (path,) = parquet_outputs(report["local"].outputs)
    table = pq.read_table(path)
    metric = table.schema.field("metric").type
    kinds = {metric.field(i).name: metric.field(i).type for i in range(metric.num_fields)}
    assert kinds == {"acc": pa.float64(), "f1": pa.float64(), "count": pa.int64(), "ok": pa.bool_()}
    assert table.to_pylist()[1] == {
        "doc": {"query": "q", "gold": 2},
        "metric": {"acc": 0.0, "f1": 0.25, "count": 5, "ok": False},
        "model_response": {"logprobs": [0.5, -1.0]},
    }


def test_results_file_loads_with_the_results_model(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=10, job_id="job-1")
    tasks = ["mmlu:anatomy|5", "mmlu:astronomy|5"]
    for task in tasks:
        tracker.versions_logger.log(task, 0)
        log_demo_samples(tracker, task, 10)
    report = tracker.save()

    text = _results_file(report["local"].outputs)
    model = EvaluationResults.model_validate_json(text)
    assert model.config_general.model_name == "org/model"
    assert model.config_general.job_id == "job-1"
    assert set(model.results) == {*tasks, "mmlu:_average|5", "all"}
    assert set(model.summary_tasks) == set(tasks)
    assert model.summary_tasks["mmlu:anatomy|5"].non_truncated == 10
    assert model.summary_general.non_truncated == 20
    assert model.versions == dict.fromkeys(tasks, 0)
    # the file is what the model dumps, and both agree with the tracker's view
    data = strict_json(text)
    assert data == json.loads(model.model_dump_json())
    assert data["results"] == tracker.results["results"]


@pytest.mark.parametrize("values", [[1.5e308, 1.5e308], [0.0, 2e154]], ids=["mean", "stderr"])
def test_large_metric_values_do_not_lose_the_run(
    make_tracker: Callable[..., EvaluationTracker], values: list[float]
) -> None:
    tracker = make_tracker()
    rows: list[tuple[Any, Any, dict[str, Any]]] = [({"q": i}, {}, {"ppl": v}) for i, v in enumerate(values)]
    log_raw(tracker, "big|0", rows)
    report = tracker.save()
    data = strict_json(_results_file(report["local"].outputs))
    assert "big|0" in data["results"]
    (path,) = parquet_outputs(report["local"].outputs)
    assert pq.read_table(path).num_rows == 2
