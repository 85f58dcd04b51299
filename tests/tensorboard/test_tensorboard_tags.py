"""Every tag and value a run writes, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from tb_helpers import ANATOMY, ASTRONOMY, PLAIN, log_evaluation, read_events, text_of

from evalsink import EvaluationTracker, SaveReport

# results key, metric -> the tag lighteval's push_to_tensorboard gave it (after tensorboardX's cleaning)
EXPECTED_TAGS = {
    (ANATOMY, "acc"): "eval_mmlu/mmlu_anatomy/acc",
    (ANATOMY, "acc_stderr"): "stderr_eval/mmlu_anatomy/acc_stderr",
    (ASTRONOMY, "acc"): "eval_mmlu/mmlu_astronomy/acc",
    (ASTRONOMY, "acc_stderr"): "stderr_eval/mmlu_astronomy/acc_stderr",
    (PLAIN, "acc"): "eval/plain/acc",
    (PLAIN, "acc_stderr"): "stderr_eval/plain/acc_stderr",
    ("lighteval|mmlu:_average|5", "acc"): "eval/mmlu/acc",
    ("lighteval|mmlu:_average|5", "acc_stderr"): "stderr_eval/mmlu/acc_stderr",
    ("all", "acc"): "eval/all/acc",
    ("all", "acc_stderr"): "stderr_eval/all/acc_stderr",
}


def test_every_tag_and_value_of_a_run(tmp_path: Path) -> None:
    with EvaluationTracker(tmp_path, sinks=["local", "tensorboard"]) as tracker:
        log_evaluation(tracker)
        report = tracker.save()
        results = tracker.results["results"]

    assert report.ok, str(report)
    [event_file] = report["tensorboard"].outputs
    run_dir = tmp_path / "tb" / "eval"
    assert Path(event_file).parent == run_dir
    assert sorted(p.name for p in (tmp_path / "tb").iterdir()) == ["eval"]  # staging folder gone

    events = read_events(run_dir)
    assert sorted(events.Tags()["scalars"]) == sorted(EXPECTED_TAGS.values())
    for (task, metric), tag in EXPECTED_TAGS.items():
        [point] = events.Scalars(tag)
        assert point.step == 0
        assert point.value == pytest.approx(results[task][metric], rel=1e-6, abs=1e-7), tag
    # the values themselves, not only "whatever the core computed"
    assert events.Scalars("eval_mmlu/mmlu_anatomy/acc")[0].value == pytest.approx(0.5)
    assert events.Scalars("eval_mmlu/mmlu_astronomy/acc")[0].value == pytest.approx(1.0)
    assert events.Scalars("eval/plain/acc")[0].value == pytest.approx(0.5)
    assert events.Scalars("eval/mmlu/acc")[0].value == pytest.approx(0.75)
    assert events.Scalars("stderr_eval/mmlu_anatomy/acc_stderr")[0].value == pytest.approx(0.5)

    texts = {tag.removesuffix("/text_summary") for tag in events.Tags()["tensors"]}
    assert texts == {
        "eval_config",
        f"eval_details_{ANATOMY}",
        f"eval_details_{ASTRONOMY}",
        f"eval_details_{PLAIN}",
    }
    [(step, config)] = text_of(events, "eval_config")
    assert step == 0
    assert config.startswith("| key | value |")
    assert "| model_name | org/tiny-model |" in config
    [(_, details)] = text_of(events, f"eval_details_{ANATOMY}")
    summary = tracker.results["summary_tasks"][ANATOMY]
    assert f"| hashes.hash_examples | {summary['hashes']['hash_examples']} |" in details
    assert "| non_truncated | 2 |" in details


def test_push_to_tensorboard_enables_the_sink_and_prefix_is_lightevals(tmp_path: Path) -> None:
    tracker = EvaluationTracker(tmp_path, push_to_tensorboard=True, tensorboard_metric_prefix="ckpt")
    assert tracker.sink_names == ["local", "tensorboard"]
    log_evaluation(tracker)
    report = tracker.save()

    assert report.ok, str(report)
    events = read_events(tmp_path / "tb" / "ckpt")
    assert "ckpt_mmlu/mmlu_anatomy/acc" in events.Tags()["scalars"]
    assert "stderr_ckpt/plain/acc_stderr" in events.Tags()["scalars"]
    assert "ckpt/mmlu/acc" in events.Tags()["scalars"]


def tensorboard_warnings(report: SaveReport) -> list[str]:
    """The report's warnings given by the tensorboard sink."""
    return [warning for warning in report.warnings if warning.startswith("tensorboard: ")]


def test_null_values_are_skipped_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with EvaluationTracker(tmp_path, sinks=["tensorboard"]) as tracker:
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0, "f1": math.nan})
        with caplog.at_level(logging.WARNING, logger="evalsink"):
            report = tracker.save()

    assert report.ok, str(report)
    assert tracker.results["results"][PLAIN]["f1"] is None
    scalars = read_events(tmp_path / "tb" / "eval").Tags()["scalars"]
    assert "eval/plain/acc" in scalars
    assert not [tag for tag in scalars if tag.endswith("/f1")]
    said = f"2 null (NaN/inf) value(s) not written: {PLAIN}/f1, all/f1"
    assert tensorboard_warnings(report) == [f"tensorboard: {said}"]  # in the report, not only logged
    assert report["tensorboard"].warnings == [said]
    assert said in caplog.text


def test_a_value_left_out_for_a_tag_collision_is_said_in_the_report(tmp_path: Path) -> None:
    """``acc:x`` and ``acc_x`` both become tag ``eval/plain/acc_x``: the report says which is missing."""
    with EvaluationTracker(tmp_path, sinks=["tensorboard"]) as tracker:
        tracker.metrics_logger.log(PLAIN, {"acc_x": 1.0, "acc:x": 0.5})
        report = tracker.save()

    assert report.ok, str(report)
    [point] = read_events(tmp_path / "tb" / "eval").Scalars("eval/plain/acc_x")
    assert point.value == 1.0
    assert (
        f"tensorboard: {PLAIN}/acc:x not written: tag 'eval/plain/acc_x' is already used"
        in tensorboard_warnings(report)
    )


def test_values_float32_cannot_hold_are_not_written_as_inf_and_said(tmp_path: Path) -> None:
    """TensorBoard stores float32: 2e50 read back as inf, -1e39 as -inf, 1e-50 as 0, unsaid."""
    with EvaluationTracker(tmp_path, sinks=["local", "tensorboard"]) as tracker:
        for ppl in (1e50, 3e50):
            tracker.metrics_logger.log(PLAIN, {"ppl": ppl, "neg": -1e39, "tiny": 1e-50, "acc": 0.5})
        report = tracker.save()

    assert report.ok, str(report)
    results = tracker.results["results"][PLAIN]
    assert (results["ppl"], results["neg"], results["tiny"]) == (2e50, -1e39, 1e-50)  # kept in the files
    events = read_events(tmp_path / "tb" / "eval")
    values = {tag: [event.value for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    assert all(math.isfinite(value) for points in values.values() for value in points), values
    assert "eval/plain/ppl" not in values
    assert "stderr_eval/plain/ppl_stderr" not in values  # ~1e50 too
    assert "eval/plain/neg" not in values
    assert values["eval/plain/tiny"] == [0.0]
    assert values["eval/plain/acc"] == [0.5]
    [beyond, flushed] = tensorboard_warnings(report)
    assert beyond.startswith("tensorboard: 6 value(s) beyond float32's range")
    for entry in (
        f"{PLAIN}/ppl = 2e+50",
        f"{PLAIN}/ppl_stderr = 1e+50",
        f"{PLAIN}/neg = -1e+39",
        "all/ppl = 2e+50",
    ):
        assert entry in beyond
    assert flushed.startswith("tensorboard: 2 non-zero value(s) smaller than float32 can hold")
    assert f"{PLAIN}/tiny = 1e-50, all/tiny = 1e-50" in flushed


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (3.4028234663852886e38, 3.4028234663852886e38),  # float32's largest
        (3.4028235e38, 3.4028234663852886e38),  # rounds to it
        (3.4028236e38, None),  # rounds to inf
        (-1e39, None),
        (10**400, None),  # an int no float holds: not a crash
        (1.401298464324817e-45, 1.401298464324817e-45),  # float32's smallest
        (1e-40, 9.99994610111476e-41),  # subnormal: kept, a little rounded
        (1e-50, 0.0),
        (0.0, 0.0),
    ],
)
def test_float32_range_edges(value: float, written: float | None) -> None:
    from evalsink_tensorboard.naming import as_float32, plan_scalars

    assert as_float32(value) == written
    plan = plan_scalars({PLAIN: {"m": value}}, "eval")
    assert [point.tag for point in plan.scalars] == ([] if written is None else ["eval/plain/m"])
    assert len(plan.out_of_range) == (written is None)
    assert len(plan.flushed_to_zero) == (written == 0.0 and value != 0)


def test_nan_and_inf_in_a_results_file_lighteval_wrote_are_skipped() -> None:
    """lighteval writes bare NaN/Infinity, which ``evalsink push`` reads back as floats: they were
    written as scalars (tensorboardX only printed "NaN or Inf found") instead of skipped and said."""
    from evalsink_tensorboard.naming import plan_scalars

    plan = plan_scalars(
        {"custom|ppl|0": {"acc": 0.5, "ppl": math.nan, "big": math.inf, "low": -math.inf}}, "eval"
    )
    assert [(point.tag, point.value) for point in plan.scalars] == [("eval/ppl/acc", 0.5)]
    assert plan.skipped_null == [("custom|ppl|0", "ppl"), ("custom|ppl|0", "big"), ("custom|ppl|0", "low")]


def test_colliding_short_names_fall_back_to_full_names() -> None:
    """Two few-shot settings of one task would share lighteval's tag: both keep their full name."""
    # imported here so the import block sorts the same whether or not the root ruff config lists
    # evalsink_tensorboard as first-party
    from evalsink_tensorboard.naming import plan_scalars

    plan = plan_scalars(
        {
            "lighteval|mmlu:anatomy|5": {"acc": 0.1},
            "lighteval|mmlu:anatomy|0": {"acc": 0.2},
            "custom|other|0": {"acc": 0.3},
        },
        "eval",
    )
    assert {point.tag: point.value for point in plan.scalars} == {
        "eval_lighteval_mmlu/lighteval_mmlu_anatomy_5/acc": 0.1,
        "eval_lighteval_mmlu/lighteval_mmlu_anatomy_0/acc": 0.2,
        "eval/other/acc": 0.3,
    }
    assert plan.duplicates == []


def test_a_plain_task_named_like_a_suite_does_not_hide_the_suite_average() -> None:
    from evalsink_tensorboard.naming import plan_scalars

    plan = plan_scalars(
        {"custom|mmlu|0": {"acc": 0.1}, "lighteval|mmlu:_average|5": {"acc": 0.2, "acc_stderr": 0.01}},
        "eval",
    )
    assert {point.tag: point.value for point in plan.scalars} == {
        "eval/custom_mmlu_0/acc": 0.1,
        "eval/lighteval_mmlu__average_5/acc": 0.2,
        "stderr_eval/lighteval_mmlu__average_5/acc_stderr": 0.01,
    }


def test_a_two_part_key_is_shown_whole() -> None:
    from evalsink_tensorboard.naming import plan_scalars

    plan = plan_scalars({"mmlu:anatomy|5": {"acc": 0.5, "acc_stderr": 0.1}}, "eval")
    assert [point.tag for point in plan.scalars] == [
        "eval_mmlu/mmlu_anatomy_5/acc",
        "stderr_eval/mmlu_anatomy_5/acc_stderr",
    ]
