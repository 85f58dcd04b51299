"""Where the local sink writes: lighteval's layout, its templates, and save_details=False."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from local_helpers import DATE_ID, files_below, log_demo_samples, strict_json

from evalsink import EvaluationTracker
from evalsink.errors import SinkConfigError

TASKS = ["mmlu:anatomy|5", "leaderboard|arc:challenge|25", "lighteval|gsm8k|0"]


def _log_tasks(tracker: EvaluationTracker, tasks: list[str] = TASKS, count: int = 5) -> None:
    for task in tasks:
        log_demo_samples(tracker, task, count)


def _published(root: Path) -> set[Path]:
    """Files below root, except the tracker's own hidden spool folder."""
    return {path for path in files_below(root) if ".evalsink" not in path.relative_to(root).parts}


def test_default_layout_writes_exactly_lighteval_paths(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker)
    report = tracker.save()

    date_id = report.date_id
    assert date_id is not None
    assert DATE_ID.match(date_id), date_id
    out = tmp_path / "out"
    results = out / "results" / "org" / "model" / f"results_{date_id}.json"
    details = [
        out / "details" / "org" / "model" / date_id / f"details_{task}_{date_id}.parquet" for task in TASKS
    ]
    assert _published(out) == {results, *details}
    assert report["local"].ok
    assert report["local"].outputs == [str(results), *map(str, details)]
    # "org/model" is two folders, not one folder with an encoded slash
    assert (out / "results" / "org").is_dir()
    assert (out / "details" / "org" / "model").is_dir()
    assert strict_json(results.read_bytes())["config_general"]["model_name"] == "org/model"
    for path in details:
        assert pq.read_table(path).num_rows == 5


def test_bare_model_name_is_one_folder(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="gpt2")
    _log_tasks(tracker, ["mmlu:anatomy|5"])
    report = tracker.save()
    out, date_id = tmp_path / "out", report.date_id
    assert _published(out) == {
        out / "results" / "gpt2" / f"results_{date_id}.json",
        out / "details" / "gpt2" / str(date_id) / f"details_mmlu:anatomy|5_{date_id}.parquet",
    }


def test_task_names_keep_colon_and_pipe(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker)
    report = tracker.save()
    names = sorted(Path(path).name for path in report["local"].outputs if path.endswith(".parquet"))
    assert names == sorted(f"details_{task}_{report.date_id}.parquet" for task in TASKS)


@pytest.mark.parametrize(
    ("model_name", "org", "model"),
    [("org/model", "org", "model"), ("hf-org/Llama-3.1-8B", "hf-org", "Llama-3.1-8B")],
)
def test_results_path_template_places_results_and_details(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, model_name: str, org: str, model: str
) -> None:
    tracker = make_tracker(results_path_template="{output_dir}/custom/{org}/{model}")
    tracker.general_config_logger.log_model_info(model_name=model_name)
    _log_tasks(tracker)
    report = tracker.save()
    out, date_id = tmp_path / "out", str(report.date_id)
    folder = out / "custom" / org / model
    assert _published(out) == {
        folder / f"results_{date_id}.json",
        *(folder / "details" / date_id / f"details_{task}_{date_id}.parquet" for task in TASKS),
    }
    assert not (out / "results").exists()
    assert not (out / "details").exists()


def test_results_path_template_without_output_dir(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    elsewhere = tmp_path / "elsewhere"
    tracker = make_tracker(results_path_template=f"{elsewhere}/{{model}}")
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker, ["mmlu:anatomy|5"])
    report = tracker.save()
    date_id = str(report.date_id)
    assert _published(elsewhere) == {
        elsewhere / "model" / f"results_{date_id}.json",
        elsewhere / "model" / "details" / date_id / f"details_mmlu:anatomy|5_{date_id}.parquet",
    }
    assert _published(tmp_path / "out") == set()


def test_details_path_template_overrides_the_details_folder(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker(
        sink_config={"local": {"details_path_template": "{output_dir}/det/{org}/{model}"}},
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker)
    report = tracker.save()
    out, date_id = tmp_path / "out", str(report.date_id)
    assert _published(out) == {
        out / "results" / "org" / "model" / f"results_{date_id}.json",
        *(out / "det" / "org" / "model" / date_id / f"details_{task}_{date_id}.parquet" for task in TASKS),
    }


def test_details_path_template_wins_over_results_path_template(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker(
        results_path_template="{output_dir}/res/{model}",
        sink_config={"local": {"details_path_template": "{output_dir}/det/{model}"}},
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker, ["mmlu:anatomy|5"])
    report = tracker.save()
    out, date_id = tmp_path / "out", str(report.date_id)
    assert _published(out) == {
        out / "res" / "model" / f"results_{date_id}.json",
        out / "det" / "model" / date_id / f"details_mmlu:anatomy|5_{date_id}.parquet",
    }


def test_save_details_false_writes_results_only(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    tracker = make_tracker(save_details=False)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    _log_tasks(tracker)
    report = tracker.save()
    out = tmp_path / "out"
    results = out / "results" / "org" / "model" / f"results_{report.date_id}.json"
    assert _published(out) == {results}
    assert not (out / "details").exists()
    assert report["local"].outputs == [str(results)]
    data = strict_json(results.read_bytes())
    assert set(data["results"]) >= set(TASKS)


def test_two_saves_in_one_folder_keep_both_runs(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    reports = []
    for _ in range(2):
        tracker = make_tracker()
        tracker.general_config_logger.log_model_info(model_name="org/model")
        _log_tasks(tracker, ["mmlu:anatomy|5"])
        reports.append(tracker.save())
    first, second = (str(report.date_id) for report in reports)
    assert first != second
    folder = tmp_path / "out" / "details" / "org" / "model"
    assert sorted(path.name for path in folder.iterdir()) == sorted([first, second])
    results = tmp_path / "out" / "results" / "org" / "model"
    assert sorted(path.name for path in results.iterdir()) == sorted(
        [f"results_{first}.json", f"results_{second}.json"]
    )


@pytest.mark.parametrize(
    ("template", "bad"),
    [
        ("{output_dir}/{model_name}", "{model_name}"),
        ("{output_dir}/{date_id}/{model}", "{date_id}"),
        ("{output_dir}/{}", "{}"),
        ("{output_dir}/{0}", "{0}"),
    ],
)
def test_a_results_path_template_with_an_unknown_placeholder_is_refused_at_construction(
    make_tracker: Callable[..., EvaluationTracker], template: str, bad: str
) -> None:
    """Filled only at save(), a bad template cost the whole evaluation's files: refused up front."""
    with pytest.raises(SinkConfigError) as raised:
        make_tracker(results_path_template=template)
    message = str(raised.value)
    assert repr(template) in message
    assert bad in message
    assert "{output_dir}, {org}, {model}" in message


@pytest.mark.parametrize(
    "template", ["{output_dir}/{model:d}", "{output_dir}/{model", "{output_dir}/{model.x}"]
)
def test_a_template_that_cannot_be_filled_is_refused_at_construction(
    make_tracker: Callable[..., EvaluationTracker], template: str
) -> None:
    with pytest.raises(SinkConfigError, match="cannot be filled"):
        make_tracker(sink_config={"local": {"details_path_template": template}})


@pytest.mark.parametrize(
    "template",
    ["{output_dir}/res/{org}_{model}", "{output_dir}/{{literal}}/{model!r}", "{output_dir}/{model:>5}"],
)
def test_templates_lighteval_fills_are_accepted(
    make_tracker: Callable[..., EvaluationTracker], template: str
) -> None:
    tracker = make_tracker(results_path_template=template)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_demo_samples(tracker, "t|0", 2)
    assert tracker.save()["local"].ok
