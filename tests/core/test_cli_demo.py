"""``evalsink demo``, the README's main job: a synthetic run through the chosen sinks, in a fresh
process as a user runs it, its files read back."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
from core_helpers import run_cli

from evalsink.demo import TASKS
from evalsink.models import EvaluationResults


def _refuse(constant: str) -> None:
    raise ValueError(f"not strict JSON: {constant}")


def test_demo_writes_lighteval_files_and_says_where(tmp_path: Path) -> None:
    output = tmp_path / "demo"
    done = run_cli("demo", "--output-dir", str(output), timeout=300)
    assert done.returncode == 0, done.stderr

    [results_file] = (output / "results").rglob("results_*.json")
    data = json.loads(results_file.read_text(encoding="utf-8"), parse_constant=_refuse)
    results = EvaluationResults.model_validate(data)
    task_names = [name for name, _ in TASKS]
    assert set(task_names) <= set(results.results)
    assert set(results.summary_tasks) == set(task_names)

    details = sorted((output / "details").rglob("details_*.parquet"))
    assert len(details) == len(TASKS)
    assert sum(pq.read_metadata(path).num_rows for path in details) == 100 * len(TASKS)  # the default
    assert pq.read_schema(details[0]).names == ["doc", "metric", "model_response"]

    assert "local: ok in " in done.stdout
    for path in [results_file, *details]:
        assert str(path) in done.stdout  # "ending with where everything went"
    assert not (output / ".evalsink").exists()  # the spool is gone once the run is saved


def test_demo_through_a_second_sink_and_a_misspelt_one(tmp_path: Path) -> None:
    args = ["--output-dir", str(tmp_path / "two"), "--sinks", "local,recorder", "--samples", "3"]
    done = run_cli("demo", *args, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "local: ok in " in done.stdout
    assert "recorder: ok in " in done.stdout
    details = list((tmp_path / "two" / "details").rglob("details_*.parquet"))
    assert sum(pq.read_metadata(path).num_rows for path in details) == 3 * len(TASKS)

    misspelt = run_cli(
        "demo", "--output-dir", str(tmp_path / "bad"), "--sinks", "local,tensorbord", timeout=300
    )
    assert misspelt.returncode == 2
    assert misspelt.stderr.startswith("evalsink: error: sink 'tensorbord' is not installed")
    assert "(did you mean 'tensorboard'?)" in misspelt.stderr
    assert not (tmp_path / "bad").exists()  # refused before anything was written


def test_an_empty_sinks_option_means_no_sink_as_the_empty_variable_does(tmp_path: Path) -> None:
    """``--sinks ""`` and ``EVALSINK_SINKS=`` both run no sink, and the demo says nothing was written."""
    for args, env in ((["--sinks", ""], {}), ([], {"EVALSINK_SINKS": ""})):
        output = tmp_path / f"none-{len(args)}"
        done = run_cli("demo", "--output-dir", str(output), "--samples", "2", *args, env=env, timeout=300)
        assert done.returncode == 0, done.stderr
        assert "no sink is enabled" in done.stdout
        assert "local: ok" not in done.stdout
        assert not (output / "results").exists()
        assert "save() will write nothing" in done.stderr
