"""``tracker.load_details_datasets``: by date id, 'first' and 'last', filtered by task name."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from local_helpers import log_demo_samples

from evalsink import EvaluationTracker

pytestmark = pytest.mark.usefixtures("hf_offline")

ANATOMY, GSM8K = "mmlu:anatomy|5", "lighteval|gsm8k|5"


def _run(
    make_tracker: Callable[..., EvaluationTracker], seed: int, tasks: list[str] | None = None, **kwargs: Any
) -> tuple[EvaluationTracker, str, dict[str, list[dict[str, Any]]]]:
    model_name = kwargs.pop("model_name", "org/model")
    tracker = make_tracker(**kwargs)
    tracker.general_config_logger.log_model_info(model_name=model_name)
    expected = {task: log_demo_samples(tracker, task, 6, seed=seed) for task in tasks or [ANATOMY, GSM8K]}
    report = tracker.save()
    assert report["local"].ok, report
    return tracker, str(report.date_id), expected


@pytest.fixture
def two_runs(
    make_tracker: Callable[..., EvaluationTracker],
) -> tuple[EvaluationTracker, list[str], list[dict[str, list[dict[str, Any]]]]]:
    """Two saves of the same model in one output folder (two trackers, as two evaluations)."""
    _, first_date, first = _run(make_tracker, seed=1)
    tracker, second_date, second = _run(make_tracker, seed=2)
    assert first_date < second_date
    assert first[ANATOMY] != second[ANATOMY]
    return tracker, [first_date, second_date], [first, second]


def test_explicit_date_id_loads_that_run(two_runs: Any) -> None:
    tracker, dates, expected = two_runs
    for date_id, rows in zip(dates, expected, strict=True):
        loaded = tracker.load_details_datasets(date_id, [ANATOMY, GSM8K])
        assert sorted(loaded) == sorted([ANATOMY, GSM8K])
        for task in (ANATOMY, GSM8K):
            assert loaded[task].column_names == ["doc", "metric", "model_response"]
            assert loaded[task].to_list() == rows[task]


@pytest.mark.parametrize(("which", "index"), [("first", 0), ("last", 1)])
def test_first_and_last(two_runs: Any, which: str, index: int) -> None:
    tracker, _, expected = two_runs
    loaded = tracker.load_details_datasets(which, [ANATOMY])
    assert list(loaded) == [ANATOMY]
    assert loaded[ANATOMY].to_list() == expected[index][ANATOMY]


@pytest.mark.parametrize(
    ("requested", "keys"),
    [
        ([ANATOMY], [ANATOMY]),
        (["mmlu:anatomy"], [ANATOMY]),
        (["lighteval|gsm8k"], [GSM8K]),
        (["mmlu:anatomy", GSM8K], [ANATOMY, GSM8K]),
    ],
)
def test_filter_by_full_name_or_without_fewshot(two_runs: Any, requested: list[str], keys: list[str]) -> None:
    tracker, _, expected = two_runs
    loaded = tracker.load_details_datasets("last", requested)
    assert sorted(loaded) == sorted(keys)
    for key in keys:
        assert loaded[key].to_list() == expected[1][key]


def test_missing_tasks_are_named(two_runs: Any) -> None:
    tracker, dates, _ = two_runs
    with pytest.raises(ValueError, match=r"nope\|0") as caught:
        tracker.load_details_datasets("last", [ANATOMY, "nope|0", "arc:easy|25"])
    message = str(caught.value)
    assert "arc:easy|25" in message
    assert dates[1] in message
    with pytest.raises(ValueError, match="mmlu"):
        tracker.load_details_datasets("last", ["mmlu"])  # a prefix is not a task name


def test_first_and_last_skip_a_save_without_its_results_file(two_runs: Any) -> None:
    """A details folder without its results file is an incomplete save (on an object store the
    results file is written last): 'first' and 'last' pass over it, its date id still reads it."""
    tracker, dates, expected = two_runs
    root = Path(tracker.output.root)
    for date_id in dates:  # both runs lose their results: neither is complete any more
        (root / "results" / "org" / "model" / f"results_{date_id}.json").rename(root / f"kept_{date_id}.json")
    (root / f"kept_{dates[0]}.json").rename(root / "results" / "org" / "model" / f"results_{dates[0]}.json")

    assert tracker.load_details_datasets("last", [ANATOMY])[ANATOMY].to_list() == expected[0][ANATOMY]
    assert tracker.load_details_datasets("first", [ANATOMY])[ANATOMY].to_list() == expected[0][ANATOMY]
    assert tracker.load_details_datasets(dates[1], [ANATOMY])[ANATOMY].to_list() == expected[1][ANATOMY]

    (root / "results" / "org" / "model" / f"results_{dates[0]}.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"no complete run .* pass a date id") as info:
        tracker.load_details_datasets("last", [ANATOMY])
    assert dates[0] in str(info.value)
    assert dates[1] in str(info.value)


def test_unknown_date_id_and_no_saved_run(
    two_runs: Any, make_tracker: Callable[..., EvaluationTracker]
) -> None:
    tracker, _, _ = two_runs
    with pytest.raises(FileNotFoundError):
        tracker.load_details_datasets("1999-01-01T00-00-00.000000", [ANATOMY])
    fresh = make_tracker(output_dir=Path(tracker.output.root).parent / "empty")
    fresh.general_config_logger.log_model_info(model_name="org/model")
    with pytest.raises(FileNotFoundError):
        fresh.load_details_datasets("last", [ANATOMY])


def test_encoded_task_names_load_by_their_real_name(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tasks = ["a/b|0", "../x|0", "50%|1"]
    tracker, _, expected = _run(make_tracker, seed=3, tasks=tasks)
    loaded = tracker.load_details_datasets("last", tasks)
    assert sorted(loaded) == sorted(tasks)
    for task in tasks:
        assert loaded[task].to_list() == expected[task]
    assert list(tracker.load_details_datasets("last", ["a/b"])) == ["a/b|0"]


def test_with_results_path_template(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker, date_id, expected = _run(
        make_tracker, seed=4, results_path_template="{output_dir}/c/{org}/{model}"
    )
    for which in (date_id, "last", "first"):
        assert tracker.load_details_datasets(which, [ANATOMY])[ANATOMY].to_list() == expected[ANATOMY]


def test_with_details_path_template(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker, date_id, expected = _run(
        make_tracker, seed=5, sink_config={"local": {"details_path_template": "{output_dir}/det/{model}"}}
    )
    for which in (date_id, "last"):
        assert tracker.load_details_datasets(which, [GSM8K])[GSM8K].to_list() == expected[GSM8K]


def test_last_ignores_the_folders_of_nested_model_names(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    _run(make_tracker, seed=6, model_name="org/model")
    tracker, _, expected = _run(make_tracker, seed=7, model_name="org")
    assert tracker.load_details_datasets("last", [ANATOMY])[ANATOMY].to_list() == expected[ANATOMY]


def test_fields_of_mixed_types_come_back_as_logged(make_tracker: Callable[..., EvaluationTracker]) -> None:
    """lighteval rebuilds ModelResponse(**row["model_response"]) from these rows: a chat-list input
    stored as JSON text (it mixes with plain strings) must come back as the list, not its text."""
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    chat = [{"role": "user", "content": "2+2?"}]
    inputs: list[Any] = ["plain prompt", chat, "another", chat]
    for index, prompt in enumerate(inputs):
        tracker.details_logger.log(
            "mixed|0", {"query": f"q{index}"}, {"input": prompt, "text": ["4"]}, {"em": 1.0}
        )
    report = tracker.save()
    assert any("model_response.input written as JSON text" in warning for warning in report.warnings)
    [dataset] = tracker.load_details_datasets("last", ["mixed|0"]).values()
    assert [row["model_response"]["input"] for row in dataset] == inputs  # iterating, as lighteval does
    assert dataset[1]["model_response"]["input"] == chat  # and indexing
    assert dataset["model_response"][0]["input"] == "plain prompt"  # and by column
    assert dataset.data.column("model_response")[1]["input"].as_py() == '[{"role":"user","content":"2+2?"}]'


def test_files_without_json_text_load_untransformed(make_tracker: Callable[..., EvaluationTracker]) -> None:
    tracker, _, expected = _run(make_tracker, seed=4, tasks=[ANATOMY])
    [dataset] = tracker.load_details_datasets("last", [ANATOMY]).values()
    assert dataset.format["type"] is None  # a plain datasets.Dataset, as lighteval returns
    assert dataset.to_list() == expected[ANATOMY]


def test_task_names_with_glob_characters_load_their_own_file(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """``datasets`` takes data_files as glob patterns: ``br[a]`` matched no file (``[a]`` is a
    character class) and ``q?x`` could match another task's file."""
    tasks = ["q?x|0", "qyx|0", "br[a]|0", "st*r|0"]
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info(model_name="org/model")
    counts = {task: count for count, task in enumerate(tasks, start=1)}
    for task, count in counts.items():
        log_demo_samples(tracker, task, count)
    report = tracker.save()
    assert report["local"].ok, report
    loaded = tracker.load_details_datasets(str(report.date_id), tasks)
    assert {task: len(dataset) for task, dataset in loaded.items()} == counts


def test_only_a_fewshot_count_may_be_left_out(make_tracker: Callable[..., EvaluationTracker]) -> None:
    """Leaving out ``|<fewshot>`` dropped any last segment, so the suite name ``lighteval`` loaded
    the task ``lighteval|gsm8k`` (saved without a few-shot count), and ``qa`` loaded ``qa|easy``."""
    tasks = ["lighteval|gsm8k", "qa|easy", "x/y|0"]
    tracker, date_id, expected = _run(make_tracker, seed=8, tasks=tasks)
    for requested in (["lighteval"], ["qa"], ["x"]):
        with pytest.raises(ValueError, match="not found"):
            tracker.load_details_datasets(date_id, requested)
    loaded = tracker.load_details_datasets(date_id, ["lighteval|gsm8k", "qa|easy", "x/y"])
    assert {task: dataset.to_list() for task, dataset in loaded.items()} == expected


RESULTS_BY_ORG = "{output_dir}/results/{org}"  # no {model}: the models of one org share a folder


def _two_models(
    make_tracker: Callable[..., EvaluationTracker], **kwargs: Any
) -> dict[str, tuple[str, dict[str, list[dict[str, Any]]]]]:
    """Model name -> (date id, rows) of a run of each of two models saved into one folder."""
    runs = {}
    for seed, model_name in enumerate(("org/model-a", "org/model-b"), start=10):
        _, date_id, expected = _run(make_tracker, seed=seed, tasks=[ANATOMY], model_name=model_name, **kwargs)
        runs[model_name] = (date_id, expected)
    return runs


def _reader(
    make_tracker: Callable[..., EvaluationTracker], model_name: str, **kwargs: Any
) -> EvaluationTracker:
    tracker = make_tracker(**kwargs)
    tracker.general_config_logger.log_model_info(model_name=model_name)
    return tracker


def test_results_path_template_without_model_reads_this_models_runs_only(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """Both models' details land in ``results/org/details/``: 'last' for model-a returned model-b's
    run (saved after it), which lighteval would have re-scored as model-a's."""
    runs = _two_models(make_tracker, results_path_template=RESULTS_BY_ORG)
    for model_name, (date_id, expected) in runs.items():
        tracker = _reader(make_tracker, model_name, results_path_template=RESULTS_BY_ORG)
        for which in ("first", "last", date_id):
            assert tracker.load_details_datasets(which, [ANATOMY])[ANATOMY].to_list() == expected[ANATOMY]
    tracker = _reader(make_tracker, "org/model-a", results_path_template=RESULTS_BY_ORG)
    with pytest.raises(ValueError, match=r"is model 'org/model-b'.s, not 'org/model-a'.s"):
        tracker.load_details_datasets(runs["org/model-b"][0], [ANATOMY])
    other = _reader(make_tracker, "org/model-c", results_path_template=RESULTS_BY_ORG)
    with pytest.raises(FileNotFoundError, match=r"no complete run of model 'org/model-c'"):
        other.load_details_datasets("last", [ANATOMY])


def test_details_path_template_without_model_reads_this_models_runs_only(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """With a shared ``details_path_template`` folder, the results folder is still the model's own:
    another model's date id has no results file there, and read as an incomplete save it handed
    back the other model's rows. A run of a shared folder without its results file cannot be
    attributed, so it is refused."""
    config = {"sink_config": {"local": {"details_path_template": "{output_dir}/det"}}}
    runs = _two_models(make_tracker, **config)
    tracker = _reader(make_tracker, "org/model-a", **config)
    date_a, expected_a = runs["org/model-a"]
    assert tracker.load_details_datasets("last", [ANATOMY])[ANATOMY].to_list() == expected_a[ANATOMY]
    assert tracker.load_details_datasets(date_a, [ANATOMY])[ANATOMY].to_list() == expected_a[ANATOMY]
    with pytest.raises(FileNotFoundError, match="may hold other models' runs"):
        tracker.load_details_datasets(runs["org/model-b"][0], [ANATOMY])


def test_a_damaged_results_file_of_a_shared_folder_is_an_error(
    make_tracker: Callable[..., EvaluationTracker],
) -> None:
    """Whose run it is cannot be told without its results file's model name: said, not guessed."""
    runs = _two_models(make_tracker, results_path_template=RESULTS_BY_ORG)
    date_b = runs["org/model-b"][0]
    tracker = _reader(make_tracker, "org/model-a", results_path_template=RESULTS_BY_ORG)
    (Path(tracker.output.root) / "results" / "org" / f"results_{date_b}.json").write_text("{")
    with pytest.raises(ValueError, match=rf"results_{date_b}\.json is not a results file"):
        tracker.load_details_datasets("last", [ANATOMY])
