"""Every tag and value a run writes, read back with TensorBoard's own EventAccumulator."""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
from tb_helpers import ANATOMY, ASTRONOMY, PLAIN, log_evaluation, read_events, text_of

from evalsink import EvaluationTracker

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


def test_null_values_are_skipped_and_said(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with EvaluationTracker(tmp_path, sinks=["tensorboard"]) as tracker:
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0, "f1": math.nan})
        with caplog.at_level(logging.WARNING, logger="evalsink.tensorboard"):
            report = tracker.save()

    assert report.ok, str(report)
    assert tracker.results["results"][PLAIN]["f1"] is None
    scalars = read_events(tmp_path / "tb" / "eval").Tags()["scalars"]
    assert "eval/plain/acc" in scalars
    assert not [tag for tag in scalars if tag.endswith("/f1")]
    assert f"not written: {PLAIN}/f1" in caplog.text


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
