"""The W&B sink against evalsink's conformance kit, read back from the offline run files."""

from __future__ import annotations

import pytest
from wandb_helpers import new_project, run_of, table_at

from evalsink import RunStatus
from evalsink.testing import FailedRun, SavedRun, SinkConformance

# isort: split
# (its own block: sorted the same whether or not evalsink_wandb is a known first-party module)
from evalsink_wandb import details_key, metric_key


class TestWandbConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "wandb"

    @pytest.fixture
    def sink_config(self) -> dict[str, object]:
        return {"project": new_project()}

    def check_saved(self, saved: SavedRun) -> None:
        run = run_of(saved.tracker)
        assert run.exit_code == (1 if saved.status is RunStatus.FAILED else 0)
        for task in saved.evaluation.tasks:
            rows = table_at(run, details_key(task, run.run.run_id))
            assert [row["sample"] for row in rows] == list(range(saved.evaluation.count(task)))
        for task, metrics in saved.tracker.results["results"].items():
            for metric, value in metrics.items():
                if value is not None:
                    assert run.summary[metric_key(task, metric)] == pytest.approx(value)

    def check_failed(self, failed: FailedRun) -> None:
        run = run_of(failed.tracker)
        assert run.exit_code == 1
