"""A whole run saved to ``s3://``: spool on local disk, results JSON and details parquet read back.

Every file is read back from the server with s3fs and pyarrow and compared with what a run of the
same samples writes to a local folder.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from conftest import Bucket
from s3_helpers import check_whole, log_demo_samples, read_table, strict_json, without_clock

import evalsink_local.parquet
from evalsink import EvaluationTracker, SinkFailedError
from evalsink.models import EvaluationResults
from evalsink.recovery import find_runs, recover_run

TASKS = ["mmlu:anatomy|5", "lighteval|gsm8k|0"]
MODEL = "org/model"


def _log_run(tracker: EvaluationTracker, count: int = 12) -> dict[str, list[dict[str, Any]]]:
    tracker.general_config_logger.log_model_info(model_name=MODEL)
    tracker.versions_logger.log(TASKS[0], 1)
    return {task: log_demo_samples(tracker, task, count) for task in TASKS}


def test_a_run_saved_to_s3_reads_back_as_a_local_run_of_the_same_samples(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    local = make_tracker(tmp_path / "local", sink_config={"local": {"row_group_size": 5}})
    _log_run(local)
    local_report = local.save()
    remote = make_tracker(bucket.url("evals"), sink_config={"local": {"row_group_size": 5}})
    expected = _log_run(remote)

    report = remote.save()

    assert report.ok, str(report)
    date_id = report.date_id
    results_key = f"evals/results/{MODEL}/results_{date_id}.json"
    details_keys = [f"evals/details/{MODEL}/{date_id}/details_{task}_{date_id}.parquet" for task in TASKS]
    assert report["local"].outputs == [f"s3://{bucket.name}/{key}" for key in [results_key, *details_keys]]
    assert bucket.list_keys() == sorted(
        [results_key, *details_keys]
    )  # nothing else: no temporary key, no spool

    results = strict_json(bucket.get(results_key))
    EvaluationResults.model_validate(results)
    [local_results_path] = (tmp_path / "local").glob("results/**/results_*.json")
    local_results = strict_json(local_results_path.read_bytes())
    assert without_clock(results) == without_clock(local_results)
    assert results["config_general"]["model_name"] == MODEL

    for task, key in zip(TASKS, details_keys, strict=True):
        with bucket.fs.open(f"{bucket.name}/{key}", "rb") as handle:  # s3fs, as a user would read it
            table = pq.read_table(handle)
        [local_path] = (tmp_path / "local").glob(f"details/**/details_{task}_*.parquet")
        local_table = pq.read_table(local_path)
        assert table.schema.equals(local_table.schema, check_metadata=True)
        assert table.to_pylist() == local_table.to_pylist() == expected[task]
        assert read_table(bucket.get(key)).num_rows == 12
        assert pq.ParquetFile(local_path).metadata.num_row_groups == 3
    assert local_report.ok


def test_the_results_file_is_the_last_object_written(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker]
) -> None:
    """On a store without rename the results file is the run's commit marker: it is created last."""
    created: list[str] = []
    bucket.on_call("PutObject", lambda params: created.append(params["Key"]))
    bucket.on_call("CompleteMultipartUpload", lambda params: created.append(params["Key"]))
    tracker = make_tracker(bucket.url("evals"))
    _log_run(tracker)

    report = tracker.save()

    assert report.ok, str(report)
    assert len(created) == 3
    assert created[-1] == f"evals/results/{MODEL}/results_{report.date_id}.json"
    assert all(key.endswith(".parquet") for key in created[:-1])


def test_results_path_template_on_s3(bucket: Bucket, make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker(bucket.url("evals"), results_path_template="{output_dir}/custom/{org}/{model}")
    expected = _log_run(tracker, count=4)

    report = tracker.save()

    assert report.ok, str(report)
    date_id = report.date_id
    folder = "evals/custom/org/model"
    assert bucket.list_keys() == sorted(
        [f"{folder}/results_{date_id}.json"]
        + [f"{folder}/details/{date_id}/details_{task}_{date_id}.parquet" for task in TASKS]
    )
    for task in TASKS:
        table = read_table(bucket.get(f"{folder}/details/{date_id}/details_{task}_{date_id}.parquet"))
        assert table.to_pylist() == expected[task]


def test_load_details_datasets_reads_the_saved_files_from_s3(
    bucket: Bucket,
    make_tracker: Callable[..., EvaluationTracker],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """🤗 datasets downloads the parquet files through fsspec (s3fs), into a cache in tmp_path."""
    import datasets
    import datasets.config

    cache = tmp_path / "hf-cache"
    monkeypatch.setenv("HF_DATASETS_CACHE", str(cache))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", cache)
    monkeypatch.setattr(datasets.config, "HF_MODULES_CACHE", tmp_path / "hf-modules")
    monkeypatch.setattr(datasets.config, "DOWNLOADED_DATASETS_PATH", cache / "downloads")
    monkeypatch.setattr(datasets.config, "EXTRACTED_DATASETS_PATH", cache / "downloads" / "extracted")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", False)  # S3 is not the Hub: allowed
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)  # datasets applies it to every URL
    datasets.disable_progress_bars()
    tracker = make_tracker(bucket.url("evals"))
    expected = _log_run(tracker, count=6)
    tracker.save()

    loaded = tracker.load_details_datasets("last", ["mmlu:anatomy", "lighteval|gsm8k"])

    assert sorted(loaded) == sorted(TASKS)
    assert list((cache / "downloads").iterdir())  # downloaded from the bucket, into the test's cache
    for task in TASKS:
        assert loaded[task].to_list() == expected[task]


def test_the_spool_stays_on_local_disk_and_is_removed_after_success(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    spools = tmp_path / "spool"  # EVALSINK_SPOOL_DIR (tests/conftest.py)
    tracker = make_tracker(bucket.url("evals"), run_id="spooled", flush_every=5)
    _log_run(tracker)  # 24 samples: flushed four times before save()

    run_folder = spools / "evalsink-runs" / "spooled"
    assert tracker.details_logger.spool.path.parent == run_folder
    # spool, manifest, and the local sink's staged parquet files (uploaded as they are at save())
    assert sorted(path.suffix for path in run_folder.iterdir() if path.is_file()) == [".json", ".jsonl"]
    [staging] = [path for path in run_folder.iterdir() if path.is_dir()]
    assert staging.name.startswith("local-staged-")
    assert bucket.list_keys() == []  # nothing is written to the store before save()
    assert [run.run_id for run in find_runs(bucket.url("evals"))] == ["spooled"]

    assert tracker.save().ok
    assert [path for path in spools.rglob("*") if path.is_file()] == []
    assert find_runs(bucket.url("evals")) == []


def test_data_that_fails_to_convert_still_gets_its_results_file(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A task's data problem is not the store's: the other tasks and the results are published."""
    real = evalsink_local.parquet.write_details

    def failing(read: Callable[[], Iterable[dict[str, Any]]], *args: Any, **kwargs: Any) -> Any:
        def records() -> Iterable[dict[str, Any]]:
            for index, record in enumerate(read()):
                if index == 3 and record["doc"]["query"] == first_gsm8k_query:
                    raise ValueError("this task's data cannot be converted")
                yield record

        return real(records, *args, **kwargs)

    monkeypatch.setattr(evalsink_local.parquet, "write_details", failing)
    # the failure is injected into the conversion at save(): nothing is streamed before it
    tracker = make_tracker(bucket.url("evals"), sink_config={"local": {"stream_details": False}})
    expected = _log_run(tracker)
    first_gsm8k_query = expected[TASKS[1]][3]["doc"]["query"]

    with pytest.raises(SinkFailedError):
        tracker.save()

    report = tracker.report
    assert report is not None
    date_id = report.date_id
    results_key = f"evals/results/{MODEL}/results_{date_id}.json"
    good_key = f"evals/details/{MODEL}/{date_id}/details_{TASKS[0]}_{date_id}.parquet"
    assert bucket.list_keys() == sorted([results_key, good_key])
    assert report["local"].outputs == [bucket.url(results_key), bucket.url(good_key)]
    [error] = report["local"].errors
    assert "DetailsWriteError" in error
    assert f"{TASKS[1]!r}: ValueError: this task's data cannot be converted" in error
    assert strict_json(bucket.get(results_key))["config_general"]["model_name"] == MODEL


def test_a_results_upload_that_fails_leaves_the_run_unmarked_and_recoverable(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    """The store fails on the last file: every details file is there, but no commit marker."""

    def results_put_fails(params: dict[str, Any]) -> None:
        if params["Key"].endswith(".json"):
            raise ConnectionError("the store stopped answering")

    store_is_back = bucket.on_call("PutObject", results_put_fails)
    tracker = make_tracker(bucket.url("evals"), run_id="unmarked")
    expected = _log_run(tracker)

    with pytest.raises(SinkFailedError):
        tracker.save()

    report = tracker.report
    assert report is not None
    first_date = report.date_id
    [error] = report["local"].errors
    results_url = bucket.url(f"evals/results/{MODEL}/results_{first_date}.json")
    assert f"RunNotPublishedError: could not write {results_url}: ConnectionError" in error
    assert "recover_run" in error
    assert len(report["local"].outputs) == 2  # the details files, published
    assert all(key.endswith(".parquet") for key in bucket.list_keys())
    spool = tracker.details_logger.spool.path
    assert spool.exists()
    manifest = json.loads(spool.with_name(spool.stem + ".meta.json").read_bytes())
    assert (manifest["state"], manifest["date_id"]) == ("failed", first_date)  # the local sink failed

    [run] = find_runs(bucket.url("evals"))
    assert (run.run_id, run.recoverable) == ("unmarked", True)
    store_is_back()
    again = recover_run(bucket.url("evals"), "unmarked")

    assert again.ok, str(again)
    date_id = again.date_id
    assert date_id == first_date  # its details were published under that date id: one run, one date
    results = strict_json(bucket.get(f"evals/results/{MODEL}/results_{date_id}.json"))
    assert results["evalsink_recovery"]["partial"] is False
    assert results["evalsink_recovery"]["samples_recovered"] == sum(map(len, expected.values()))
    for task in TASKS:
        assert (
            read_table(
                bucket.get(f"evals/details/{MODEL}/{date_id}/details_{task}_{date_id}.parquet")
            ).to_pylist()
            == expected[task]
        )
    for key in bucket.list_keys():
        check_whole(key, bucket.get(key))
    assert find_runs(bucket.url("evals")) == []
    assert not spool.exists()
