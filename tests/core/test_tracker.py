"""EvaluationTracker: sink selection, lighteval's accessors, the results it hands on, the spool's life."""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import math
import re
import statistics
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from core_helpers import Calls, Doc, ModelResponse, log_samples

from evalsink import EvaluationTracker
from evalsink import tracker as tracker_module
from evalsink.errors import EvalsinkError, SinkConfigError, SinkNotInstalledError
from evalsink.models import EvaluationResults
from evalsink.tracker import select_sinks

MakeTracker = Callable[..., EvaluationTracker]
SECTIONS = {"config_general", "results", "versions", "config_tasks", "summary_tasks", "summary_general"}


def _strict_json(path: Path) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"{path} holds the non-JSON constant {token}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def _results_file(output: Path, model: str = "org/model") -> Path:
    (found,) = (output / "results" / model).glob("results_*.json")
    return found


SPOOL_NAME = re.compile(r"details-[0-9a-f]{8}\.jsonl")


def _spool_file(folder: Path) -> Path:
    """The one spool file of a run folder, named details-<8 hex>.jsonl."""
    (found,) = folder.glob("details-*.jsonl")
    assert SPOOL_NAME.fullmatch(found.name), found.name
    return found


def _spooled_queries(path: Path) -> list[str]:
    return [json.loads(line)["doc"]["query"] for line in path.read_bytes().splitlines()]


# -- sink selection ------------------------------------------------------------------------------
def test_select_sinks_rules() -> None:
    assert select_sinks(["b", "a"], environ={}) == ["b", "a"]
    assert select_sinks("recorder, flaky", environ={}) == ["recorder", "flaky"]
    assert select_sinks([], environ={}) == []
    assert select_sinks(None, environ={}) == ["local"]
    assert select_sinks(None, environ={"EVALSINK_SINKS": " recorder ,flaky,, "}) == ["recorder", "flaky"]
    assert select_sinks(["x"], environ={"EVALSINK_SINKS": "recorder"}) == ["x"]  # explicit wins
    assert select_sinks(["local", "hub"], push_to_hub=True, environ={}) == ["local", "hub"]  # no duplicate
    assert select_sinks(
        None,
        push_to_hub=True,
        push_to_tensorboard=True,
        use_wandb=True,
        environ={"EVALSINK_SINKS": "recorder"},
    ) == ["recorder", "hub", "tensorboard", "wandb"]


def test_arguments_of_the_wrong_kind_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """These raised AttributeError ('list' object has no attribute 'get'), TypeError ('int' object
    is not iterable) and "no run '57ef...' to resume", an id the user never chose."""
    with pytest.raises(EvalsinkError, match=r"sinks must be a list of sink names .*not int"):
        EvaluationTracker(tmp_path, sinks=5)  # type: ignore[arg-type]
    with pytest.raises(
        SinkConfigError, match=r"sink_config must map sink names to their options .*not a list"
    ):
        EvaluationTracker(tmp_path, sinks=["local"], sink_config=["local"])  # type: ignore[arg-type]
    with pytest.raises(SinkConfigError, match=r"sink_config keys are sink names \(strings\), not 1"):
        EvaluationTracker(tmp_path, sinks=["local"], sink_config={1: {}})
    # checked here, not at rank 0's save() after the whole evaluation (TypeError there)
    for timeout in ("5", -1, math.nan, True):
        with pytest.raises(ValueError, match=r"merge_timeout must be a number of seconds, 0 or more"):
            EvaluationTracker(tmp_path, sinks=["local"], merge_timeout=timeout)  # type: ignore[arg-type]
    monkeypatch.delenv("EVALSINK_RUN_ID", raising=False)
    with pytest.raises(EvalsinkError, match=r"resume=True needs the id of the run to resume: pass run_id="):
        EvaluationTracker(tmp_path, sinks=["local"], resume=True)
    assert not (tmp_path / ".evalsink").exists()


def test_sinks_argument_is_the_exact_set(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(sinks=["recorder", "recorder-remote"])
    assert tracker.sink_names == ["recorder", "recorder-remote"]
    assert list(tracker.save().sinks) == ["recorder", "recorder-remote"]


def test_sinks_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls) -> None:
    monkeypatch.setenv("EVALSINK_SINKS", "recorder,recorder-remote")
    monkeypatch.setenv("EVALSINK_RECORDER_REMOTE__LABEL", "remote-from-env")
    tracker = EvaluationTracker(tmp_path)
    assert tracker.sink_names == ["recorder", "recorder-remote"]
    tracker.save()
    tracker.close()
    assert calls.hooks("remote-from-env") == ["run_started", "results_saved", "run_finished"]
    assert calls.hooks("recorder") == ["run_started", "results_saved", "run_finished"]


def test_the_default_is_the_local_sink(tmp_path: Path) -> None:
    tracker = EvaluationTracker(tmp_path)
    assert tracker.sink_names == ["local"]


@pytest.mark.parametrize(
    ("flag", "sink"), [("push_to_hub", "hub"), ("use_wandb", "wandb"), ("push_to_tensorboard", "tensorboard")]
)
def test_lighteval_flags_add_their_sink_and_fail_early_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, flag: str, sink: str
) -> None:
    # the sink's own test env installs it and tests the flag; here it is hidden whatever is installed
    from evalsink.discovery import Installed, discover

    real = discover()
    hidden = Installed({name: entry for name, entry in real.sinks.items() if name != sink}, real.conflicts)
    monkeypatch.setattr("evalsink.tracker.discover", lambda: hidden)
    assert EvaluationTracker(tmp_path, sinks=["recorder"], **{flag: False}).sink_names == ["recorder"]
    with pytest.raises(SinkNotInstalledError) as info:
        EvaluationTracker(tmp_path, sinks=["recorder"], **{flag: True})
    assert f'pip install "evalsink[{sink}]"' in str(info.value)
    assert not (tmp_path / ".evalsink").exists()


def test_lighteval_positional_arguments(tmp_path: Path) -> None:
    template = "{output_dir}/custom/{org}/{model}"
    positional = (str(tmp_path), template, False, False, False, "my-org", "pre", True, None, False)
    tracker = EvaluationTracker(*positional, sinks=["recorder"])
    settings = tracker.settings
    assert settings.output_dir == str(tmp_path)
    assert settings.results_path_template == "{output_dir}/custom/{org}/{model}"
    assert settings.save_details is False
    assert settings.hub_results_org == "my-org"
    assert settings.tensorboard_metric_prefix == "pre"
    assert settings.public is True


def test_sink_config_for_a_sink_not_installed_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError, match=r"not installed: wandbb"):
        EvaluationTracker(tmp_path, sinks=["recorder"], sink_config={"wandbb": {"project": "x"}})


def test_sink_config_for_an_installed_sink_not_enabled_is_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        tracker = EvaluationTracker(tmp_path, sinks=["recorder"], sink_config={"flaky": {"fail_in": "init"}})
    assert tracker.sink_names == ["recorder"]  # the flaky sink was neither built nor enabled
    assert "sink_config['flaky'] is ignored: the sink 'flaky' is not enabled" in caplog.text


def test_unknown_sink_option_is_refused_listing_the_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(SinkConfigError) as info:
        EvaluationTracker(tmp_path, sinks=["recorder"], sink_config={"recorder": {"lable": "x"}})
    message = str(info.value)
    assert "'lable'" in message
    assert "valid options: hook_timeout, label, path, required" in message


def test_unknown_sink_option_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSINK_RECORDER__LABLE", "x")
    with pytest.raises(SinkConfigError, match="EVALSINK_RECORDER__LABLE"):
        EvaluationTracker(tmp_path, sinks=["recorder"])


def test_run_id_from_argument_environment_or_random(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert EvaluationTracker(tmp_path, sinks=[], run_id="explicit").run_id == "explicit"
    a, b = EvaluationTracker(tmp_path, sinks=[]), EvaluationTracker(tmp_path, sinks=[])
    assert a.run_id != b.run_id
    monkeypatch.setenv("EVALSINK_RUN_ID", "from-env")
    assert EvaluationTracker(tmp_path, sinks=[]).run_id == "from-env"


@pytest.mark.parametrize(
    "run_id",
    ["../../esc", "..", ".hidden", "a/b", "a\\b", "-dash-first", "with space", "x" * 129, "ok\n", "é"],
)
def test_an_invalid_run_id_is_refused_at_construction(tmp_path: Path, run_id: str, calls: Calls) -> None:
    with pytest.raises(EvalsinkError, match="invalid run id"):
        EvaluationTracker(tmp_path / "out", sinks=["recorder"], run_id=run_id)
    assert not (tmp_path / "out").exists()
    assert not (tmp_path / "esc").exists()
    assert calls.all == []


def test_an_invalid_run_id_from_the_environment_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVALSINK_RUN_ID", "../../esc")
    with pytest.raises(EvalsinkError, match=r"invalid run id '\.\./\.\./esc'"):
        EvaluationTracker(tmp_path / "out", sinks=["recorder"])


@pytest.mark.parametrize("run_id", ["a", "0", "run-1.2_x", "A" * 128, "2025-11-05T14-43-47.148527"])
def test_valid_run_ids(tmp_path: Path, run_id: str) -> None:
    assert EvaluationTracker(tmp_path, sinks=[], run_id=run_id).run_id == run_id


def test_two_trackers_sharing_a_run_id_both_save_to_distinct_spools(
    make_tracker: MakeTracker, tmp_path: Path, calls: Calls
) -> None:
    first = make_tracker(run_id="same", flush_every=1)
    second = make_tracker(run_id="same", flush_every=1)
    log_samples(first, "t|x|0", 2)
    log_samples(second, "t|x|0", 3, start=10)
    run_folder = tmp_path / "out" / ".evalsink" / "runs" / "same"
    paths = sorted(run_folder.glob("details-*.jsonl"))
    assert len(paths) == 2
    assert {first.details_logger.spool.path, second.details_logger.spool.path} == set(paths)
    assert all(SPOOL_NAME.fullmatch(path.name) for path in paths)
    assert _spooled_queries(first.details_logger.spool.path) == ["t|x|0 q0", "t|x|0 q1"]
    assert _spooled_queries(second.details_logger.spool.path) == ["t|x|0 q10", "t|x|0 q11", "t|x|0 q12"]

    assert first.save().ok
    assert not first.details_logger.spool.path.exists()
    assert second.details_logger.spool.path.exists()  # the other tracker's spool is left alone
    assert second.save().ok
    assert not (tmp_path / "out" / ".evalsink").exists()
    assert calls.hooks().count("results_saved") == 2


# -- what the tracker hands on -------------------------------------------------------------------
# -- what the tracker hands on -------------------------------------------------------------------
def _mmlu_run(tracker: EvaluationTracker) -> None:
    tracker.general_config_logger.log_model_info({"model_name": "org/model", "hf_token": "hf_secret"})
    tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=None, job_id=0)
    for task in ("lighteval|mmlu:anatomy|5", "lighteval|mmlu:astronomy|5", "lighteval|gsm8k|0"):
        log_samples(tracker, task, 4)
        tracker.versions_logger.log(task, 0)
    tracker.task_config_logger.log({"lighteval|gsm8k|0": {"name": "gsm8k", "hf_repo": "openai/gsm8k"}})


def test_empty_run_saves_cleanly(make_tracker: MakeTracker, tmp_path: Path, calls: Calls) -> None:
    tracker = make_tracker(sinks=["recorder", "local"])
    report = tracker.save()
    assert report.ok
    assert report.warnings == []
    assert calls.of("results_saved")[0]["tasks"] == ["all"]
    written = _strict_json(_results_file(tmp_path / "out", "unknown-model"))
    assert written["results"] == {"all": {}}
    assert written["summary_tasks"] == {}
    assert not (tmp_path / "out" / "details").exists()


def test_results_property_and_final_dict(make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    _mmlu_run(tracker)
    tracker.metrics_logger.aggregate()
    tracker.details_logger.aggregate()
    results = tracker.results
    assert set(results) == SECTIONS
    assert json.loads(json.dumps(results)) == results  # JSON-ready
    assert results["config_general"]["model_name"] == "org/model"
    assert results["config_general"]["model_config"]["hf_token"] != "hf_secret"
    assert set(results["results"]) == {
        "lighteval|mmlu:anatomy|5",
        "lighteval|mmlu:astronomy|5",
        "lighteval|gsm8k|0",
        "lighteval|mmlu:_average|5",
        "all",
    }
    assert results["versions"]["lighteval|gsm8k|0"] == 0
    assert results["config_tasks"]["lighteval|gsm8k|0"]["hf_repo"] == "openai/gsm8k"
    assert set(results["summary_tasks"]["lighteval|gsm8k|0"]["hashes"]) == {
        "hash_examples",
        "hash_full_prompts",
        "hash_input_tokens",
        "hash_cont_tokens",
    }

    final = tracker.generate_final_dict()
    assert set(final) == SECTIONS
    assert set(final["results"]) == {
        "lighteval:mmlu:anatomy:5",
        "lighteval:mmlu:astronomy:5",
        "lighteval:gsm8k:0",
        "lighteval:mmlu:_average:5",
        "all",
    }
    assert final["results"]["lighteval:gsm8k:0"] == results["results"]["lighteval|gsm8k|0"]
    assert set(final["summary_tasks"]) == {
        "lighteval:mmlu:anatomy:5",
        "lighteval:mmlu:astronomy:5",
        "lighteval:gsm8k:0",
    }
    assert final["config_general"] == results["config_general"]


def test_details_property_reads_back_logged_samples(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(flush_every=3)
    doc = Doc(query="What is 2+2?", choices=["3", "4"], gold_index=1)
    response = ModelResponse(input="Q: What is 2+2?\nA:", text=["4"], input_tokens=[1, 2])
    tracker.details_logger.log("lighteval|math|0", doc, response, {"acc": 1.0})
    log_samples(tracker, "lighteval|other|0", 4)  # 3 flushed, 2 still buffered
    details = tracker.details
    assert list(details) == ["lighteval|math|0", "lighteval|other|0"]
    (record,) = details["lighteval|math|0"]
    assert record["doc"] == {"query": "What is 2+2?", "choices": ["3", "4"], "gold_index": 1, "task_name": ""}
    assert record["model_response"]["text"] == ["4"]
    assert record["model_response"]["input"] == "Q: What is 2+2?\nA:"
    assert record["metric"] == {"acc": 1.0}
    assert [r["doc"]["query"] for r in details["lighteval|other|0"]] == [
        f"lighteval|other|0 q{i}" for i in range(4)
    ]


def test_details_of_a_saved_run_are_read_back_from_its_saved_files(make_tracker: MakeTracker) -> None:
    """lighteval's main_accelerate takes ``pipeline.get_details()`` (``details_logger.details``)
    before saving and returns it to its caller, who reads it after the spool was removed."""
    tracker = make_tracker(sinks=["local", "recorder"])
    log_samples(tracker, "lighteval|t|0", 3)
    taken_before_save = tracker.details_logger.details
    before = tracker.details["lighteval|t|0"]
    tracker.save()  # outside a with block: the run is closed and its spool removed
    assert not tracker.details_logger.spool.path.exists()
    assert taken_before_save["lighteval|t|0"] == before
    assert tracker.details["lighteval|t|0"] == before
    assert [record["doc"]["query"] for record in before] == [f"lighteval|t|0 q{i}" for i in range(3)]
    assert list(tracker.details) == ["lighteval|t|0"]


def test_details_after_the_block_of_a_saved_run_come_from_its_files(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(sinks=["local"])
    with tracker:
        log_samples(tracker, "lighteval|t|0", 2)
        tracker.save()
        assert len(tracker.details["lighteval|t|0"]) == 2
    assert len(tracker.details["lighteval|t|0"]) == 2


def test_details_of_a_saved_run_without_the_local_sink_say_where_to_look(make_tracker: MakeTracker) -> None:
    tracker = make_tracker()  # the recorder sink only: no local files to read back
    log_samples(tracker, "lighteval|t|0", 2)
    tracker.save()
    with pytest.raises(EvalsinkError, match="the local sink did not save this run"):
        tracker.details  # noqa: B018


def test_details_stay_readable_when_a_sink_failed(make_tracker: MakeTracker) -> None:
    tracker = make_tracker(sinks=["recorder", "flaky"], sink_config={"flaky": {"fail_in": "results_saved"}})
    log_samples(tracker, "lighteval|t|0", 2)
    assert not tracker.save().ok
    assert [r["doc"]["query"] for r in tracker.details["lighteval|t|0"]] == [
        "lighteval|t|0 q0",
        "lighteval|t|0 q1",
    ]


def test_the_local_results_file_validates_and_matches(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(sinks=["local"])
    _mmlu_run(tracker)
    report = tracker.save()
    path = _results_file(tmp_path / "out")
    assert report["local"].outputs[0] == str(path)
    assert path.name == f"results_{tracker.run.date_id}.json"
    loaded = EvaluationResults.model_validate_json(path.read_bytes())
    assert loaded.config_general.model_name == "org/model"
    assert loaded.config_general.model_configuration is not None
    assert loaded.config_general.model_configuration["hf_token"] != "hf_secret"
    assert "hf_secret" not in path.read_text(encoding="utf-8")
    assert loaded.model_dump(mode="json")["results"] == tracker.results["results"]
    assert loaded.summary_tasks["lighteval|gsm8k|0"].non_truncated == 4
    assert loaded.summary_general.non_truncated == 12


def test_save_aggregates_when_the_caller_did_not(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    values = [1.0, 0.0, 1.0]
    for value in values:
        tracker.metrics_logger.log("lighteval|t|0", {"acc": value})
    tracker.save()
    results = tracker.results["results"]
    assert results["lighteval|t|0"]["acc"] == pytest.approx(statistics.mean(values))
    assert results["all"]["acc"] == pytest.approx(statistics.mean(values))
    assert calls.of("results_saved")[0]["tasks"] == ["all", "lighteval|t|0"]


def test_save_keeps_the_callers_own_aggregation(make_tracker: MakeTracker) -> None:
    class Task:
        def aggregation(self) -> dict[str, Callable[..., Any]]:
            return {"acc": max}

    tracker = make_tracker()
    for value in [0.0, 0.25, 0.5]:
        tracker.metrics_logger.log("lighteval|t|0", {"acc": value})
    tracker.metrics_logger.aggregate(task_dict={"lighteval|t|0": Task()})
    tracker.save()
    assert tracker.results["results"]["lighteval|t|0"]["acc"] == 0.5  # max, not re-aggregated as a mean


def test_save_re_aggregates_late_values_with_the_callers_task_dict_and_bootstrap(
    make_tracker: MakeTracker,
) -> None:
    class Task:
        def aggregation(self) -> dict[str, Callable[..., Any]]:
            return {"acc": max}

    tracker = make_tracker()
    for value in [0.0, 0.25]:
        tracker.metrics_logger.log("lighteval|t|0", {"acc": value})
    tracker.metrics_logger.aggregate(task_dict={"lighteval|t|0": Task()}, bootstrap_iters=0)
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 0.75})  # logged after aggregate(): stale
    tracker.save()
    assert tracker.results["results"]["lighteval|t|0"] == {"acc": 0.75}  # max of all; no stderr


def test_a_task_aggregation_that_raises_is_left_out_with_a_warning(make_tracker: MakeTracker) -> None:
    def broken(values: list[Any]) -> float:
        raise ZeroDivisionError("no positives")

    class Task:
        def aggregation(self) -> dict[str, Callable[..., Any]]:
            return {"f1": broken}

    tracker = make_tracker()
    for value in [1.0, 0.0]:
        tracker.metrics_logger.log("lighteval|t|0", {"f1": value, "acc": value})
    tracker.metrics_logger.aggregate(task_dict={"lighteval|t|0": Task()})
    report = tracker.save()
    assert report.ok
    results = tracker.results["results"]["lighteval|t|0"]
    assert "f1" not in results
    assert results["acc"] == 0.5
    assert tracker.metrics_logger.failed_aggregations == {
        "lighteval|t|0": {"f1": "ZeroDivisionError: no positives"}
    }
    assert any(
        "'lighteval|t|0'" in w and "'f1'" in w and "aggregation failed" in w and "no positives" in w
        for w in report.warnings
    ), report.warnings


def test_a_metric_logged_as_float_then_string_is_a_warning(make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 1.0})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": "error: timeout"})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 0.0})
    report = tracker.save()
    assert report.ok
    assert tracker.results["results"]["lighteval|t|0"]["acc"] == 0.5
    assert any("'acc'" in w and "1 value(s) that are not single numbers" in w for w in report.warnings), (
        report.warnings
    )


def test_nan_metric_becomes_null_and_a_warning(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(sinks=["local", "recorder"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    tracker.details_logger.log("lighteval|t|0", {"query": "q"}, {"input": "p"}, {"acc": math.nan})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": math.nan})  # one value: no stderr computed
    report = tracker.save()
    written = _strict_json(_results_file(tmp_path / "out"))
    assert written["results"]["lighteval|t|0"]["acc"] is None
    assert written["results"]["all"]["acc"] is None
    assert any("'lighteval|t|0'" in w and "'acc'" in w and "null" in w for w in report.warnings)
    assert any("details of 'lighteval|t|0': 1 NaN/inf" in w for w in report.warnings)
    assert report.ok  # a warning, not a failure


def test_nan_among_several_metric_values_does_not_crash_save(make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    tracker.metrics_logger.log("lighteval|t|0", {"acc": math.nan})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 1.0})
    report = tracker.save()
    assert report.ok
    results = tracker.results["results"]["lighteval|t|0"]
    assert results["acc"] is None
    assert results["acc_stderr"] is None
    assert any("'acc'" in w and "null" in w for w in report.warnings)
    assert any("'acc_stderr'" in w and "null" in w for w in report.warnings)


def test_inf_among_several_metric_values_does_not_crash_save(
    make_tracker: MakeTracker, tmp_path: Path
) -> None:
    tracker = make_tracker(sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    tracker.metrics_logger.log("lighteval|t|0", {"acc": math.inf})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 1.0})
    report = tracker.save()
    written = _strict_json(_results_file(tmp_path / "out"))
    assert written["results"]["lighteval|t|0"] == {"acc": None, "acc_stderr": None}
    assert any("'acc'" in w and "inf" in w for w in report.warnings), report.warnings


# -- the spool's life ----------------------------------------------------------------------------
def test_spool_is_removed_after_a_successful_with_block(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(run_id="ok-run", flush_every=2)
    spool_dir = tmp_path / "out" / ".evalsink" / "runs" / "ok-run"
    with tracker:
        log_samples(tracker, "lighteval|t|0", 5)
        assert _spool_file(spool_dir) == tracker.details_logger.spool.path
        tracker.save()
        assert tracker.details_logger.spool.path.exists()  # inside the block, kept until it ends
    assert not spool_dir.exists()
    assert not (tmp_path / "out" / ".evalsink").exists()
    assert (tmp_path / "out").is_dir()


def test_evalsink_folder_is_kept_when_something_else_is_in_it(
    make_tracker: MakeTracker, tmp_path: Path
) -> None:
    keep = tmp_path / "out" / ".evalsink" / "notes.txt"
    keep.parent.mkdir(parents=True)
    keep.write_text("not evalsink's to delete", encoding="utf-8")
    other_run = tmp_path / "out" / ".evalsink" / "runs" / "older-run" / "details-0123abcd.jsonl"
    other_run.parent.mkdir(parents=True)
    other_run.write_bytes(b"")
    tracker = make_tracker(run_id="ok-run", flush_every=1)
    log_samples(tracker, "lighteval|t|0", 2)
    assert tracker.save().ok
    assert not (tmp_path / "out" / ".evalsink" / "runs" / "ok-run").exists()
    assert keep.exists()
    assert other_run.exists()


def test_a_saved_run_outside_a_with_block_removes_its_spool_at_once(
    make_tracker: MakeTracker, tmp_path: Path
) -> None:
    tracker = make_tracker(run_id="plain", flush_every=2)
    log_samples(tracker, "lighteval|t|0", 3)
    assert tracker in tracker_module._OPEN
    assert _spool_file(tmp_path / "out" / ".evalsink" / "runs" / "plain").exists()
    assert tracker.save().ok
    assert not (tmp_path / "out" / ".evalsink").exists()  # now, not at interpreter exit
    assert tracker not in tracker_module._OPEN


class _OrderedRuns(list[Any]):
    """Open runs in a known order (the tracker keeps a set)."""

    def discard(self, item: Any) -> None:
        if item in self:
            self.remove(item)


def test_the_exit_handler_closes_every_run_when_one_fails_to_close(
    make_tracker: MakeTracker, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A run whose last flush fails at exit (a full disk) is reported with where its flushed
    samples are; the runs after it are still finished (Python's exit stops at the first error)."""
    failing, other = (
        make_tracker(run_id="disk-full", flush_every=2),
        make_tracker(run_id="fine", flush_every=2),
    )
    log_samples(failing, "lighteval|t|0", 3)
    log_samples(other, "lighteval|t|0", 3)

    def full_disk() -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(failing.details_logger.spool, "flush", full_disk)
    monkeypatch.setattr(tracker_module, "_OPEN", _OrderedRuns([failing, other]))  # the failing one first
    monkeypatch.setattr(tracker_module, "_BUILT", weakref.WeakSet())  # not other tests' unstarted runs
    with caplog.at_level(logging.ERROR, logger="evalsink"):
        tracker_module._close_open_runs()
    assert other not in tracker_module._OPEN  # closed although the first one failed
    assert other._finished
    [record] = [r for r in caplog.records if "at exit failed" in r.getMessage()]
    assert "'disk-full'" in record.getMessage()
    assert "No space left" in record.getMessage()
    assert str(failing.details_logger.spool.path) in record.getMessage()
    monkeypatch.undo()
    failing.close()


def test_spool_is_kept_when_a_sink_failed(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(
        sinks=["recorder", "flaky"], sink_config={"flaky": {"fail_in": "results_saved"}}, run_id="bad-run"
    )
    with tracker:
        log_samples(tracker, "lighteval|t|0", 5)
        report = tracker.save()
    assert report.failed == ["flaky"]
    spool = _spool_file(tmp_path / "out" / ".evalsink" / "runs" / "bad-run")
    assert _spooled_queries(spool) == [f"lighteval|t|0 q{i}" for i in range(5)]


def test_spool_is_kept_when_a_sink_failed_in_a_plain_save(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(
        sinks=["recorder", "flaky"], sink_config={"flaky": {"fail_in": "results_saved"}}, run_id="bad-run"
    )
    log_samples(tracker, "lighteval|t|0", 3)
    report = tracker.save()
    assert report.failed == ["flaky"]
    assert tracker not in tracker_module._OPEN  # the run is over all the same
    spool = _spool_file(tmp_path / "out" / ".evalsink" / "runs" / "bad-run")
    assert _spooled_queries(spool) == [f"lighteval|t|0 q{i}" for i in range(3)]


def test_spool_is_kept_when_the_with_block_raised(make_tracker: MakeTracker, tmp_path: Path) -> None:
    tracker = make_tracker(run_id="crashed")

    def evaluate() -> None:
        with tracker:
            log_samples(tracker, "lighteval|t|0", 2)
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        evaluate()
    spool = _spool_file(tmp_path / "out" / ".evalsink" / "runs" / "crashed")
    assert _spooled_queries(spool) == ["lighteval|t|0 q0", "lighteval|t|0 q1"]


def test_spool_of_a_remote_output_goes_to_the_spool_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, calls: Calls
) -> None:
    pytest.importorskip("fsspec")
    monkeypatch.setenv("EVALSINK_SPOOL_DIR", str(tmp_path / "spools"))
    tracker = EvaluationTracker("memory://evalsink-test-bucket/out", sinks=["recorder"], run_id="remote-run")
    log_samples(tracker, "lighteval|t|0", 2)
    tracker.details_logger.flush()
    run_folder = tmp_path / "spools" / "evalsink-runs" / "remote-run"
    assert _spool_file(run_folder) == tracker.details_logger.spool.path
    assert tracker.save().ok
    assert calls.queries() == ["lighteval|t|0 q0", "lighteval|t|0 q1"]
    assert not run_folder.exists()
    tracker.close()  # a second close is harmless


def test_leaving_the_with_block_without_save_says_nothing_was_written(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with (
        caplog.at_level(logging.WARNING, logger="evalsink"),
        EvaluationTracker(tmp_path, run_id="forgot") as tracker,
    ):
        tracker.details_logger.log("custom|t|0", {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
        tracker.metrics_logger.log("custom|t|0", {"acc": 1.0})
    warning = caplog.text
    assert "run 'forgot': the with block ended without save()" in warning
    assert f"1 logged sample(s) are kept for `evalsink recover {tmp_path} --run-id forgot`" in warning
    assert not (tmp_path / "results").exists()
    assert (tmp_path / ".evalsink" / "runs" / "forgot").is_dir()  # the spool it names is there


def test_no_such_warning_after_save_or_for_an_empty_block(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        with EvaluationTracker(tmp_path / "saved") as tracker:
            tracker.details_logger.log("custom|t|0", {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
            tracker.save()
        with EvaluationTracker(tmp_path / "empty"):
            pass
    assert "without save()" not in caplog.text


def test_report_text_names_the_date_only_when_there_is_one() -> None:
    from evalsink.report import SaveReport

    assert str(SaveReport(run_id="job42", date_id=None)) == "run job42: ok"  # a rank other than 0
    assert str(SaveReport(run_id="job42", date_id="2026-11-27T13-00-00.000000")) == (
        "run job42 (2026-11-27T13-00-00.000000): ok"
    )


def test_save_after_a_failed_aggregate_fails_the_same_way(
    make_tracker: MakeTracker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It used to re-aggregate without the caller's tasks: plain means, written as if fine."""
    from evalsink.loggers import MetricsLogger

    tracker = make_tracker()
    tracker.metrics_logger.log("lighteval|t|0", {"f1": 1.0})
    task_dict = {"lighteval|t|0": object()}

    def broken(self: MetricsLogger, task_dict: Any = None, bootstrap_iters: int = 1000) -> None:
        raise RuntimeError("aggregation bug")

    monkeypatch.setattr(MetricsLogger, "aggregate", broken)
    with pytest.raises(RuntimeError, match="aggregation bug"):
        tracker.metrics_logger.aggregate(task_dict=task_dict)
    assert tracker.metrics_logger.last_task_dict is task_dict
    with pytest.raises(RuntimeError, match="aggregation bug"):
        tracker.save()


@dataclasses.dataclass
class _Config:
    name: str = "t"


class _MaxTask:
    """A task (as lighteval's) whose ``em`` aggregates as a max, not a mean."""

    config = _Config()

    def aggregation(self) -> dict[str, Callable[..., Any]]:
        return {"em": max}


def test_save_without_aggregate_uses_the_logged_tasks_aggregation(make_tracker: MakeTracker) -> None:
    """A script that logged its tasks but left aggregating to save() had a ``max`` metric written
    as a plain mean (0.5 instead of 1.0), with no warning."""

    tracker = make_tracker()
    tracker.task_config_logger.log({"lighteval|t|0": _MaxTask(), "lighteval|plain|0": _Config("plain")})
    for value in [1.0, 0.0]:
        tracker.metrics_logger.log("lighteval|t|0", {"em": value})
        tracker.metrics_logger.log("lighteval|plain|0", {"em": value})
    tracker.save()
    assert tracker.metrics_logger.metric_aggregated["lighteval|t|0"]["em"] == 1.0
    assert tracker.metrics_logger.metric_aggregated["lighteval|plain|0"]["em"] == 0.5


def test_save_keeps_the_callers_own_aggregate_choice(make_tracker: MakeTracker) -> None:
    tracker = make_tracker()
    tracker.task_config_logger.log({"lighteval|t|0": _MaxTask()})
    tracker.metrics_logger.log("lighteval|t|0", {"em": 1.0})
    tracker.metrics_logger.aggregate()  # no task_dict: the caller asked for means
    tracker.metrics_logger.log("lighteval|t|0", {"em": 0.0})  # stale: save() aggregates again
    tracker.save()
    assert tracker.metrics_logger.metric_aggregated["lighteval|t|0"]["em"] == 0.5


def test_means_instead_of_the_tasks_aggregation_are_in_the_report(make_tracker: MakeTracker) -> None:
    class Task:
        def aggregation(self) -> dict[str, Callable[..., Any]]:
            return {"f1": max}

    tracker = make_tracker()
    for value in [1.0, 0.0]:
        tracker.metrics_logger.log("lighteval|t|0", {"f1": value, "extra": value})
    tracker.metrics_logger.aggregate(task_dict={"lighteval|t|0": Task()})
    report = tracker.save()
    assert "results['lighteval|t|0']: metric(s) 'extra' not in the task's aggregation(): plain mean" in (
        report.warnings
    )


def test_generate_final_dict_keeps_nan_as_lighteval_does(make_tracker: MakeTracker) -> None:
    """lighteval's pipeline prints this dict with '%.4f'; None (the JSON-ready form) made it raise."""
    tracker = make_tracker()
    tracker.metrics_logger.log("lighteval|t|0", {"f1": float("nan"), "acc": 1.0})
    tracker.metrics_logger.aggregate()
    final = tracker.generate_final_dict()
    assert math.isnan(final["results"]["lighteval:t:0"]["f1"])
    assert f"{final['results']['lighteval:t:0']['f1']:.4f}" == "nan"
    assert final["results"]["lighteval:t:0"]["acc"] == 1.0
    assert tracker.results["results"]["lighteval|t|0"]["f1"] is None  # the JSON-ready form is unchanged


def test_an_output_dir_that_cannot_hold_the_run_fails_at_construction(tmp_path: Path) -> None:
    """It used to fail at the first flush (sample 1,000, mid-evaluation) with a raw OSError."""
    from evalsink.storage import OutputDirError

    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    for output in (a_file, a_file / "below"):
        expected = rf"output_dir '{re.escape(str(output))}' cannot be used: .* is not a folder"
        with pytest.raises(OutputDirError, match=expected):
            EvaluationTracker(output)
    unknown = r"output_dir 'nosuchprotocol://bucket/x' cannot be used: Protocol not known"
    with pytest.raises(OutputDirError, match=unknown):
        EvaluationTracker("nosuchprotocol://bucket/x")
    assert not (tmp_path / ".evalsink").exists()  # the check creates nothing


def test_the_cli_says_an_unusable_output_dir_in_one_line(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from evalsink.cli import main

    a_file = tmp_path / "results.txt"
    a_file.write_text("not a folder")
    result = CliRunner().invoke(main, ["demo", "--output-dir", str(a_file)])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1, result.output
    assert result.output.startswith("evalsink: error: output_dir ")


def test_values_lighteval_writes_as_given_never_fail_save(tmp_path: Path) -> None:
    """A version logged as 1.5, a task config named 123, ``max_samples=0.5``: lighteval writes them
    as given. A stricter results model made ``save()`` fail after the whole evaluation (nothing
    written, and `evalsink recover` failed the same way)."""
    tracker = EvaluationTracker(tmp_path, run_id="loose")
    tracker.general_config_logger.log_model_info(model_name="org/m")
    tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=0.5, job_id=3.5)
    tracker.general_config_logger.lighteval_sha = 1234  # type: ignore[assignment]
    tracker.versions_logger.log("t|0", 1.5)
    tracker.versions_logger.log("u|0", [1, 0])  # type: ignore[arg-type]
    tracker.task_config_logger.log({"t|0": {"name": 123, "version": 0.1}})
    log_samples(tracker, "t|0", 2)
    assert tracker.save().ok
    (results_file,) = (tmp_path / "results" / "org" / "m").glob("results_*.json")
    saved = EvaluationResults.model_validate_json(results_file.read_text())
    assert saved.versions == {"t|0": 1.5, "u|0": [1, 0]}
    assert (saved.config_tasks["t|0"].name, saved.config_tasks["t|0"].version) == (123, 0.1)
    general = saved.config_general
    assert (general.max_samples, general.job_id, general.lighteval_sha) == (0.5, 3.5, 1234)
    assert saved.versions["t|0"] == 1.5


@pytest.mark.parametrize("in_block", [False, True])
def test_logging_after_save_is_refused(tmp_path: Path, in_block: bool) -> None:
    """Samples logged after save() used to vanish (or, at the next flush, recreate the removed
    spool and fail with a confusing error); inside a `with` block they reached the sinks after
    results_saved and were dropped."""
    tracker = EvaluationTracker(tmp_path, run_id="after")
    if in_block:
        tracker.__enter__()
    log_samples(tracker, "t|0", 2)
    tracker.save()
    with pytest.raises(
        EvalsinkError, match=r"run 'after' was saved: what is logged now would be written nowhere"
    ):
        log_samples(tracker, "t|0", 1)
    with pytest.raises(EvalsinkError, match="was saved"):
        tracker.metrics_logger.log("t|0", {"acc": 1.0})
    if in_block:
        tracker.__exit__(None, None, None)
    assert len(tracker.details["t|0"]) == 2
    assert not (tmp_path / ".evalsink").exists()


def test_logging_after_a_failed_run_finished_is_refused(tmp_path: Path) -> None:
    tracker = EvaluationTracker(tmp_path, run_id="gone")
    log_samples(tracker, "t|0", 1)
    tracker.close(RuntimeError("the evaluation crashed"))
    with pytest.raises(EvalsinkError, match=r"run 'gone' has finished \(failed\)"):
        log_samples(tracker, "t|0", 1)


def test_details_stay_readable_after_save_when_no_details_file_was_written(tmp_path: Path) -> None:
    """lighteval's CLI runs with save_details=False and its pipeline returns ``details`` to the
    caller after saving: that mapping (taken before save) and ``preview_outputs`` used to raise
    FileNotFoundError. The spool stays until nothing can read it, marked saved (not recoverable)."""
    import gc

    tracker = EvaluationTracker(tmp_path, run_id="kept", save_details=False)
    tracker.general_config_logger.log_model_info(model_name="m")
    log_samples(tracker, "t|0", 3)
    taken_before = tracker.details
    tracker.save()
    assert not list(tmp_path.glob("details/**/*.parquet"))
    assert [r["doc"]["query"] for r in taken_before["t|0"]] == ["t|0 q0", "t|0 q1", "t|0 q2"]
    assert len(tracker.details["t|0"]) == 3
    tracker.preview_outputs()
    # the run itself is done and gone from the runs folder: nothing to recover, resume or merge
    assert not (tmp_path / ".evalsink" / "runs" / "kept").exists()
    with pytest.raises(EvalsinkError, match="no run 'kept' to resume"):
        EvaluationTracker(tmp_path, run_id="kept", resume=True)
    del tracker, taken_before
    gc.collect()
    assert not (tmp_path / ".evalsink").exists()


def test_preview_outputs_shows_samples_whose_doc_or_response_is_not_an_object(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Any JSON value is kept as a doc or a response (and round-trips through the files), but
    preview_outputs() read fields of them and raised AttributeError on a string or a list."""
    tracker = EvaluationTracker(tmp_path, run_id="odd")
    tracker.details_logger.log("t|0", "just a query", ["an", "answer"], {"acc": 1.0})
    tracker.details_logger.log("t|0", None, None, {"acc": 0.0})
    tracker.preview_outputs(samples=2)
    shown = capsys.readouterr().out
    assert "query: just a query\nprediction: ['an', 'answer']\nmetrics: {'acc': 1.0}" in shown
    assert "query: \nprediction: \nmetrics: {'acc': 0.0}" in shown
    tracker.close()


def test_a_sink_whose_own_url_is_unusable_fails_naming_the_sink(tmp_path: Path) -> None:
    """Not as an error about output_dir: the URL is the sink's (the example jsonl sink's test)."""
    from evalsink.storage import OutputDir, OutputDirError

    with pytest.raises(OutputDirError, match=r"^'nosuchprotocol://x' cannot be used: Protocol not known"):
        OutputDir("nosuchprotocol://x")


def test_a_forked_child_leaves_the_parents_kept_details_alone(tmp_path: Path) -> None:
    """The finalizer that deletes the kept spool is inherited by a forked child: only the parent
    may run it (a child exiting normally used to delete what the parent still reads)."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from evalsink import EvaluationTracker\n"
        f"t = EvaluationTracker({str(tmp_path)!r}, save_details=False, flush_every=1)\n"
        "t.details_logger.log('t|0', {'query': 'q'}, {'text': ['a']}, {'acc': 1.0})\n"
        "t.save()\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    sys.exit(0)\n"
        "os.waitpid(pid, 0)\n"
        "print(len(t.details['t|0']))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "1"
    assert not (tmp_path / ".evalsink").exists()  # and the parent's own exit removed it


def test_nan_in_configs_is_reported(tmp_path: Path) -> None:
    """A ``temperature=nan`` or a task config's NaN weight was written as null, unreported."""

    @dataclasses.dataclass
    class ModelConfig:
        model_name: str = "org/m"
        temperature: float = math.nan

    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="cfg-nan")
    tracker.general_config_logger.log_model_info(model_config=ModelConfig())
    tracker.task_config_logger.log({"t|0": {"name": "t", "weights": [1.0, math.inf]}})
    tracker.versions_logger.log("t|0", 1)
    log_samples(tracker, "t|0", 2)
    report = tracker.save()
    assert "config_general: 1 NaN/inf value(s) written as null" in report.warnings
    assert "config_tasks: 1 NaN/inf value(s) written as null" in report.warnings
    assert not any(warning.startswith("versions") for warning in report.warnings)
    (results_file,) = (tmp_path / "results" / "org" / "m").glob("results_*.json")
    saved = json.loads(results_file.read_text())
    assert saved["config_general"]["model_config"]["temperature"] is None
