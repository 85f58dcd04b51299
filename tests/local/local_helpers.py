"""Helpers of the local-sink tests: logging samples, walking outputs, reading parquet back faithfully."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import random
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pyarrow as pa

from evalsink import EvaluationTracker
from evalsink.demo import make_sample

JSON_ENCODING = (b"evalsink.encoding", b"json")
DATE_ID = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d{6})?$")
COLUMNS = ["doc", "metric", "model_response"]


def log_demo_samples(
    tracker: EvaluationTracker, task_name: str, count: int, *, seed: int = 0, kind: str = "multiple_choice"
) -> list[dict[str, Any]]:
    """Log ``count`` lighteval-shaped samples; return the rows the parquet file must hold, in order."""
    rng = random.Random(f"{seed}-{task_name}")
    expected = []
    for index in range(count):
        doc, response, metrics = make_sample(rng, f"suite|{task_name}", kind, index, 0.6)
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


def log_raw(
    tracker: EvaluationTracker, task_name: str, rows: Iterable[tuple[Any, Any, dict[str, Any]]]
) -> None:
    """Log (doc, model_response, metrics) triples as they are."""
    for doc, response, metrics in rows:
        tracker.details_logger.log(task_name, doc, response, metrics)
        tracker.metrics_logger.log(task_name, metrics)


def no_constants(token: str) -> Any:
    raise ValueError(f"non-standard JSON constant {token!r}")


def strict_json(data: bytes | str) -> Any:
    """Parse as RFC 8259 JSON: NaN, Infinity and -Infinity tokens are an error."""
    return json.loads(data, parse_constant=no_constants)


def is_json_field(field: pa.Field) -> bool:
    return bool(field.metadata) and field.metadata.get(JSON_ENCODING[0]) == JSON_ENCODING[1]


def bytes_object(value: dict[str, Any]) -> Any:
    """Bytes inside JSON text are written as {"$evalsink.bytes": "<base64>"} (docs/bad-input.md);
    such an object whose text is not base64 was the caller's own, and stays as it is."""
    if list(value) == ["$evalsink.bytes"] and isinstance(value["$evalsink.bytes"], str):
        try:
            return base64.b64decode(value["$evalsink.bytes"], validate=True)
        except ValueError:
            return value
    return value


def decode(value: Any, field: pa.Field) -> Any:
    """Undo the sink's JSON-text encoding of one value, guided by the field metadata of the file."""
    if value is None:
        return None
    kind = field.type
    if is_json_field(field) and (pa.types.is_string(kind) or pa.types.is_large_string(kind)):
        return json.loads(value, object_hook=bytes_object)
    if pa.types.is_struct(kind):
        return {
            kind.field(i).name: decode(value.get(kind.field(i).name), kind.field(i))
            for i in range(kind.num_fields)
        }
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [decode(item, kind.value_field) for item in value]
    return value


def decoded_rows(table: pa.Table) -> list[dict[str, Any]]:
    schema = table.schema
    return [{name: decode(row[name], schema.field(name)) for name in row} for row in table.to_pylist()]


def drop_nulls(value: Any) -> Any:
    """Dicts without their None-valued keys, recursively: a key missing in a sample reads back as null."""
    if isinstance(value, dict):
        return {key: drop_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [drop_nulls(item) for item in value]
    return value


def same(left: Any, right: Any) -> bool:
    """Equality that allows an int read back as the equal float, but never a bool for a number."""
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    if isinstance(left, (int, float)) and isinstance(right, (int, float)):
        return left == right
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same(left[key], right[key]) for key in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def plain(value: Any) -> Any:
    """pandas' cells as plain Python: numpy arrays -> lists, numpy scalars -> Python scalars."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if type(value).__module__ == "numpy":
        return plain(value.tolist())
    return value


def files_below(root: Path) -> list[Path]:
    """Every regular file below ``root`` (hidden ones included)."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


def parquet_outputs(report_outputs: Iterable[str]) -> list[str]:
    return [path for path in report_outputs if path.endswith(".parquet")]


def json_outputs(report_outputs: Iterable[str]) -> list[str]:
    return [path for path in report_outputs if path.endswith(".json")]
