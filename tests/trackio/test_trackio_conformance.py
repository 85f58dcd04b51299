"""The Trackio sink against evalsink's conformance kit, read back from trackio's SQLite store."""

from __future__ import annotations

import pytest
from trackio_helpers import details_rows, merged, new_project, read_run

from evalsink.testing import SavedRun, SinkConformance

# isort: split
# (its own block: sorted the same whether or not evalsink_trackio is a known first-party module)
from evalsink_trackio import details_key, metric_key


class TestTrackioConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "trackio"

    @pytest.fixture
    def sink_config(self) -> dict[str, object]:
        return {"project": new_project()}

    def check_saved(self, saved: SavedRun) -> None:
        project = saved.tracker.sink("trackio").project
        _, logs, _ = read_run(project)
        values = merged(logs)
        for task in saved.evaluation.tasks:
            assert len(details_rows(logs, details_key(task))) == saved.evaluation.count(task)
            assert metric_key(task, "acc") in values or task == "custom|non_finite|0"
