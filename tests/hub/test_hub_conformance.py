"""The hub sink against evalsink's conformance kit, each run read back from the loopback Hub."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from loopback_hub import LoopbackHub

from evalsink.testing import MODEL_NAME, FailedRun, SavedRun, SinkConformance

ORG = "evalsink-org"
REPO = f"{ORG}/details_{MODEL_NAME.replace('/', '__')}_private"


class TestHubConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "hub"

    @pytest.fixture
    def sink_config(self, loopback_hub: LoopbackHub) -> dict[str, object]:
        self.hub = loopback_hub
        return {"org": ORG, "retry_backoff": 0.0, "timeout": 10.0}

    def check_saved(self, saved: SavedRun) -> None:
        date_id = saved.tracker.run.date_id
        [_, commit] = self.hub.commits(REPO)  # the Hub's initial commit, then one per run
        files = self.hub.files(REPO)
        assert f"results_{date_id}.json" in commit.added
        assert "README.md" in commit.added
        details = [path for path in files if path.startswith(f"{date_id}/details_")]
        assert len(details) == len(saved.evaluation.tasks)
        rows = sum(pq.read_table(pa.BufferReader(files[path])).num_rows for path in details)
        assert rows == len(saved.evaluation.samples)

    def check_failed(self, failed: FailedRun) -> None:
        assert not self.hub.repo(REPO).exists  # nothing is published for a failed evaluation
