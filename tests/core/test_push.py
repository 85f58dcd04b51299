"""``evalsink push``: a saved run replayed into other sinks, details streamed, results unchanged."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from core_helpers import Calls, run_cli

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError
from evalsink.replay import replay_run, saved_runs

DATA = Path(__file__).parent / "data"
TASKS = {"lighteval|mmlu:anatomy|5": 7, "custom|mixed|0": 4}


def save_locally(output: Path) -> str:
    """A run saved by the local sink; its mixed-type field is stored as JSON text in the parquet."""
    tracker = EvaluationTracker(output, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/pushed")
    for task, count in TASKS.items():
        for i in range(count):
            extra = i if i % 2 else f"text {i}"  # int and str in one field: JSON-text column
            doc = {"query": f"{task} q{i}", "extra": extra}
            tracker.details_logger.log(task, doc, {"input": f"p{i}", "text": ["a"]}, {"acc": float(i % 2)})
            tracker.metrics_logger.log(task, {"acc": float(i % 2)})
    report = tracker.save()
    assert report.ok
    assert report.date_id is not None
    return report.date_id


def test_a_saved_run_is_replayed_to_another_sink(tmp_path: Path, calls: Calls) -> None:
    date_id = save_locally(tmp_path)
    [saved] = saved_runs(tmp_path)
    assert (saved.output_dir, saved.date_id, saved.model_name) == (tmp_path, date_id, "org/pushed")
    assert saved.count_rows() == sum(TASKS.values())

    report = replay_run(saved, ["recorder-remote"], sink_config={"recorder-remote": {"label": "pushed"}})

    assert report.ok, str(report)
    assert report.date_id == date_id  # the run keeps its date: sinks name files as the first save did
    [started] = calls.of("run_started", "pushed")
    assert started["model_name"] == "org/pushed"
    queries = calls.queries("pushed")
    assert sorted(queries) == sorted(f"{task} q{i}" for task, count in TASKS.items() for i in range(count))
    [saved_call] = calls.of("results_saved", "pushed")
    assert saved_call == {"date_id": date_id, "tasks": sorted([*TASKS, "all"])}
    assert not (tmp_path / ".evalsink").exists()  # no spool left for `evalsink recover` to find


def test_json_text_fields_come_back_as_logged(tmp_path: Path) -> None:
    save_locally(tmp_path)
    [saved] = saved_runs(tmp_path)
    from evalsink.storage import OutputDir
    from evalsink_local.reader import iter_details

    rows = list(iter_details(OutputDir(tmp_path), saved.details_files()["custom|mixed|0"]))
    assert [row["doc"]["extra"] for row in rows] == ["text 0", 1, "text 2", 3]


def test_a_lighteval_results_file_without_details_is_pushed(tmp_path: Path, calls: Calls) -> None:
    folder = tmp_path / "results" / "org" / "model"
    folder.mkdir(parents=True)
    shutil.copy(DATA / "lighteval_results.json", folder / "results_2025-01-02T03-04-05.000006.json")
    [saved] = saved_runs(tmp_path)
    report = replay_run(saved, ["recorder"])
    assert report.ok
    assert calls.of("details_batch") == []
    [saved_call] = calls.of("results_saved")
    assert saved_call["date_id"] == "2025-01-02T03-04-05.000006"


def test_pushing_to_the_local_sink_is_refused(tmp_path: Path) -> None:
    save_locally(tmp_path)
    [saved] = saved_runs(tmp_path)
    with pytest.raises(EvalsinkError, match="local sink is where a pushed run is read from"):
        replay_run(saved, ["local", "recorder"])


def test_the_push_command(tmp_path: Path) -> None:
    save_locally(tmp_path)
    done = run_cli("push", str(tmp_path), "--to", "recorder-remote")  # with the progress bar
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("pushed org/pushed (")  # the report only: the bar is on stderr
    assert "recorder-remote: ok" in done.stdout

    failed = run_cli("push", str(tmp_path), "--to", "flaky", "--quiet")
    assert failed.returncode == 1
    assert "flaky: failed" in failed.stdout

    refused = run_cli("push", str(tmp_path), "--to", "local")  # refused before a bar is drawn
    assert refused.returncode == 2
    assert refused.stderr == (
        "evalsink: error: the local sink is where a pushed run is read from; push to the other sinks\n"
    )
    missing = run_cli("push", str(tmp_path), "--to", "no-such-sink")
    assert missing.returncode == 2
    assert missing.stderr.startswith("evalsink: error: sink 'no-such-sink' is not installed")
    assert missing.stderr.count("\n") == 1
    nothing = run_cli(
        "push", str(tmp_path / "results" / "org" / "pushed"), "--to", "recorder", "--date", "1999"
    )
    assert nothing.returncode == 2
    assert nothing.stderr.startswith("evalsink: error: no run matches date '1999'")
