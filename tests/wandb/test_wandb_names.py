"""Names the sink derives: keys of tasks and metrics, artifact collections, the run's name."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from wandb_helpers import PLAIN, run_of, table_at, wandb_tracker

# isort: split
# (its own block: sorted the same whether or not evalsink_wandb is a known first-party module)
from evalsink_wandb import details_key, metric_key
from evalsink_wandb.naming import artifact_name, scalars

SLASHED = "custom|org/ds|0"
UNDERSCORED = "custom|org_ds|0"


def sha8(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()[:8]


# -- pure functions ---------------------------------------------------------------------------
def test_names_without_a_slash_keep_their_keys() -> None:
    assert metric_key("lighteval|mmlu:anatomy|5", "acc") == "lighteval|mmlu:anatomy|5/acc"
    assert metric_key(UNDERSCORED, "acc_norm") == f"{UNDERSCORED}/acc_norm"
    assert metric_key("custom|v1.5|0", "em.strict") == "custom|v1.5|0/em.strict"
    assert details_key(UNDERSCORED) == f"details/{UNDERSCORED}"


def test_a_slash_in_a_name_gets_a_suffix_of_the_names_hash() -> None:
    """'/' -> '_' alone made custom|org/ds|0 and custom|org_ds|0 one key (one value lost)."""
    assert metric_key(SLASHED, "acc/norm") == f"{UNDERSCORED}~{sha8(SLASHED)}/acc_norm~{sha8('acc/norm')}"
    assert details_key(SLASHED) == f"details/{UNDERSCORED}~{sha8(SLASHED)}"
    assert details_key(SLASHED) != details_key(UNDERSCORED)


def test_a_name_that_looks_changed_and_a_task_named_details_are_changed_too() -> None:
    """So a changed name never equals one kept as it is, and no metric key is a details key."""
    looks_changed = f"{UNDERSCORED}~{sha8(SLASHED)}"
    assert details_key(looks_changed) != details_key(SLASHED)
    assert metric_key(looks_changed, "acc") != metric_key(SLASHED, "acc")
    assert metric_key("x", "details") == "x/details"  # as a metric it is kept
    assert metric_key("details", "x") != details_key("x")


def test_scalars_keep_every_value_and_list_the_renamed_names() -> None:
    results = {
        SLASHED: {"acc/norm": 0.1, "acc_norm": 0.2},
        UNDERSCORED: {"acc/norm": 0.3, "acc_norm": 0.4},
    }
    values = scalars(results)
    assert len(values.metrics) == 4
    assert values.metrics[f"{UNDERSCORED}/acc_norm"] == 0.4
    assert [message.split(" is logged")[0] for message in values.renamed] == [
        f"task {SLASHED!r}",
        "metric 'acc/norm'",
    ]


def test_artifact_names_stay_unless_the_mapping_lost_something() -> None:
    assert artifact_name("org/tiny-model") == "evalsink-results-org__tiny-model"
    assert artifact_name("meta-llama/Llama-3.1-8B") == "evalsink-results-meta-llama__Llama-3.1-8B"
    assert artifact_name(None) == "evalsink-results-model"
    assert artifact_name("org/模型") == f"evalsink-results-org___-{sha8('org/模型')}"
    assert artifact_name("org/模型") != artifact_name("org/型号")
    assert artifact_name("org__m") != artifact_name("org/m")  # '/' -> '__' could not be told apart
    long_a, long_b = "/scratch/" + "x" * 150 + "/step-1000", "/scratch/" + "x" * 150 + "/step-2000"
    assert artifact_name(long_a) != artifact_name(long_b)
    assert max(len(artifact_name(long_a)), len(artifact_name(long_b))) == 128


# -- against wandb ----------------------------------------------------------------------------
def test_names_that_differ_by_a_slash_keep_their_own_values_and_tables(tmp_path: Path) -> None:
    """The details are streamed before the results exist and must land where the keys say."""
    tracker = wandb_tracker(tmp_path, rows_per_increment=2)
    values = {SLASHED: 0.1, UNDERSCORED: 0.9}
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for index in range(3):
        for task, value in values.items():
            metrics = {"acc/norm": value, "acc_norm": 1 - value}
            tracker.details_logger.log(task, {"query": f"{task} q{index}"}, {"text": ["a"]}, metrics)
            tracker.metrics_logger.log(task, metrics)
    report = tracker.save()
    assert report.ok, str(report)

    run = run_of(tracker)
    [row] = run.history
    results = tracker.results["results"]
    keys = {metric_key(task, metric) for task in results for metric in results[task]}
    assert len(keys) == sum(len(metrics) for metrics in results.values())  # no key shared
    for task, metrics in results.items():
        for metric, value in metrics.items():
            assert row[metric_key(task, metric)] == pytest.approx(value)
            assert run.summary[metric_key(task, metric)] == pytest.approx(value)
    # the names without a '/' keep their keys; the others have the documented suffix
    assert row[f"{UNDERSCORED}/acc_norm"] == pytest.approx(0.1)
    assert row[f"{UNDERSCORED}~{sha8(SLASHED)}/acc_norm~{sha8('acc/norm')}"] == pytest.approx(0.1)
    for task in values:
        rows = table_at(run, details_key(task, run.run.run_id))
        assert [r["doc.query"] for r in rows] == [f"{task} q{i}" for i in range(3)]
    told = [warning for warning in report.warnings if warning.startswith("wandb: ")]
    assert [warning.split(" is logged")[0] for warning in told] == [
        f"wandb: task {SLASHED!r}",
        "wandb: metric 'acc/norm'",
        "wandb: metric 'acc/norm_stderr'",
    ]


def test_models_whose_names_lose_characters_get_artifacts_of_their_own(tmp_path: Path) -> None:
    names = []
    for model in ("org/模型", "org/型号"):
        tracker = wandb_tracker(tmp_path / sha8(model))
        tracker.general_config_logger.log_model_info(model_name=model)
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
        report = tracker.save()
        assert report.ok, str(report)
        artifact = run_of(tracker).artifact(type="evaluation-results")
        assert f"wandb artifact: {artifact.name} (evaluation-results)" in report["wandb"].outputs
        names.append(artifact.name)
    assert names[0] != names[1]
    assert all(name.startswith("evalsink-results-org___-") for name in names)


def test_a_run_started_before_the_model_was_known_is_named_after_it(tmp_path: Path) -> None:
    """README's pattern: log_model_info inside `with tracker:`, after the run started unnamed."""
    tracker = wandb_tracker(tmp_path)
    with tracker:
        assert not tracker.sink("wandb").wandb_run.name  # offline, W&B gives no name
        tracker.general_config_logger.log_model_info(model_name="org/late-model")
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
        report = tracker.save()
    assert report.ok, str(report)
    assert run_of(tracker).run.display_name == "org/late-model"


def test_a_name_given_to_the_run_is_kept(tmp_path: Path) -> None:
    tracker = wandb_tracker(tmp_path / "renamed")
    with tracker:
        tracker.sink("wandb").wandb_run.name = "named by the script"
        tracker.general_config_logger.log_model_info(model_name="org/late-model")
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
        assert tracker.save().ok
    assert run_of(tracker).run.display_name == "named by the script"

    tracker = wandb_tracker(tmp_path / "option", run_name="my eval")
    with tracker:
        tracker.general_config_logger.log_model_info(model_name="org/late-model")
        tracker.metrics_logger.log(PLAIN, {"acc": 1.0})
        assert tracker.save().ok
    assert run_of(tracker).run.display_name == "my eval"
