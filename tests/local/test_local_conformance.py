"""The local sink against evalsink's conformance kit, its files read back with pyarrow."""

from __future__ import annotations

import pyarrow.parquet as pq
import pytest
from local_helpers import strict_json

from evalsink.testing import FailedRun, SavedRun, SinkConformance


class TestLocalConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "local"

    def check_saved(self, saved: SavedRun) -> None:
        date_id = saved.tracker.run.date_id
        results_files = list(saved.output_dir.glob(f"results/**/results_{date_id}.json"))
        assert len(results_files) == 1
        results = strict_json(results_files[0].read_bytes())  # no NaN token survived
        tasks = saved.evaluation.tasks
        assert sorted(results["results"]) == sorted([*tasks, "all"])
        details = list(saved.output_dir.glob(f"details/**/{date_id}/details_*_{date_id}.parquet"))
        assert len(details) == len(tasks)
        rows = sum(pq.ParquetFile(path).metadata.num_rows for path in details)
        assert rows == len(saved.evaluation.samples)

    def check_failed(self, failed: FailedRun) -> None:
        # nothing is published for a run that failed before save(); its spool is kept for recovery
        assert not list(failed.output_dir.glob("results/**/*.json"))
        assert list(failed.output_dir.glob(".evalsink/runs/*/details-*.jsonl"))
