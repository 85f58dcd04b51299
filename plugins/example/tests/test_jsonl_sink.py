"""What is specific to the jsonl sink: streamed batches, atomic publication, fsspec URLs."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import fsspec
import pytest

from evalsink import EvaluationTracker, SinkConfigError


@pytest.fixture(autouse=True)
def _isolated(evalsink_env: Path) -> None:
    """No EVALSINK_* variable of the developer's shell reaches these tests (evalsink's fixture)."""


def log_samples(tracker: EvaluationTracker, count: int) -> None:
    for i in range(count):
        doc = {"query": f"What is {i} + {i}?", "choices": [str(2 * i)], "gold_index": 0}
        response = {"input": f"What is {i} + {i}?", "text": [str(2 * i)]}
        tracker.details_logger.log("custom|addition|0", doc, response, {"em": 1.0})
        tracker.metrics_logger.log("custom|addition|0", {"em": 1.0})


def test_every_sample_becomes_one_line(tmp_path: Path) -> None:
    with EvaluationTracker(tmp_path, sinks=["local", "jsonl"], flush_every=2) as tracker:
        log_samples(tracker, 5)
        report = tracker.save()

    assert report.ok, str(report)
    results_path, samples_path = report["jsonl"].outputs
    assert samples_path == str(tmp_path / "jsonl" / f"{tracker.run_id}.jsonl")  # the default url
    with open(samples_path, encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle]
    assert [row["doc"]["query"] for row in rows] == [f"What is {i} + {i}?" for i in range(5)]
    assert {row["task_name"] for row in rows} == {"custom|addition|0"}
    with open(results_path, encoding="utf-8") as handle:
        summary = json.load(handle)
    assert summary["samples"] == 5
    assert summary["results"]["custom|addition|0"]["em"] == 1.0


def test_batches_are_streamed_and_the_file_appears_only_at_save(tmp_path: Path) -> None:
    folder = tmp_path / "jsonl"
    with EvaluationTracker(tmp_path, sinks=["jsonl"], flush_every=10) as tracker:
        log_samples(tracker, 30)  # three batches, delivered while the run goes on
        [partial] = folder.glob(f".{tracker.run_id}.jsonl.tmp-*")
        assert len(partial.read_bytes().splitlines()) == 30
        assert not (folder / f"{tracker.run_id}.jsonl").exists()
        tracker.save()

    assert len((folder / f"{tracker.run_id}.jsonl").read_bytes().splitlines()) == 30
    assert not list(folder.glob(".*.tmp-*"))


@pytest.fixture
def memory_url() -> Iterator[str]:
    """A folder of fsspec's in-memory file system (shared by the process), removed afterwards."""
    url = f"memory://evalsink-example/{uuid.uuid4().hex}"
    yield url
    fs, path = fsspec.core.url_to_fs(url)
    if fs.exists(path):
        fs.rm(path, recursive=True)


def test_any_fsspec_url(tmp_path: Path, memory_url: str) -> None:
    config = {"jsonl": {"url": memory_url, "include_results": False}}
    with EvaluationTracker(tmp_path, sinks=["local", "jsonl"], sink_config=config, flush_every=2) as tracker:
        log_samples(tracker, 5)
        report = tracker.save()

    assert report.ok, str(report)
    [samples_url] = report["jsonl"].outputs
    assert samples_url == f"{memory_url.replace('://', ':///')}/{tracker.run_id}.jsonl"
    with fsspec.open(samples_url, "rb") as handle:
        assert len(handle.read().splitlines()) == 5
    fs, path = fsspec.core.url_to_fs(memory_url)
    assert fs.ls(path, detail=False) == [f"/{path.strip('/')}/{tracker.run_id}.jsonl"]  # no temporary


def test_an_unknown_protocol_fails_the_tracker_before_the_run(tmp_path: Path) -> None:
    config = {"jsonl": {"url": "no-such-protocol://bucket/evals"}}
    with pytest.raises(SinkConfigError, match="jsonl"):
        EvaluationTracker(tmp_path, sinks=["local", "jsonl"], sink_config=config)


def test_a_failing_jsonl_sink_costs_the_local_sink_nothing(tmp_path: Path) -> None:
    config = {"jsonl": {"url": "/dev/null/not-a-folder"}}
    with EvaluationTracker(tmp_path, sinks=["local", "jsonl"], sink_config=config) as tracker:
        log_samples(tracker, 3)
        report = tracker.save()

    assert report.failed == ["jsonl"]
    assert "evalsink_run_started" in report["jsonl"].failed_hooks
    assert report["local"].ok
    assert report["local"].outputs
