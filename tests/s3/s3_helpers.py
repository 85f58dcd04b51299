"""Helpers of the S3 tests: logging samples, reading files back, checking that no object is partial."""

from __future__ import annotations

import dataclasses
import io
import json
import random
import secrets
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from evalsink import EvaluationTracker
from evalsink.demo import make_sample

# config_general values that differ between two saves of the same samples
CLOCK_KEYS = {"start_time", "end_time", "total_evaluation_time_secondes"}


def log_demo_samples(tracker: EvaluationTracker, task_name: str, count: int) -> list[dict[str, Any]]:
    """Log ``count`` lighteval-shaped samples (the same for the same task name); return the parquet rows."""
    rng = random.Random(task_name)
    expected = []
    for index in range(count):
        doc, response, metrics = make_sample(rng, f"suite|{task_name}", "multiple_choice", index, 0.6)
        tracker.metrics_logger.log(task_name, metrics)
        tracker.details_logger.log(task_name, doc, response, metrics)
        expected.append(
            {
                "doc": dataclasses.asdict(doc),
                "metric": dict(metrics),
                "model_response": dataclasses.asdict(response),
            }
        )
    return expected


def log_bulky_samples(tracker: EvaluationTracker, task_name: str, count: int, text_bytes: int) -> None:
    """Samples whose text does not compress (random hex), so the parquet file is about count x text_bytes."""
    for index in range(count):
        text = secrets.token_hex(text_bytes // 2)
        doc = {"query": f"q{index}", "choices": ["A", "B"], "gold_index": 0}
        tracker.details_logger.log(task_name, doc, {"input": f"prompt {index}", "text": [text]}, {"acc": 1.0})
        tracker.metrics_logger.log(task_name, {"acc": 1.0})


def no_constants(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token!r}")


def strict_json(data: bytes | str) -> Any:
    """Parse as RFC 8259 JSON: NaN, Infinity and -Infinity tokens are an error."""
    return json.loads(data, parse_constant=no_constants)


def read_table(data: bytes) -> pa.Table:
    """A parquet file's table; raises unless the file is whole (magic at both ends, footer, pages)."""
    assert data[:4] == b"PAR1", "no parquet magic at the start"
    assert data[-4:] == b"PAR1", "no parquet magic at the end: the footer is missing"
    return pq.read_table(io.BytesIO(data))


def check_whole(key: str, data: bytes) -> None:
    """Every object evalsink writes is a parquet or JSON file that reads back entirely."""
    if key.endswith(".parquet"):
        read_table(data)
    elif key.endswith(".json"):
        strict_json(data)
    else:
        raise AssertionError(f"unexpected object {key!r}")


def without_clock(results: dict[str, Any]) -> dict[str, Any]:
    """The results dict without the values that depend on when it was saved."""
    general = {key: value for key, value in results["config_general"].items() if key not in CLOCK_KEYS}
    return {**results, "config_general": general}
