"""Hostile model and task names never write outside output_dir, and distinct names stay distinct."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from local_helpers import files_below, json_outputs, parquet_outputs, strict_json

from evalsink import EvaluationTracker

MODEL_NAMES = [
    "../../evil",
    "/abs/path",
    "a\\b",
    "x\x00y",
    "",
    None,
    "..",
    "org/..",
    "./x",
    "../../../../../tmp",
]
TASK_NAMES = ["../../x|0", "a/b|0", "a%2Fb|0", "..", ".", "x\x00y|0", "a\\b|0", "/etc/passwd|0", "ok:task|5"]


def _snapshot(folder: Path) -> set[str]:
    return {entry.name for entry in folder.iterdir()}


@pytest.mark.parametrize("model_name", MODEL_NAMES, ids=repr)
def test_hostile_names_stay_inside_output_dir(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, model_name: str | None
) -> None:
    out = tmp_path / "a" / "b" / "out"  # deep, so '..' escapes would land inside tmp_path and be seen
    above = {folder: _snapshot(folder) for folder in (tmp_path.parent, tmp_path.parent.parent)}
    tracker = make_tracker(output_dir=out)
    tracker.general_config_logger.log_model_info(model_name=model_name)
    for task in TASK_NAMES:
        for i in range(3):
            tracker.details_logger.log(task, {"query": f"{task}#{i}"}, {"text": ["x"]}, {"acc": 1.0})
            tracker.metrics_logger.log(task, {"acc": 1.0})
    report = tracker.save()
    assert report["local"].ok, report

    root = out.resolve()
    outputs = report["local"].outputs
    for path in outputs:
        assert Path(path).resolve().is_relative_to(root), path
    # nothing at all was created outside output_dir, below tmp_path or above it
    assert all(path.resolve().is_relative_to(root) for path in files_below(tmp_path))
    assert {p.relative_to(tmp_path).parts[0] for p in tmp_path.rglob("*")} == {"a"}
    for folder, before in above.items():
        assert _snapshot(folder) - before <= {tmp_path.name}, folder

    # one file per distinct task name, each holding that task's rows only
    parquets = parquet_outputs(outputs)
    assert len(parquets) == len(set(parquets)) == len(TASK_NAMES)
    queries = {
        tuple(row["query"] for row in pq.read_table(path).column("doc").to_pylist()) for path in parquets
    }
    assert queries == {tuple(f"{task}#{i}" for i in range(3)) for task in TASK_NAMES}
    (results,) = json_outputs(outputs)
    data = strict_json(Path(results).read_bytes())
    assert set(TASK_NAMES) <= set(data["results"])
    assert data["config_general"]["model_name"] == model_name


def test_distinct_model_names_get_distinct_folders(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    names = [
        "../../evil",
        "%2E%2E/%2E%2E/evil",
        "a\\b",
        "a%5Cb",
        "x\x00y",
        "x%00y",
        "..",
        "%2E%2E",
        "org/model",
    ]
    folders = {}
    for name in names:
        tracker = make_tracker()
        tracker.general_config_logger.log_model_info(model_name=name)
        tracker.details_logger.log("t|0", {"query": name}, {}, {"acc": 1.0})
        report = tracker.save()
        (results,) = json_outputs(report["local"].outputs)
        folders[name] = Path(results)
    assert len({path.parent for path in folders.values()}) == len(names), folders
    for name, path in folders.items():
        assert path.resolve().is_relative_to((tmp_path / "out" / "results").resolve())
        assert strict_json(path.read_bytes())["config_general"]["model_name"] == name


def test_empty_and_missing_model_names_share_the_unknown_model_folder(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    for name in ("", None):
        tracker = make_tracker()
        tracker.general_config_logger.log_model_info(model_name=name)
        tracker.details_logger.log("t|0", {"query": "q"}, {}, {"acc": 1.0})
        tracker.save()
    assert len(list((tmp_path / "out" / "results" / "unknown-model").iterdir())) == 2


def test_empty_task_name_is_refused_when_logged(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker()
    with pytest.raises(ValueError, match="task_name is empty"):
        tracker.details_logger.log("", {"query": "q"}, {}, {"acc": 1.0})
    tracker.details_logger.log("kept|0", {"query": "q"}, {}, {"acc": 1.0})
    report = tracker.save()
    assert [Path(p).name.split("_")[1] for p in parquet_outputs(report["local"].outputs)] == ["kept|0"]


def test_very_long_task_name_is_saved(make_tracker: Callable[..., EvaluationTracker], tmp_path: Path) -> None:
    long_task = "custom|" + "x" * 300 + "|0"
    tracker = make_tracker()
    tracker.details_logger.log(long_task, {"query": "q"}, {}, {"acc": 1.0})
    report = tracker.save()
    (path,) = parquet_outputs(report["local"].outputs)
    assert Path(path).resolve().is_relative_to((tmp_path / "out").resolve())
    assert pq.read_table(path).num_rows == 1


def test_very_long_model_name_is_saved(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/" + "m" * 400)
    tracker.details_logger.log("t|0", {"query": "q"}, {}, {"acc": 1.0})
    report = tracker.save()
    assert report["local"].ok
    for path in report["local"].outputs:
        assert Path(path).resolve().is_relative_to((tmp_path / "out").resolve())
        assert all(len(part.encode()) <= 255 for part in Path(path).parts)
