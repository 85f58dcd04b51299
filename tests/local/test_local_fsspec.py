"""fsspec output folders: ``memory://`` (an object-store stand-in) and ``file://`` URLs."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import fsspec
import pyarrow.parquet as pq
import pytest
from local_helpers import COLUMNS, files_below, log_demo_samples, strict_json

import evalsink_local.parquet
from evalsink import EvaluationTracker, SinkFailedError
from evalsink.models import EvaluationResults

URL = "memory://evalsink-test/run"
TASKS = ["mmlu:anatomy|5", "lighteval|gsm8k|0"]


def _read_parquet(url: str) -> Any:
    with fsspec.open(url, "rb") as handle:
        return pq.read_table(handle)


@pytest.mark.usefixtures("memory_fs")
def test_memory_url_results_and_details_are_readable(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker(output_dir=URL, sink_config={"local": {"row_group_size": 4}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    expected = {task: log_demo_samples(tracker, task, 10) for task in TASKS}
    # the spool of a remote output lives on local disk (here: EVALSINK_SPOOL_DIR below tmp_path)
    assert tracker.details_logger.spool.path.is_relative_to(tmp_path / "spool")
    report = tracker.save()
    assert report["local"].ok, report

    date_id = report.date_id
    prefix = "memory:///evalsink-test/run"
    results = f"{prefix}/results/org/model/results_{date_id}.json"
    details = [f"{prefix}/details/org/model/{date_id}/details_{task}_{date_id}.parquet" for task in TASKS]
    assert report["local"].outputs == [results, *details]

    fs = fsspec.filesystem("memory")
    assert sorted(fs.find("/evalsink-test")) == sorted(url[len("memory://") :] for url in [results, *details])
    with fsspec.open(results, "rb") as handle:
        text = handle.read()
    assert set(strict_json(text)["results"]) >= set(TASKS)
    EvaluationResults.model_validate_json(text)
    for task, url in zip(TASKS, details, strict=True):
        table = _read_parquet(url)
        assert table.column_names == COLUMNS
        assert table.to_pylist() == expected[task]


@pytest.mark.usefixtures("memory_fs")
def test_memory_url_with_results_path_template(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker(output_dir=URL, results_path_template="{output_dir}/custom/{org}/{model}")
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_demo_samples(tracker, "mmlu:anatomy|5", 3)
    report = tracker.save()
    date_id = report.date_id
    folder = "/evalsink-test/run/custom/org/model"
    assert sorted(fsspec.filesystem("memory").find("/evalsink-test")) == [
        f"{folder}/details/{date_id}/details_mmlu:anatomy|5_{date_id}.parquet",
        f"{folder}/results_{date_id}.json",
    ]


def test_file_url_writes_local_files(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # a URL mistaken for a relative path would show up here
    out = tmp_path / "run"
    tracker = make_tracker(output_dir=f"file://{out}")
    tracker.general_config_logger.log_model_info(model_name="org/model")
    expected = log_demo_samples(tracker, "mmlu:anatomy|5", 6)
    report = tracker.save()
    date_id = report.date_id
    results = out / "results" / "org" / "model" / f"results_{date_id}.json"
    details = out / "details" / "org" / "model" / str(date_id) / f"details_mmlu:anatomy|5_{date_id}.parquet"
    assert report["local"].outputs == [str(results), str(details)]
    assert {p for p in files_below(out) if ".evalsink" not in p.parts} == {results, details}
    assert strict_json(results.read_bytes())["config_general"]["model_name"] == "org/model"
    assert pq.read_table(details).to_pylist() == expected
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["run"]


@pytest.mark.usefixtures("memory_fs", "hf_offline")
def test_load_details_datasets_hands_readable_urls_to_datasets(
    make_tracker: Callable[..., EvaluationTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """datasets refuses URLs offline, so the call is captured: each URL given must be the saved file."""
    import datasets

    tracker = make_tracker(output_dir=URL)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    expected = log_demo_samples(tracker, "mmlu:anatomy|5", 4)
    tracker.save()
    given: list[str] = []

    def load_dataset(builder: str, *, data_files: str, split: str) -> str:
        assert (builder, split) == ("parquet", "train")
        given.append(data_files)
        return data_files

    monkeypatch.setattr(datasets, "load_dataset", load_dataset)
    loaded = tracker.load_details_datasets("last", ["mmlu:anatomy"])
    assert list(loaded) == ["mmlu:anatomy|5"]
    (url,) = given
    assert _read_parquet(url).to_pylist() == expected


@pytest.mark.usefixtures("memory_fs")
def test_memory_url_writer_exception_leaves_no_partial_file(
    make_tracker: Callable[..., EvaluationTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    real = evalsink_local.parquet.write_details

    def failing(read: Callable[[], Iterable[dict[str, Any]]], *args: Any, **kwargs: Any) -> Any:
        def records() -> Iterable[dict[str, Any]]:
            for index, record in enumerate(read()):
                if index == 10:
                    raise RuntimeError("writer blew up")
                yield record

        return real(records, *args, **kwargs)

    monkeypatch.setattr(evalsink_local.parquet, "write_details", failing)
    # the failure is injected into the conversion at save(): nothing is streamed before it
    tracker = make_tracker(
        output_dir=URL, sink_config={"local": {"row_group_size": 3, "stream_details": False}}
    )
    for i in range(20):
        tracker.details_logger.log("b|0", {"query": f"q{i}"}, {"text": ["x"]}, {"acc": 1.0})
    with pytest.raises(SinkFailedError):
        tracker.save()
    fs = fsspec.filesystem("memory")
    leftovers = [path for path in fs.find("/evalsink-test") if path.endswith(".parquet")]
    assert leftovers == [], [(path, _read_parquet(f"memory://{path}").num_rows) for path in leftovers]


@pytest.mark.usefixtures("memory_fs")
def test_memory_url_task_names_with_glob_characters_are_published_under_their_names(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """memory:// writes a temporary then moves it; fsspec's mv/rm take paths as glob patterns, so
    ``q?x`` was published as a folder holding the temporary and ``br[a]`` failed the save."""
    tasks = ["q?x|0", "st*r|0", "br[a]|0"]
    tracker = make_tracker(output_dir=URL)
    tracker.general_config_logger.log_model_info(model_name="org/mo?d[e]l*")
    expected = {task: log_demo_samples(tracker, task, 3) for task in tasks}
    report = tracker.save()
    assert report["local"].ok, report

    fs = fsspec.filesystem("memory")
    published = report["local"].outputs
    assert len(published) == 1 + len(tasks)
    assert sorted(fs.find("/evalsink-test")) == sorted(url[len("memory://") :] for url in published)
    for task in tasks:
        (url,) = [url for url in published if f"/details_{task}_" in url]
        assert fs.isfile(url[len("memory://") :])
        assert _read_parquet(url).to_pylist() == expected[task]


@pytest.mark.usefixtures("memory_fs")
def test_memory_url_failed_write_leaves_no_temporary_with_glob_characters() -> None:
    """The temporary of a failed write is deleted by its exact name (``rm`` took it as a glob)."""
    from evalsink.storage import OutputDir

    output = OutputDir(URL)
    output.write_bytes("a/other[1].json", b"keep")  # a neighbour that no glob of "x[1]" may touch

    def write_then_fail() -> None:
        with output.open_atomic("a/x[1].json") as handle:
            handle.write(b"partial")
            raise RuntimeError("block failed")

    with pytest.raises(RuntimeError, match="block failed"):
        write_then_fail()
    fs = fsspec.filesystem("memory")
    assert sorted(fs.find("/evalsink-test")) == ["/evalsink-test/run/a/other[1].json"]
