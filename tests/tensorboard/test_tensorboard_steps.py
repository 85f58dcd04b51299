"""Checkpoints evaluated out of order still read back in step order, earlier files untouched."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
from tb_helpers import ANATOMY, PLAIN, log_evaluation, read_events

from evalsink import EvaluationTracker


def test_out_of_order_checkpoints_read_back_in_step_order(tmp_path: Path) -> None:
    run_dir = tmp_path / "tb" / "exp_eval"
    seen: list[set[str]] = []
    for step in (3000, 1000, 2000):
        info = SimpleNamespace(run="exp", step=step)
        tracker = EvaluationTracker(tmp_path, sinks=["tensorboard"], nanotron_run_info=info)
        log_evaluation(tracker, {PLAIN: [step / 10_000], ANATOMY: [step / 10_000, 0.0]})
        report = tracker.save()  # outside a with block: save() also finishes the run
        assert report.ok, str(report)
        names = {path.name for path in run_dir.iterdir()}
        if seen:
            assert seen[-1] < names  # earlier files kept under their names, one file added
        seen.append(names)

    assert len(seen[-1]) == 3
    events = read_events(run_dir)
    plain = events.Scalars("eval/plain/acc")
    assert [point.step for point in plain] == [1000, 2000, 3000]
    assert [point.value for point in plain] == pytest.approx([0.1, 0.2, 0.3])
    assert [point.step for point in events.Scalars("eval_mmlu/mmlu_anatomy/acc")] == [1000, 2000, 3000]
    assert [event.step for event in events.Tensors("eval_config/text_summary")] == [1000, 2000, 3000]


def test_the_same_step_twice_keeps_both_files_in_writing_order(tmp_path: Path) -> None:
    for value in (0.25, 0.75):
        tracker = EvaluationTracker(tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": {"step": 7}})
        log_evaluation(tracker, {PLAIN: [value]})
        assert tracker.save().ok

    points = read_events(tmp_path / "tb" / "eval").Scalars("eval/plain/acc")
    assert [(point.step, point.value) for point in points] == [(7, 0.25), (7, 0.75)]


def test_nanotron_step_none_falls_back_to_the_configured_step(tmp_path: Path) -> None:
    info = SimpleNamespace(run="exp", step=None)
    tracker = EvaluationTracker(
        tmp_path, sinks=["tensorboard"], nanotron_run_info=info, sink_config={"tensorboard": {"step": 42}}
    )
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok

    [point] = read_events(tmp_path / "tb" / "exp_eval").Scalars("eval/plain/acc")
    assert point.step == 42
