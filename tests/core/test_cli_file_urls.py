"""``show``, ``diff`` and ``push`` take a ``file://`` URL for a local folder or file, as the tracker
and ``recover`` do; messages name the URL as typed, and other URLs are refused in one line."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from core_helpers import Calls, save_run

from evalsink.cli import main
from evalsink.results_files import ResultsFileError, find_results_files, load_results, newest_run


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], env={"COLUMNS": "250"})


def url(path: Path) -> str:
    """The URL as a user types it for an absolute path: file:///tmp/x/results."""
    assert path.is_absolute()
    return f"file://{path}"


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """Two output dirs of org/m: 'results' scores 0.5, 'results-v2' 0.25."""
    a = save_run(tmp_path / "results", {"t": [{"acc": 1.0}, {"acc": 0.0}]})
    b = save_run(tmp_path / "results-v2", {"t": [{"acc": 1.0}, {"acc": 0.0}, {"acc": 0.0}, {"acc": 0.0}]})
    return {"a": a, "b": b}


def test_show_reads_a_folder_given_as_a_file_url(runs: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("show", "--json", url(tmp_path / "results"))
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)["runs"]
    assert run["path"] == str(runs["a"])  # the local path the URL names
    assert run["results"]["t"]["acc"] == 0.5
    table = invoke("show", url(tmp_path / "results"))
    assert table.exit_code == 0, table.output
    assert f"file: {runs['a']}" in table.stdout


def test_show_reads_a_results_file_given_as_a_file_url(runs: dict[str, Path]) -> None:
    result = invoke("show", "--json", url(runs["b"]))
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)["runs"]
    assert (run["path"], run["results"]["t"]["acc"]) == (str(runs["b"]), 0.25)


def test_diff_compares_file_urls(runs: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("diff", "--json", url(tmp_path / "results"), url(runs["b"]))
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    assert (data["a"]["path"], data["b"]["path"]) == (str(runs["a"]), str(runs["b"]))
    [t] = [m for m in data["metrics"] if m["task"] == "t"]
    assert (t["a"], t["b"], t["status"]) == (0.5, 0.25, "regression")


def test_push_replays_a_folder_given_as_a_file_url(
    runs: dict[str, Path], tmp_path: Path, calls: Calls
) -> None:
    result = invoke("push", url(tmp_path / "results-v2"), "--to", "recorder-remote", "--quiet")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("pushed org/m (")
    assert "recorder-remote: ok" in result.stdout
    [saved] = calls.of("results_saved")
    assert saved["date_id"] == runs["b"].name[len("results_") : -len(".json")]


def _missing(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "empty").mkdir()
    return {
        "missing": (url(tmp_path / "nope"), f"{url(tmp_path / 'nope')}: no such file or directory"),
        "no runs": (
            url(tmp_path / "empty"),
            f"{url(tmp_path / 'empty')}: no results files (results_<date_id>.json) found",
        ),
        "other URL": ("s3://bucket/results", "s3://bucket/results: not a local path"),
    }


@pytest.mark.parametrize("case", ["missing", "no runs", "other URL"])
@pytest.mark.parametrize("command", ["show", "diff", "push"])
def test_errors_name_the_url_as_typed(tmp_path: Path, command: str, case: str) -> None:
    """click's own check named 'file:///…' a path that does not exist; Path() made it 'file:/…'."""
    path, message = _missing(tmp_path)[case]
    args = {"show": [path], "diff": [path, path], "push": [path, "--to", "recorder", "--quiet"]}[command]
    result = invoke(command, *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(f"evalsink: error: {message}")


def test_the_functions_take_file_urls(runs: dict[str, Path], tmp_path: Path) -> None:
    assert [f.path for f in find_results_files(url(tmp_path))] == [runs["a"], runs["b"]]
    assert newest_run(url(tmp_path / "results")).file.path == runs["a"]
    assert load_results(url(runs["b"])).results.results["t"]["acc"] == 0.25
    with pytest.raises(ResultsFileError, match="is a directory, not a results file"):
        load_results(url(tmp_path / "results"))


def test_a_relative_file_url_is_read_as_the_tracker_reads_it(
    runs: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tracker's OutputDir takes what follows file:// as the path, relative or not."""
    monkeypatch.chdir(tmp_path)
    result = invoke("show", "--json", "file://results-v2")
    assert result.exit_code == 0, result.output
    [run] = json.loads(result.stdout)["runs"]
    assert Path(run["path"]).resolve() == runs["b"].resolve()
