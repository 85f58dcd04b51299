"""The bad-input corpus of issue 8 (item 3), end to end: docs/bad-input.md lists every case.

Each case is logged through a real ``EvaluationTracker`` with the local sink and saved; then EVERY
file under the output folder is read back (:func:`check_every_file`): the results JSON parses
strictly (no NaN tokens) and validates as ``EvaluationResults``, each parquet file has a valid
footer, reads with pyarrow and pandas, has one row per logged sample, and nothing else is left
behind (no temporary file, no spool). The rows read back are compared with what was logged under
the documented mapping (:func:`documented`, written here independently of ``evalsink.jsonsafe``),
the results with means computed here, and every value that was not kept is reported. Or the call
that logs the value raises, naming the field, and nothing of that sample is kept.

The three large cases (10 MB string, 2,000 tasks, 200-deep dict read by 🤗 datasets) run the same
code in a child process (:func:`run_in_child`), so this process does not grow.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import hashlib
import math
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from local_helpers import COLUMNS, decoded_rows, drop_nulls, files_below, same, strict_json

from evalsink import EncodeError, EvaluationTracker, jsonsafe
from evalsink.models import EvaluationResults
from evalsink.paths import task_file_part
from evalsink.report import SaveReport
from evalsink.storage import OutputDir
from evalsink_local.parquet import MAX_NESTING, json_text_fields
from evalsink_local.reader import iter_details, saved_tasks

Sample = tuple[str, Any, Any, dict[Any, Any]]  # task, doc, model_response, metrics
ROW_GROUP = 3  # small, so that type changes and late fields cross row groups


class Color(enum.Enum):
    RED = "red"


# -- the documented mapping, written independently of evalsink.jsonsafe ----------------------------
def documented(value: Any) -> Any:
    """What docs/bad-input.md says a logged value becomes once written (before Parquet's own
    rules: keys missing in a sample read back as null)."""
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating, Decimal)):
        number = float(value)
        return number if math.isfinite(number) else None
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.ndarray):
        return documented(value.tolist())
    if isinstance(value, (set, frozenset)):
        try:
            return [documented(item) for item in sorted(value)]
        except TypeError:
            return [documented(item) for item in value]
    if isinstance(value, (list, tuple)):
        return [documented(item) for item in value]
    if isinstance(value, dict):
        return {documented_key(key): documented(item) for key, item in value.items()}
    raise AssertionError(f"no documented mapping for {type(value)}")


def documented_key(key: Any) -> str:
    if isinstance(key, str):
        return key
    if isinstance(key, bool):
        return "true" if key else "false"
    if key is None:
        return "null"
    if isinstance(key, enum.Enum):
        return str(key.value)
    if isinstance(key, dt.date):
        return key.isoformat()
    return str(key)


def is_number(value: Any) -> bool:
    """Values the mean takes (bools count, as in lighteval)."""
    return isinstance(value, (int, float, Decimal, np.integer, np.floating, np.bool_))


def logged_metrics(samples: Iterable[Sample]) -> dict[str, dict[str, list[Any]]]:
    """task -> metric name as written -> every value logged."""
    values: dict[str, dict[str, list[Any]]] = {}
    for task, _, _, metrics in samples:
        for name, value in metrics.items():
            values.setdefault(task, {}).setdefault(documented_key(name), []).append(value)
    return values


def numbers_of(samples: Iterable[Sample]) -> dict[str, dict[str, list[float]]]:
    return {
        task: {name: [float(v) for v in logged if is_number(v)] for name, logged in metrics.items()}
        for task, metrics in logged_metrics(samples).items()
    }


def expected_results(samples: list[Sample]) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, int]]]:
    """(task -> metric -> mean or None when not finite, task -> metric -> values left out)."""
    means: dict[str, dict[str, Any]] = {}
    skipped: dict[str, dict[str, int]] = {}
    numbers = numbers_of(samples)
    for task, metrics in logged_metrics(samples).items():
        means[task] = {}
        for name, logged in metrics.items():
            kept = numbers[task][name]
            if len(kept) < len(logged):
                skipped.setdefault(task, {})[name] = len(logged) - len(kept)
            if kept:
                mean = sum(kept) / len(kept)
                means[task][name] = mean if math.isfinite(mean) else None
    return means, skipped


def nonfinite(value: Any) -> int:
    """NaN and ±inf (float, numpy or Decimal, or a Decimal beyond the float range) inside ``value``."""
    if isinstance(value, (float, np.floating, Decimal)):
        return 0 if math.isfinite(float(value)) else 1
    if isinstance(value, np.ndarray):
        return nonfinite(value.tolist())
    if isinstance(value, dict):
        return sum(nonfinite(item) for item in value.values())
    if isinstance(value, (list, tuple, set, frozenset)):
        return sum(nonfinite(item) for item in value)
    return 0


def expected_rows(samples: Iterable[Sample], task: str) -> list[dict[str, Any]]:
    return [
        {"doc": documented(doc), "metric": documented(metrics), "model_response": documented(response)}
        for name, doc, response, metrics in samples
        if name == task
    ]


# -- logging and reading back -----------------------------------------------------------------------
@dataclasses.dataclass
class Saved:
    report: SaveReport
    results: dict[str, Any]
    rows: dict[str, list[dict[str, Any]]]  # task -> rows as evalsink_local's reader decodes them
    files: list[Path]


def log_samples(tracker: EvaluationTracker, samples: Iterable[Sample]) -> None:
    """As lighteval does: metrics, then details, per sample."""
    for task, doc, response, metrics in samples:
        tracker.metrics_logger.log(task, metrics)
        tracker.details_logger.log(task, doc, response, metrics)


def check_every_file(root: Path, report: SaveReport, *, with_pandas: bool = True) -> list[Path]:
    """Every file below ``root`` is an output the report lists, and valid."""
    files = files_below(root)
    assert report["local"].ok, str(report)
    assert {path.resolve() for path in files} == {Path(p).resolve() for p in report["local"].outputs}, (
        "files on disk that save() did not report (a temporary file, the spool...)"
    )
    for path in files:
        data = path.read_bytes()
        if path.suffix == ".json":
            strict_json(data)
            EvaluationResults.model_validate_json(data)
        elif path.suffix == ".parquet":
            assert data[:4] == data[-4:] == b"PAR1", path  # whole file: header and footer magic
            metadata = pq.read_metadata(path)
            table = pq.read_table(path)
            assert table.column_names == COLUMNS
            assert table.num_rows == metadata.num_rows
            if with_pandas:
                assert len(pd.read_parquet(path)) == table.num_rows
        else:
            raise AssertionError(f"unexpected file {path}")
    return files


def save_and_read(tracker: EvaluationTracker, root: Path, *, with_pandas: bool = True) -> Saved:
    """save(), check every file, and read the details back with evalsink_local's reader."""
    logged_tasks = tracker.details_logger.spool.tasks()
    report = tracker.save()
    files = check_every_file(root, report, with_pandas=with_pandas)
    [results_file] = [path for path in files if path.suffix == ".json"]
    results = strict_json(results_file.read_bytes())
    output = OutputDir(str(root))
    rows: dict[str, list[dict[str, Any]]] = {}
    if logged_tasks:
        _, by_part = saved_tasks(output, tracker.general_config_logger.model_name, report.date_id)
        assert len(by_part) == len(logged_tasks)
        for task in logged_tasks:
            path = by_part[task_file_part(task)]
            rows[task] = list(iter_details(output, path))
            assert rows[task] == decoded_rows(pq.read_table(path))  # the reader agrees with pyarrow
    return Saved(report=report, results=results, rows=rows, files=files)


def assert_rows(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """Row by row equality under Parquet's rules: a key missing in a sample reads back as null."""
    assert len(got) == len(want)
    for index, (row, expected) in enumerate(zip(got, want, strict=True)):
        assert same(drop_nulls(row), drop_nulls(expected)), (index, row, expected)


def assert_results(saved: Saved, samples: list[Sample]) -> None:
    """Each task's means as computed here (with a stderr beside each mean of several values);
    every value left out of a mean is reported."""
    means, skipped = expected_results(samples)
    counts = {
        task: {name: len(values) for name, values in m.items()} for task, m in numbers_of(samples).items()
    }
    for task, metrics in means.items():
        got = saved.results["results"][task]
        stderrs = {f"{name}_stderr" for name in metrics if counts[task][name] > 1}
        assert got.keys() == metrics.keys() | stderrs, (task, got, metrics)
        for name, mean in metrics.items():
            assert got[name] == (None if mean is None else pytest.approx(mean)), (task, name)
            if mean is None:
                assert f"results[{task!r}][{name!r}] is" in " ".join(saved.report.warnings)
    for task, left_out in skipped.items():
        for name, count in left_out.items():
            expected = (
                f"results[{task!r}][{name!r}]: {count} value(s) that are not single numbers "
                "left out of the mean"
            )
            assert expected in saved.report.warnings, saved.report.warnings


# -- the corpus: values with a documented mapping ----------------------------------------------------
NAN, INF = math.nan, math.inf
UTC = dt.timezone.utc


def nest(depth: int, leaf: Any = 1) -> Any:
    value = leaf
    for level in range(depth):
        value = {f"k{level % 3}": value}
    return value


def _type_changes() -> list[Sample]:
    metric_values: list[Any] = [1.0, 2, 0.5, "n/a", True, None, [1, 2], {"k": 1}, 3.0]
    return [
        (
            "types|0",
            {"query": f"q{i}", "x": i if i < 4 else f"text {i}"},
            {"text": ["a"]},
            {"m": v, "acc": 1.0},
        )
        for i, v in enumerate(metric_values)
    ]


def _late_fields() -> list[Sample]:
    samples: list[Sample] = []
    for i in range(10):
        doc: dict[str, Any] = {"query": f"q{i}", "specific": {"kind": "plain"}}
        metrics: dict[str, Any] = {"acc": float(i % 2)}
        if i >= 7:  # row group 3 of 4 onwards
            doc["late"] = {"nested": {"values": [i, i + 1]}, "label": f"late-{i}"}
            doc["specific"]["extra"] = [f"t{i}"]
            metrics["late_metric"] = i / 10
        samples.append(("late|0", doc, {"text": [f"answer {i}"]}, metrics))
    return samples


TEXT_A, ACC_1 = {"text": ["a"]}, {"acc": 1.0}
CASES: dict[str, list[Sample]] = {
    "nan-and-inf": [
        (
            "nan|0",
            {"q": "a", "score": NAN, "vals": [1.0, INF, -INF]},
            {"logprob": -INF},
            {"acc": NAN, "f1": 0.5},
        ),
        ("nan|0", {"q": "b", "score": 0.25, "vals": [0.0]}, {"logprob": -1.5}, {"acc": 1.0, "f1": INF}),
    ],
    "numpy-scalars-and-arrays": [
        (
            "np|0",
            {
                "f32": np.float32(0.5),
                "i64": np.int64(7),
                "u8": np.uint8(255),
                "flag": np.bool_(True),
                "arr": np.arange(3),
                "matrix": np.array([[1.0, np.nan], [2.5, 3.0]]),
                "strings": np.array(["x", "y"]),
            },
            {"logits": np.array([0.25, -0.5], dtype=np.float32)},
            {"acc": np.float64(0.75), "em": np.int64(1), "ok": np.bool_(False)},
        ),
        (
            "np|0",
            {
                "f32": np.float32(1.5),
                "i64": np.int64(-2),
                "u8": np.uint8(0),
                "flag": np.bool_(False),
                "arr": np.arange(2),
                "matrix": np.zeros((1, 2)),
                "strings": np.array([], dtype=str),
            },
            {"logits": np.array([1.0], dtype=np.float32)},
            {"acc": np.float64(0.25), "em": np.int64(0), "ok": np.bool_(True)},
        ),
    ],
    "decimal": [
        (
            "dec|0",
            {"price": Decimal("0.25"), "huge": Decimal("1e400"), "nan": Decimal("NaN")},
            {},
            {"acc": Decimal("0.5")},
        ),
        (
            "dec|0",
            {"price": Decimal("-3"), "huge": Decimal("1"), "nan": Decimal("2.5")},
            {},
            {"acc": Decimal("1")},
        ),
    ],
    "datetime": [
        (
            "dt|0",
            {
                "at": dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC),
                "naive": dt.datetime(2025, 1, 2, 3, 4, 5, 123456),
                "day": dt.date(2025, 1, 2),
                "clock": dt.time(3, 4),
            },
            {"text": ["a"]},
            {"acc": 1.0, "when": dt.datetime(2025, 1, 2, tzinfo=UTC)},
        )
    ],
    "sets": [
        (
            "sets|0",
            {
                "ints": {3, 1, 2},
                "strs": frozenset({"b", "a"}),
                "empty": set(),
                "pair": (1, "x"),
                "odd": {1, "a"},
            },
            {"text": ["a"]},
            {"acc": 1.0},
        )
    ],
    "non-str-keys": [
        (
            "keys|0",
            {
                "by_int": {1: "a", 2: "b"},
                "by_float": {2.5: "x"},
                "by_none": {None: "n"},
                "by_bool": {True: "t", False: "f"},
                "by_enum": {Color.RED: 1},
                "by_date": {dt.date(2025, 1, 2): 3},
            },
            {"text": ["a"]},
            {1: 0.5, "acc": 1.0},
        )
    ],
    "metric-names-with-separators": [
        (
            f"lighteval|mmlu:{subject}|5",
            {"query": subject},
            {"text": ["a"]},
            {"acc/norm": 1.0, "em:quasi": 0.5, "f1|macro": 0.25, "a/b:c|d": 0.0, "x.y": 1.0, "": 0.5},
        )
        for subject in ("anatomy", "astronomy")
    ],
    "metric-type-changes": _type_changes(),
    "doc-field-only-in-later-samples": _late_fields(),
    "200-deep-dict": [
        ("deep|0", {"query": "q", "deep": nest(200)}, {"text": ["a"]}, {"acc": 1.0}),
        ("deep|0", {"query": "q2"}, {"text": ["b"]}, {"acc": 0.0}),
    ],
    "bytes": [
        (
            "bin|0",
            {"query": "q", "image": b"\x89PNG\x00", "images": [bytearray(b"x"), b""]},
            {"text": ["a"]},
            {"acc": 1.0},
        ),
        ("bin|0", {"query": "q2", "image": None, "images": []}, {"text": ["b"]}, {"acc": b"\x00"}),
        ("bin|0", {"query": "q3", "image": memoryview(b"\xff" * 3)}, {"text": ["c"]}, {"acc": 0.0}),
        # bytes in one sample, text in the next: JSON text, the bytes as {"$evalsink.bytes": base64}
        ("mixed|0", {"query": "q", "blob": b"\x01\x02"}, {"text": ["a"]}, {"acc": 1.0}),
        ("mixed|0", {"query": "q", "blob": "text"}, {"text": ["a"]}, {"acc": 1.0}),
        ("mixed|0", {"query": "q", "blob": b"\x03"}, {"text": ["a"]}, {"acc": 1.0}),
        ("mixed|0", {"query": "q", "blob": [b"\x04"]}, {"text": ["a"]}, {"acc": 1.0}),
        # bytes and objects in one row group: Arrow would merge them into one struct
        ("objects|0", {"query": "q", "img": b"\x89PNG"}, {"text": ["a"]}, {"acc": 1.0}),
        ("objects|0", {"query": "q", "img": {"w": 3}}, {"text": ["a"]}, {"acc": 1.0}),
        ("objects|0", {"query": "q", "img": {}}, {"text": ["a"]}, {"acc": 1.0}),
        ("objects|0", {"query": "q", "img": None, "items": [b"\x01", {"a": 1}]}, TEXT_A, ACC_1),
        ("empty|0", {"query": "q", "img": b"\x00"}, {"text": ["a"]}, {"acc": 1.0}),
        ("empty|0", {"query": "q", "img": {}}, {"text": ["a"]}, {"acc": 1.0}),
        # the reserved key with text that is not base64: the caller's own object, kept whole
        ("reserved|0", {"query": "q", "blob": {"$evalsink.bytes": "not base64!"}}, TEXT_A, ACC_1),
        ("reserved|0", {"query": "q", "blob": {"$evalsink.bytes": "AA==", "other": 1}}, TEXT_A, ACC_1),
    ],
    "unicode-text": [
        (
            "uni|0",
            {"query": text, "键😀": text, "choices": [text, text[::-1]]},
            {"text": [text]},
            {"acc": 1.0},
        )
        for text in (
            "emoji 😀👩‍💻",
            "中文 한국어",
            "עברית RTL",
            "e\u0301",
            "nul\x00inside",
            "\u2028\ufeff\uffff",
        )
    ],
}


@pytest.mark.parametrize("case", list(CASES), ids=str)
def test_corpus_value_is_written_by_the_documented_mapping(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, case: str
) -> None:
    samples = CASES[case]
    tracker = make_tracker(sink_config={"local": {"row_group_size": ROW_GROUP}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_samples(tracker, samples)
    saved = save_and_read(tracker, tmp_path / "out")

    tasks = list(dict.fromkeys(task for task, *_ in samples))
    assert sorted(saved.rows) == sorted(tasks)
    for task in tasks:
        assert_rows(saved.rows[task], expected_rows(samples, task))
    assert_results(saved, samples)
    for task in tasks:
        count = sum(
            nonfinite([doc, response, metrics]) for name, doc, response, metrics in samples if name == task
        )
        if count:
            assert f"details of {task!r}: {count} NaN/inf value(s) written as null" in saved.report.warnings
        else:
            assert not any(warning.startswith(f"details of {task!r}: ") for warning in saved.report.warnings)
    # and each file with fields stored as JSON text is named, once
    named = [warning for warning in saved.report.warnings if "written as JSON text" in warning]
    with_json_text = [
        fields
        for fields in (
            json_text_fields(pq.read_schema(path)) for path in saved.files if path.suffix == ".parquet"
        )
        if fields
    ]
    assert len(named) == len(with_json_text), named
    for fields in with_json_text:
        assert any(f": {', '.join(fields)} written as JSON text" in warning for warning in named), named


def test_nan_and_inf_are_null_and_counted(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    """The raw file, not only the decoded rows: nulls where NaN and ±inf were, and six reported."""
    tracker = make_tracker(sink_config={"local": {"row_group_size": ROW_GROUP}})
    log_samples(tracker, CASES["nan-and-inf"])
    saved = save_and_read(tracker, tmp_path / "out")
    [path] = [p for p in saved.files if p.suffix == ".parquet"]
    first = pq.read_table(path).to_pylist()[0]
    assert first["doc"]["score"] is None
    assert first["doc"]["vals"] == [1.0, None, None]
    assert first["model_response"] == {"logprob": None}
    assert first["metric"] == {"acc": None, "f1": 0.5}
    assert saved.results["results"]["nan|0"]["acc"] is None
    assert saved.results["results"]["nan|0"]["f1"] is None
    assert "details of 'nan|0': 6 NaN/inf value(s) written as null" in saved.report.warnings


def test_decimal_metrics_are_averaged_and_decimal_nan_is_counted(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    """Regression: a Decimal metric was left out of the mean, and a Decimal NaN or one beyond the
    float range was written as null without being reported."""
    tracker = make_tracker()
    log_samples(tracker, CASES["decimal"])
    saved = save_and_read(tracker, tmp_path / "out")
    assert saved.results["results"]["dec|0"]["acc"] == pytest.approx(0.75)
    assert "details of 'dec|0': 2 NaN/inf value(s) written as null" in saved.report.warnings
    assert not any("not single numbers" in warning for warning in saved.report.warnings)


def deep_dict_case(out: Path) -> None:
    """A 200-deep dict in the details, read back by pyarrow, pandas, evalsink_local and 🤗 datasets
    (offline, its cache below ``out``); a 100-level model config in the results."""
    import os

    os.environ.update(
        HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1", HF_DATASETS_CACHE=str(out.parent / "hf-cache")
    )
    from datasets import disable_progress_bars, load_dataset

    disable_progress_bars()
    tracker = EvaluationTracker(out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_config={"model_name": "org/model", "deep": nest(99)})
    log_samples(tracker, CASES["200-deep-dict"])
    saved = save_and_read(tracker, out)
    [path] = [p for p in saved.files if p.suffix == ".parquet"]

    deep = pq.read_schema(path).field("doc").type.field("deep")
    for _ in range(MAX_NESTING - 1):
        assert pa.types.is_struct(deep.type), deep
        deep = deep.type.field(0)
    assert deep.type == pa.string()
    assert deep.metadata == {b"evalsink.encoding": b"json"}
    assert saved.rows["deep|0"][0]["doc"]["deep"] == nest(200)
    assert decoded_rows(pq.read_table(path))[0]["doc"]["deep"] == nest(200)
    dataset = load_dataset(
        "parquet", data_files=str(path), split="train", cache_dir=str(out.parent / "hf-cache")
    )
    assert dataset.num_rows == 2
    assert dataset[0]["doc"]["query"] == "q"
    # a configuration as deep as allowed (100 levels) is written, and validates (check_every_file)
    assert saved.results["config_general"]["model_config"]["deep"] == nest(99)


def test_200_deep_dict_stays_readable_and_whole(tmp_path: Path) -> None:
    """Regression: a 200-deep struct was written, but no Parquet reader could open the file
    ("Parquet schema too deeply nested"). From MAX_NESTING levels down the value is JSON text.
    (In a child process: see :func:`run_in_child`.)"""
    run_in_child(deep_dict_case, tmp_path / "out")


@pytest.mark.parametrize(
    ("log", "where"),
    [
        (
            lambda t: t.general_config_logger.log_model_info(model_config={"deep": nest(200)}),
            r"model_config\.deep",
        ),
        (
            lambda t: t.general_config_logger.log_model_info(
                model_name="m", generation_parameters=[nest(100)]
            ),
            r"generation_parameters\[0\]",
        ),
        (lambda t: t.task_config_logger.log({"t|0": {"x": nest(150)}}), r"config_tasks\['t\|0'\]\.x"),
    ],
    ids=["model_config", "generation_parameters", "task_config"],
)
def test_a_config_nested_deeper_than_100_levels_is_refused_when_logged(
    make_tracker: Callable[..., EvaluationTracker], log: Callable[[EvaluationTracker], None], where: str
) -> None:
    """Regression: a 200-deep model config was written to a results file that
    ``EvaluationResults.model_validate_json`` (pydantic: 200 levels at most) could not read."""
    tracker = make_tracker()
    with pytest.raises(EncodeError, match=rf"cannot encode {where}(\.k\d)+ as JSON: more than 100 levels"):
        log(tracker)
    assert tracker.general_config_logger.model_config is None
    assert tracker.general_config_logger.generation_parameters is None
    assert tracker.task_config_logger.tasks_configs == {}


def test_a_deep_list_is_cut_too(make_tracker: Callable[..., EvaluationTracker], tmp_path: Path) -> None:
    """Lists cost two Parquet levels each: 60 nested lists are as unreadable as 100 structs were."""
    value: Any = [1]
    for _ in range(60):
        value = [value]
    tracker = make_tracker()
    log_samples(tracker, [("lists|0", {"nested": value}, {}, {"acc": 1.0})])
    saved = save_and_read(tracker, tmp_path / "out")
    assert saved.rows["lists|0"][0]["doc"]["nested"] == value


def ten_mb_case(out: Path) -> None:
    """A 10 MiB string (12 MB of UTF-8) in ``doc`` and, reversed, in ``model_response``."""
    big = ("0123456789abcdef€" * (10 * 2**20 // 17 + 1))[: 10 * 2**20]
    assert len(big.encode()) > 10 * 2**20
    tracker = EvaluationTracker(out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    samples: list[Sample] = [
        ("big|0", {"query": big, "n": 1}, {"text": [big[::-1]]}, {"acc": 1.0}),
        ("big|0", {"query": "small", "n": 2}, {"text": ["x"]}, {"acc": 0.0}),
    ]
    log_samples(tracker, samples)
    saved = save_and_read(tracker, out, with_pandas=False)
    [row, small] = saved.rows["big|0"]
    assert hashlib.sha256(row["doc"]["query"].encode()).digest() == hashlib.sha256(big.encode()).digest()
    assert row["model_response"]["text"] == [big[::-1]]
    assert small["doc"] == {"query": "small", "n": 2}
    assert saved.results["results"]["big|0"]["acc"] == 0.5


def run_in_child(case: Callable[[Path], None], out: Path) -> None:
    """Run one of the large cases in a child process, so this one does not grow.

    A process that this pytest process starts later reports this one's peak memory as its own
    (``ru_maxrss`` survives ``exec``): test_local_memory.py's child would then measure these
    cases rather than itself.
    """
    code = "\n".join(
        [
            "import sys",
            "from pathlib import Path",
            f"sys.path.insert(0, {str(Path(__file__).parent)!r})",
            f"from test_bad_input_corpus import {case.__name__}",
            f"{case.__name__}(Path(sys.argv[1]))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr


def test_10_mb_string(tmp_path: Path) -> None:
    run_in_child(ten_mb_case, tmp_path / "out")


def two_thousand_tasks_case(out: Path) -> None:
    """2,000 tasks of two samples each, in one suite group."""
    tasks = [f"bench|group:sub{i:04d}|0" for i in range(2000)]
    samples: list[Sample] = [
        (task, {"query": f"{task} #{j}"}, {"text": [str(j)]}, {"acc": float((i + j) % 2)})
        for i, task in enumerate(tasks)
        for j in range(2)
    ]
    tracker = EvaluationTracker(out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_samples(tracker, samples)
    saved = save_and_read(tracker, out, with_pandas=False)

    assert len([p for p in saved.files if p.suffix == ".parquet"]) == 2000
    assert sorted(saved.rows) == tasks
    for task in tasks:
        assert_rows(saved.rows[task], expected_rows(samples, task))
    assert set(saved.results["results"]) == {*tasks, "bench|group:_average|0", "all"}
    assert saved.results["results"]["bench|group:_average|0"]["acc"] == pytest.approx(0.5)
    assert set(saved.results["summary_tasks"]) == set(tasks)


def test_2000_tasks(tmp_path: Path) -> None:
    run_in_child(two_thousand_tasks_case, tmp_path / "out")


@pytest.mark.parametrize("with_config", [False, True], ids=["nothing-logged", "config-only"])
def test_empty_run(make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, with_config: bool) -> None:
    tracker = make_tracker()
    if with_config:
        tracker.general_config_logger.log_model_info(model_name="org/model")
        tracker.task_config_logger.log({"custom|t|0": {"name": "t"}})
    saved = save_and_read(tracker, tmp_path / "out")
    assert [path.suffix for path in saved.files] == [".json"]  # a results file, no details
    assert saved.results["results"] == {"all": {}}
    assert saved.results["summary_tasks"] == {}
    assert saved.report.warnings == []
    model_folder = "org/model" if with_config else "unknown-model"
    assert saved.files[0].parent == tmp_path / "out" / "results" / model_folder


# -- names: model and task names with '..', '/', NUL, or empty ---------------------------------------
MODEL_NAMES = ["../../evil", "org/../x", "a/b/c", "x\x00y", "..", "/abs/model", "", None]
TASK_NAMES = ["..", ".", "../x|0", "a/b|0", "x\x00y|0", "a\\b|0", "%2F|0"]


@pytest.mark.parametrize("model_name", MODEL_NAMES, ids=repr)
def test_hostile_model_and_task_names(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, model_name: str | None
) -> None:
    out = tmp_path / "a" / "b" / "out"
    tracker = make_tracker(output_dir=out)
    tracker.general_config_logger.log_model_info(model_name=model_name)
    samples: list[Sample] = [
        (task, {"query": f"{task}#{i}"}, {"text": ["x"]}, {"acc": float(i)})
        for task in TASK_NAMES
        for i in range(2)
    ]
    log_samples(tracker, samples)
    saved = save_and_read(tracker, out)

    assert all(path.resolve().is_relative_to(out.resolve()) for path in files_below(tmp_path))
    assert sorted(saved.rows) == sorted(TASK_NAMES)  # one file per name, mapped back to the name
    for task in TASK_NAMES:
        assert_rows(saved.rows[task], expected_rows(samples, task))
    assert saved.results["config_general"]["model_name"] == model_name
    assert set(TASK_NAMES) <= set(saved.results["results"])


def test_empty_task_name_is_refused_by_both_loggers(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker()
    with pytest.raises(ValueError, match="task_name is empty"):
        tracker.metrics_logger.log("", {"acc": 1.0})
    with pytest.raises(ValueError, match="task_name is empty"):
        tracker.details_logger.log("", {"query": "q"}, {}, {"acc": 1.0})
    log_samples(tracker, [("kept|0", {"query": "q"}, {}, {"acc": 1.0})])
    saved = save_and_read(tracker, tmp_path / "out")
    assert set(saved.results["results"]) == {"kept|0", "all"}
    assert list(saved.rows) == ["kept|0"]


# -- the corpus: values refused when logged, naming the field -----------------------------------------
def _refuse_model_name(tracker: EvaluationTracker) -> None:
    tracker.general_config_logger.log_model_info(model_name="org/m\ud800")


def _details(doc: Any, metrics: dict[Any, Any] | None = None, task: str = "bad|0") -> Callable[..., None]:
    def log(tracker: EvaluationTracker) -> None:
        tracker.details_logger.log(
            task, doc, {"text": ["a"]}, metrics if metrics is not None else {"acc": 1.0}
        )

    return log


def _metrics(metrics: dict[Any, Any], task: str = "bad|0") -> Callable[..., None]:
    def log(tracker: EvaluationTracker) -> None:
        tracker.metrics_logger.log(task, metrics)

    return log


REFUSED: dict[str, tuple[Callable[[EvaluationTracker], None], str]] = {
    "lone-surrogate-value": (
        _details({"text": "a\ud800b"}),
        r"cannot encode doc\.text as JSON: .*surrogates",
    ),
    "lone-surrogate-key": (_details({"k\udfff": 1}), r"cannot encode doc as JSON: key 'k\\udfff'"),
    "lone-surrogate-metric-name-details": (
        _details({"query": "q"}, {"acc\ud800": 1.0}),
        r"cannot encode metric as JSON: key 'acc\\ud800'",
    ),
    "lone-surrogate-metric-name": (
        _metrics({"acc\ud800": 1.0}),
        r"cannot encode the metric names of task 'bad\|0' as JSON: metric name 'acc\\ud800'",
    ),
    "lone-surrogate-task-name-details": (
        _details({"query": "q"}, task="t\ud800|0"),
        r"cannot encode task_name as JSON: .*surrogates",
    ),
    "lone-surrogate-task-name-metrics": (
        _metrics({"acc": 1.0}, task="t\ud800|0"),
        r"cannot encode task_name as JSON: .*surrogates",
    ),
    "lone-surrogate-model-name": (_refuse_model_name, r"cannot encode model_name as JSON: .*surrogates"),
    "colliding-keys": (
        _details({"query": "q", "by_id": {1: "a", "1": "b"}}),
        r"cannot encode doc\.by_id as JSON: keys 1 and '1' would both be written as the JSON key '1'",
    ),
    "colliding-keys-none": (
        _details({"query": "q", "labels": [{None: "a", "null": "b"}]}),
        r"cannot encode doc\.labels\[0\] as JSON: keys None and 'null' would both",
    ),
    "colliding-metric-names": (
        _metrics({True: 1.0, "true": 0.0}),
        r"cannot encode the metric names of task 'bad\|0' as JSON: keys True and 'true' would both",
    ),
    "tuple-key": (
        _details({"pairs": {(1, 2): "x"}}),
        r"cannot encode doc\.pairs as JSON: key \(1, 2\) of type tuple",
    ),
    "300-deep-dict": (
        _details({"deep": nest(300)}),
        r"cannot encode doc\.deep(\.k\d)+ as JSON: Recursion limit",
    ),
    "int-beyond-64-bits": (_details({"id": 2**64}), r"cannot encode doc\.id as JSON"),
    "object": (_details({"query": "q", "obj": object()}), r"cannot encode doc\.obj as JSON: .*object"),
}


@pytest.mark.parametrize("case", list(REFUSED), ids=str)
def test_corpus_value_is_refused_naming_the_field(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, case: str
) -> None:
    call, message = REFUSED[case]
    tracker = make_tracker()
    good: list[Sample] = [("good|0", {"query": "fine"}, {"text": ["a"]}, {"acc": 1.0})]
    log_samples(tracker, good)
    with pytest.raises(EncodeError, match=message):
        call(tracker)
    # nothing of the refused call was kept; the run goes on and saves valid files
    assert tracker.details_logger.spool.tasks() == ["good|0"]
    assert len(tracker.details_logger.spool) == 1
    assert tracker.metrics_logger.metrics_values == {"good|0": {"acc": [1.0]}}
    log_samples(tracker, [("good|0", {"query": "fine too"}, {"text": ["b"]}, {"acc": 0.0})])
    saved = save_and_read(tracker, tmp_path / "out")
    assert [row["doc"]["query"] for row in saved.rows["good|0"]] == ["fine", "fine too"]
    assert set(saved.results["results"]) == {"good|0", "all"}
    assert saved.results["results"]["good|0"]["acc"] == 0.5
    assert saved.results["config_general"]["model_name"] is None


# -- focused regressions of the fixes this corpus led to -------------------------------------------------
@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({1: "a", "1": "b"}, ""),
        ({"doc": {"x": [{True: 1, "true": 2}]}}, "doc.x[0]"),
        ({"m": {Color.RED: 1, "red": 2}}, "m"),
        ({"d": {dt.date(2025, 1, 2): 1, "2025-01-02": 2}}, "d"),
        ({"n": {math.nan: 1, math.inf: 2}}, "n"),
    ],
    ids=["int-str", "bool-str-nested", "enum-value", "date-iso", "nan-inf"],
)
def test_keys_that_become_the_same_json_key_are_refused(value: Any, where: str) -> None:
    """Regression: both were written (duplicate JSON keys), and a reader silently kept one."""
    with pytest.raises(
        EncodeError, match=rf"cannot encode {re.escape(where or 'the value')} as JSON: keys .* would both"
    ):
        jsonsafe.dumps(value)
    assert jsonsafe.find_key_clash(value) is not None


def test_distinct_non_str_keys_still_encode() -> None:
    value = {"doc": {1: "a", 2.5: "b", None: "c", False: "d", Color.RED: "e", "x": {1: 2}}}
    assert jsonsafe.to_jsonable(value) == {
        "doc": {"1": "a", "2.5": "b", "null": "c", "false": "d", "red": "e", "x": {"1": 2}}
    }
    assert jsonsafe.find_key_clash(value) is None


def test_metric_names_that_are_not_strings_are_named_as_in_the_details(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    """``True`` is ``"true"`` in the results as in the parquet file (it was ``"True"`` there)."""
    tracker = make_tracker()
    log_samples(tracker, [("t|0", {"query": "q"}, {}, {True: 1.0, 7: 0.5, Color.RED: 0.25, "准确率": 1.0})])
    saved = save_and_read(tracker, tmp_path / "out")
    assert saved.results["results"]["t|0"] == {"true": 1.0, "7": 0.5, "red": 0.25, "准确率": 1.0}
    assert saved.rows["t|0"][0]["metric"] == saved.results["results"]["t|0"]


def test_a_version_that_cannot_be_written_is_refused_when_logged(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    tracker = make_tracker()
    with pytest.raises(EncodeError, match=r"cannot encode \['t\|0'\] as JSON"):
        tracker.versions_logger.log("t|0", object())
    assert tracker.versions_logger.versions == {}


# -- properties ----------------------------------------------------------------------------------------
# Keys collide often (a small set, with separators and non-ASCII). Numbers are ints within ±2**53
# plus, per example, either floats (NaN and ±inf included, as float, numpy or Decimal) or bools
# (Python or numpy), never both: bools beside numbers deeper than the first level are stored as
# 1.0/0.0 (a documented limitation, docs/sinks/local.md). Text is any Unicode without surrogates.
_KEYS = st.sampled_from(["a", "b", "", "d.e", "a/b", "c:d|e", "键", "x y"])
_TEXT = st.text(max_size=8)
_FLOATS = st.one_of(
    st.floats(-1e100, 1e100),
    st.sampled_from([math.nan, math.inf, -math.inf]),
    st.floats(-1e6, 1e6, allow_nan=False).map(np.float64),
    st.sampled_from([Decimal("0.5"), Decimal("-2.25"), Decimal("NaN"), Decimal("1e400")]),
)
_BOOLS = st.booleans() | st.booleans().map(np.bool_)
_WHEN = st.datetimes(min_value=dt.datetime(1970, 1, 2), max_value=dt.datetime(2100, 1, 1))


def _samples(numbers: st.SearchStrategy[Any]) -> st.SearchStrategy[list[Sample]]:
    scalars = (
        st.none() | st.integers(-(2**53), 2**53) | st.integers(-5, 5).map(np.int64) | numbers | _TEXT | _WHEN
    )
    values = st.recursive(
        scalars
        | st.lists(scalars, max_size=3)
        | st.tuples(scalars, scalars)
        | st.frozensets(st.integers(0, 9), max_size=3),
        lambda children: st.dictionaries(_KEYS, children, max_size=3) | st.lists(children, max_size=2),
        max_leaves=8,
    )
    sample = st.tuples(
        st.sampled_from(["p|0", "p:q|0", "r|1"]),
        st.dictionaries(_KEYS, values, max_size=4),
        values,
        st.dictionaries(_KEYS, scalars, max_size=3),
    )
    return st.lists(sample, min_size=1, max_size=10)


_SAMPLES = st.sampled_from([_FLOATS, _BOOLS]).flatmap(_samples)


@pytest.fixture(scope="module")
def shared_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Below it, one output folder per example."""
    return tmp_path_factory.mktemp("corpus-property")


_counter = iter(range(10**9))


def _fresh(root: Path) -> Path:
    return root / f"example-{next(_counter)}"


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(samples=_SAMPLES, row_group_size=st.integers(1, 4))
def test_any_json_like_samples_round_trip(
    shared_output: Path, samples: list[Sample], row_group_size: int
) -> None:
    out = _fresh(shared_output)
    tracker = EvaluationTracker(
        out, sinks=["local"], sink_config={"local": {"row_group_size": row_group_size}}
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_samples(tracker, samples)
    saved = save_and_read(tracker, out, with_pandas=False)
    for task in dict.fromkeys(task for task, *_ in samples):
        assert_rows(saved.rows[task], expected_rows(samples, task))
    assert_results(saved, samples)


_NAME = st.text(min_size=1, max_size=20)


@settings(
    max_examples=40,
    deadline=None,
    database=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(
    model=st.none() | st.text(max_size=20),
    tasks=st.lists(_NAME, min_size=1, max_size=4, unique=True),
    metrics=st.lists(st.text(max_size=10), min_size=1, max_size=4, unique=True),
    value=st.text(max_size=30),
)
def test_any_text_in_names_and_values_round_trips(
    shared_output: Path, model: str | None, tasks: list[str], metrics: list[str], value: str
) -> None:
    out = _fresh(shared_output)
    tracker = EvaluationTracker(out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name=model)
    samples: list[Sample] = [
        (task, {value or "empty": value, "query": task}, {"text": [value]}, dict.fromkeys(metrics, 0.5))
        for task in tasks
    ]
    log_samples(tracker, samples)
    saved = save_and_read(tracker, out, with_pandas=False)
    assert all(path.resolve().is_relative_to(out.resolve()) for path in saved.files)
    assert saved.results["config_general"]["model_name"] == model
    assert sorted(saved.rows) == sorted(tasks)
    for task in tasks:
        assert saved.results["results"][task] == dict.fromkeys(metrics, 0.5)
        assert_rows(saved.rows[task], expected_rows(samples, task))


@settings(max_examples=50, deadline=None, database=None, derandomize=True)
@given(
    before=st.text(max_size=5),
    after=st.text(max_size=5),
    surrogate=st.integers(0xD800, 0xDFFF).map(chr),
    path=st.lists(st.sampled_from(["a", "b", "c"]), min_size=1, max_size=3),
)
def test_any_lone_surrogate_is_refused_naming_its_field(
    shared_output: Path, before: str, after: str, surrogate: str, path: list[str]
) -> None:
    tracker = EvaluationTracker(_fresh(shared_output), sinks=["local"])
    doc: Any = before + surrogate + after
    for key in reversed(path):
        doc = {key: doc}
    with pytest.raises(EncodeError, match=r"cannot encode doc\." + r"\.".join(path) + " as JSON"):
        tracker.details_logger.log("t|0", doc, {}, {"acc": 1.0})
    assert len(tracker.details_logger.spool) == 0
