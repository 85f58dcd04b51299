"""The sink's options, its checks at construction, and its isolation from the local sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from trackio_helpers import PLAIN, log_evaluation, new_project

from evalsink import EvaluationTracker, SinkConfigError


def test_a_missing_project_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="needs a project"):
        EvaluationTracker(tmp_path, sinks=["trackio"])


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="entity"):
        EvaluationTracker(
            tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": "p", "entity": "me"}}
        )


def test_negative_max_rows_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="max_rows"):
        EvaluationTracker(
            tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": "p", "max_rows": -1}}
        )


def test_dataset_id_needs_a_space(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="dataset_id needs a space_id"):
        EvaluationTracker(
            tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": "p", "dataset_id": "me/data"}}
        )


def test_space_id_falls_back_to_lightevals_variable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WANDB_SPACE_ID", "me/evals")
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": "p"}})
    assert tracker._manager.sinks["trackio"].space_id == "me/evals"  # not started: nothing is sent

    config = {"trackio": {"project": "p", "space_id": "me/other"}}
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config=config)
    assert tracker._manager.sinks["trackio"].space_id == "me/other"


def _count_finish(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import trackio

    calls: list[str] = []
    original = trackio.Run.finish

    def finish(self: Any) -> None:
        calls.append(self.name)
        original(self)

    monkeypatch.setattr(trackio.Run, "finish", finish)
    return calls


def test_a_trackio_failure_is_isolated_and_the_run_still_finished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trackio

    finished = _count_finish(monkeypatch)

    def broken_log(self: Any, metrics: dict[str, Any], step: int | None = None) -> None:
        raise ConnectionError("trackio is down")

    monkeypatch.setattr(trackio.Run, "log", broken_log)
    project = new_project()
    tracker = EvaluationTracker(
        tmp_path, sinks=["local", "trackio"], sink_config={"trackio": {"project": project, "run_name": "r"}}
    )
    log_evaluation(tracker)
    report = tracker.save()

    assert not report.ok
    assert report.failed == ["trackio"]
    assert report["trackio"].failed_hooks == ["evalsink_results_saved"]
    assert "trackio is down" in report["trackio"].errors[0]
    assert report["local"].ok
    assert [path for path in report["local"].outputs if Path(path).is_file()] == report["local"].outputs
    assert any(path.endswith(".json") for path in report["local"].outputs)
    assert finished == ["r"]


def test_a_failed_evaluation_still_finishes_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    finished = _count_finish(monkeypatch)
    project = new_project()
    config = {"trackio": {"project": project, "run_name": "r"}}
    with (  # noqa: PT012
        pytest.raises(RuntimeError, match="evaluation broke"),
        EvaluationTracker(tmp_path, sinks=["trackio"], sink_config=config) as tracker,
    ):
        log_evaluation(tracker, {PLAIN: [0.5]})
        raise RuntimeError("evaluation broke")
    assert finished == ["r"]


def test_trackio_warnings_about_lost_data_fail_the_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import trackio
    from trackio.utils import _emit_nonfatal_warning

    def lossy_log(self: Any, metrics: dict[str, Any], step: int | None = None) -> None:
        _emit_nonfatal_warning("trackio failed to flush metric logs for run 'r': disk full.")

    monkeypatch.setattr(trackio.Run, "log", lossy_log)
    project = new_project()
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": project}})
    log_evaluation(tracker, {PLAIN: [0.5]})
    report = tracker.save()
    assert report.failed == ["trackio"]
    assert "disk full" in report["trackio"].errors[0]


def test_trackio_is_not_imported_by_the_sink_module() -> None:
    import subprocess
    import sys

    code = "import sys, evalsink_trackio; sys.exit('trackio' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_a_finish_that_leaves_logs_unsent_fails_the_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report may call trackio ok only once its sender thread has drained its queue."""
    import trackio

    original = trackio.Run.finish
    stuck: list[Any] = []

    def finish_without_draining(self: Any) -> None:
        stuck.append(self)  # the sender thread keeps running, its queue unsent

    monkeypatch.setattr(trackio.Run, "finish", finish_without_draining)
    project = new_project()
    tracker = EvaluationTracker(tmp_path, sinks=["trackio"], sink_config={"trackio": {"project": project}})
    log_evaluation(tracker, {PLAIN: [0.5]})
    report = tracker.save()

    assert report.failed == ["trackio"]
    assert "could not write every log" in report["trackio"].errors[0]
    [run] = stuck
    original(run)  # stop the sender thread the test left running
