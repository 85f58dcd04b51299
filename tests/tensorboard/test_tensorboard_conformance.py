"""The TensorBoard sink against evalsink's conformance kit, events read back with EventAccumulator."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from tb_helpers import read_events

from evalsink.testing import SavedRun, SinkConformance
from evalsink_tensorboard.naming import plan_scalars


class TestTensorBoardConformance(SinkConformance):
    @pytest.fixture
    def sink_name(self) -> str:
        return "tensorboard"

    @pytest.fixture
    def sink_config(self, tmp_path: Path) -> dict[str, object]:
        return {"logdir": str(tmp_path / "tb")}

    def check_saved(self, saved: SavedRun) -> None:
        [run_dir] = (Path(saved.tracker.sink("tensorboard").config.logdir)).iterdir()
        events = read_events(run_dir)
        scalars = set(events.Tags()["scalars"])
        results = saved.tracker.results["results"]
        plan = plan_scalars(results, "eval")  # the tags the sink documents, checked in test_tensorboard_tags
        expected = {point.tag: point.value for point in plan.scalars}
        assert scalars == set(expected)
        for tag, value in expected.items():
            [point] = events.Scalars(tag)
            assert point.value == pytest.approx(value, rel=1e-6)
        acc = {task: results[task]["acc"] for task in saved.evaluation.tasks}
        finite_acc = [task for task, value in acc.items() if value is not None and math.isfinite(value)]
        assert sum(1 for tag in scalars if tag.endswith("/acc") and "/all/" not in tag) == len(finite_acc)
