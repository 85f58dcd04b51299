"""The sink's options, its checks at construction, and its isolation from the local sink."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tb_helpers import PLAIN, log_evaluation, read_events

from evalsink import EvaluationTracker, SinkConfigError


def test_unknown_keys_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="flush_sec"):
        EvaluationTracker(tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": {"flush_sec": 1}})


def test_negative_step_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="step"):
        EvaluationTracker(tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": {"step": -1}})


def test_nanotron_run_info_without_step_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match=r"needs \.run .* and \.step"):
        EvaluationTracker(tmp_path, sinks=["tensorboard"], nanotron_run_info=SimpleNamespace(run="exp"))


def test_options_override_prefix_run_step_and_folder(tmp_path: Path) -> None:
    config = {"prefix": "val", "run_name": "my-run", "step": 5, "logdir": str(tmp_path / "elsewhere")}
    tracker = EvaluationTracker(
        tmp_path / "out",
        sinks=["tensorboard"],
        nanotron_run_info=SimpleNamespace(run="exp", step=None),
        sink_config={"tensorboard": config},
    )
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok

    assert not (tmp_path / "out" / "tb").exists()
    [point] = read_events(tmp_path / "elsewhere" / "my-run").Scalars("val/plain/acc")
    assert point.step == 5


def test_options_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSINK_TENSORBOARD__RUN_NAME", "from-env")
    tracker = EvaluationTracker(tmp_path, sinks=["tensorboard"])
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert read_events(tmp_path / "tb" / "from-env").Scalars("eval/plain/acc")


@pytest.mark.parametrize("run_name", ["..", "a/../../b", ".evalsink-staging"])
def test_run_names_cannot_leave_the_root(tmp_path: Path, run_name: str) -> None:
    with pytest.raises(SinkConfigError, match="not a folder name"):
        EvaluationTracker(
            tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": {"run_name": run_name}}
        )


def test_a_url_output_dir_needs_a_local_logdir(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match="not a local folder"):
        EvaluationTracker("memory://evalsink-test/out", sinks=["tensorboard"])

    config = {"tensorboard": {"logdir": str(tmp_path / "tb")}}
    tracker = EvaluationTracker("memory://evalsink-test/out", sinks=["tensorboard"], sink_config=config)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert read_events(tmp_path / "tb" / "eval").Scalars("eval/plain/acc")


def test_an_unwritable_logdir_fails_only_the_tensorboard_sink(tmp_path: Path) -> None:
    config = {"tensorboard": {"logdir": "/dev/null/not-a-folder"}}
    with EvaluationTracker(tmp_path, sinks=["local", "tensorboard"], sink_config=config) as tracker:
        log_evaluation(tracker)
        report = tracker.save()

    assert report.failed == ["tensorboard"]
    assert "evalsink_run_started" in report["tensorboard"].failed_hooks
    assert report["local"].ok
    assert report["local"].outputs
    assert all(Path(path).exists() for path in report["local"].outputs)


def test_a_failure_while_writing_leaves_no_file_and_closes_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tensorboardX

    closed: list[object] = []
    original_close = tensorboardX.SummaryWriter.close

    def failing_add_text(self: object, *args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    def recording_close(self: tensorboardX.SummaryWriter) -> None:
        closed.append(self)
        original_close(self)

    monkeypatch.setattr(tensorboardX.SummaryWriter, "add_text", failing_add_text)
    monkeypatch.setattr(tensorboardX.SummaryWriter, "close", recording_close)
    with EvaluationTracker(tmp_path, sinks=["local", "tensorboard"]) as tracker:
        log_evaluation(tracker)
        report = tracker.save()

    assert report.failed == ["tensorboard"]
    assert "disk full" in report["tensorboard"].errors[0]
    assert report["local"].ok
    assert len(closed) == 1  # closed once, by run_finished
    assert list((tmp_path / "tb").iterdir()) == [tmp_path / "tb" / "eval"]  # staging removed
    assert list((tmp_path / "tb" / "eval").iterdir()) == []  # no partial event file published
