"""The jsonl sink against evalsink's conformance kit: every line read back and compared."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from evalsink.jsonsafe import decode_bytes
from evalsink.testing import FailedRun, SavedRun, SinkConformance


def finite_or_none(metrics: dict[str, Any]) -> dict[str, Any]:
    """Metrics as evalsink stores them: NaN and infinities become null."""
    return {key: value if math.isfinite(value) else None for key, value in metrics.items()}


class TestJsonlConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "jsonl"

    @pytest.fixture
    def sink_config(self, tmp_path: Path) -> dict[str, Any]:
        return {"url": str(tmp_path / "jsonl")}

    def check_saved(self, saved: SavedRun) -> None:
        results_url, samples_url = saved.outcome.outputs
        with fsspec.open(samples_url, "rb") as handle:
            rows = [json.loads(line) for line in handle]
        samples = saved.evaluation.samples
        assert [row["task_name"] for row in rows] == [sample.task for sample in samples]
        # bytes (images) are {"$evalsink.bytes": "<base64>"} in JSON lines
        assert [decode_bytes(row["doc"]) for row in rows] == [sample.doc for sample in samples]
        assert [row["metric"] for row in rows] == [finite_or_none(sample.metrics) for sample in samples]
        with fsspec.open(results_url, "rb") as handle:
            summary = json.load(handle)
        assert summary["samples"] == len(samples)
        assert summary["date_id"] == saved.tracker.run.date_id
        assert set(saved.evaluation.tasks) <= set(summary["results"])

    def check_failed(self, failed: FailedRun) -> None:
        # nothing is published for a run that never reached save(), not even a temporary file
        assert failed.tracker.sink("jsonl").output.listdir("") == []


class TestJsonlConformanceInMemory(TestJsonlConformance):
    """The same checks through fsspec: a temporary file moved into place, not a local rename."""

    @pytest.fixture
    def sink_config(self) -> Iterator[dict[str, Any]]:
        url = f"memory://evalsink-example/{uuid.uuid4().hex}"
        yield {"url": url}
        fs, path = fsspec.core.url_to_fs(url)
        if fs.exists(path):
            fs.rm(path, recursive=True)
