"""``evalsink show``: runs found in output dirs written by the real tracker, or a results file;
newest run per model by default; every input error is one line on stderr and exit code 2."""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import core_helpers
import pytest
from click.testing import CliRunner, Result
from core_helpers import run_cli

from evalsink.cli import main
from evalsink.results_files import find_results_files, select_runs

DATA = Path(__file__).parent / "data" / "lighteval_results.json"


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], env={"COLUMNS": "250"}, prog_name="evalsink")


def show_json(*args: str | Path) -> dict[str, Any]:
    result = invoke("show", "--json", *args)
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def save_run(
    output: Path, model: str, values: Mapping[str, list[float]], **tracker_kwargs: Any
) -> tuple[Path, dict[str, dict[str, float | None]]]:
    """A run whose tasks score ``values`` (metric acc): (the results file, its 'results' object)."""
    samples = {task: [{"acc": value} for value in scores] for task, scores in values.items()}
    path = core_helpers.save_run(output, samples, model=model, **tracker_kwargs)
    return path, json.loads(path.read_text(encoding="utf-8"))["results"]


@pytest.fixture
def output(tmp_path: Path) -> dict[str, Any]:
    """An output dir with two runs of org/m (the newer one scores lower) and one of org/other."""
    out = tmp_path / "out"
    old, old_results = save_run(out, "org/m", {"lighteval|a|0": [1, 1, 1, 0], "lighteval|b|0": [1, 0]})
    new, new_results = save_run(out, "org/m", {"lighteval|a|0": [1, 0, 0, 0], "lighteval|b|0": [0, 0]})
    other, other_results = save_run(out, "org/other", {"lighteval|c|0": [0.5]})
    return {
        "dir": out,
        "old": (old, old_results),
        "new": (new, new_results),
        "other": (other, other_results),
    }


def date_of(path: Path) -> str:
    return path.name[len("results_") : -len(".json")]


# -- choosing runs -----------------------------------------------------------------------------------


def test_an_output_dir_shows_the_newest_run_of_each_model(output: dict[str, Any]) -> None:
    data = show_json(output["dir"])
    (new, new_results), (other, other_results) = output["new"], output["other"]
    assert [(run["model"], run["date_id"], run["path"]) for run in data["runs"]] == [
        ("org/m", date_of(new), str(new)),
        ("org/other", date_of(other), str(other)),
    ]
    assert data["runs"][0]["results"] == new_results
    assert data["runs"][1]["results"] == other_results
    assert new_results["lighteval|a|0"]["acc"] == 0.25  # what was logged, not some other run's


def test_the_table_shows_each_task_metric_value_and_stderr(output: dict[str, Any]) -> None:
    result = invoke("show", output["dir"])
    assert result.exit_code == 0, result.output
    new, results = output["new"]
    assert f"org/m — {date_of(new)}" in result.stdout
    [row] = [line for line in result.stdout.splitlines() if "lighteval|a|0" in line]
    assert " acc " in row
    assert " 0.2500 " in row
    assert f"± {results['lighteval|a|0']['acc_stderr']:.4f}" in row
    assert "acc_stderr" not in result.stdout  # folded into its metric's row
    assert f"org/other — {date_of(output['other'][0])}" in result.stdout
    assert date_of(output["old"][0]) not in result.stdout
    assert result.stderr == ""


def test_all_shows_every_run_oldest_first(output: dict[str, Any]) -> None:
    data = show_json(output["dir"], "--all")
    paths = [run["path"] for run in data["runs"]]
    assert paths == [str(output["old"][0]), str(output["new"][0]), str(output["other"][0])]
    assert data["runs"][0]["results"] == output["old"][1]


def test_model_picks_runs_by_the_end_of_their_model_name(output: dict[str, Any]) -> None:
    assert [run["model"] for run in show_json(output["dir"], "--model", "org/other")["runs"]] == ["org/other"]
    assert [run["model"] for run in show_json(output["dir"], "--model", "m")["runs"]] == ["org/m"]
    assert len(show_json(output["dir"], "--model", "org/*")["runs"]) == 2
    result = invoke("show", output["dir"], "--model", "org/nobody")
    assert result.exit_code == 2
    assert result.stderr.startswith("evalsink: error: no run matches model 'org/nobody'; runs found: ")
    assert "org/other" in result.stderr


def test_date_picks_a_run_by_its_date_id_prefix(output: dict[str, Any]) -> None:
    old = output["old"][0]
    data = show_json(output["dir"], "--date", date_of(old), "--model", "org/m")
    assert [run["path"] for run in data["runs"]] == [str(old)]
    result = invoke("show", output["dir"], "--date", "1999-01")
    assert result.exit_code == 2
    assert "no run matches date '1999-01'" in result.stderr


@pytest.mark.parametrize("below", ["", "results", "results/org", "results/org/m"])
def test_any_folder_of_the_layout_works(output: dict[str, Any], below: str) -> None:
    data = show_json(output["dir"] / below, "--model", "org/m")
    assert [run["path"] for run in data["runs"]] == [str(output["new"][0])]


def test_a_results_path_template_layout_is_found(tmp_path: Path) -> None:
    template = "{output_dir}/by-org/{org}/{model}"
    path, results = save_run(tmp_path / "out", "acme/model-x", {"t": [1.0]}, results_path_template=template)
    assert path.parent == tmp_path / "out" / "by-org" / "acme" / "model-x"
    [run] = show_json(tmp_path / "out")["runs"]
    assert run["results"] == results
    assert run["model"] == "acme/model-x"


def test_the_spool_folder_and_other_json_files_are_not_runs(output: dict[str, Any]) -> None:
    hidden = output["dir"] / ".evalsink" / "org" / "m"
    hidden.mkdir(parents=True)
    shutil.copy(output["new"][0], hidden / "results_2999-01-01T00-00-00.json")
    shutil.copy(output["new"][0], output["dir"] / "results" / "org" / "m" / "results_latest.json")
    files = find_results_files(output["dir"])
    assert [f.path for f in files] == [output["old"][0], output["new"][0], output["other"][0]]
    assert [f.folder for f in files] == ["org/m", "org/m", "org/other"]
    newest = select_runs(files)
    assert [f.path for f in newest] == [output["new"][0], output["other"][0]]


def test_task_filters_with_globs(output: dict[str, Any]) -> None:
    [run] = show_json(output["dir"], "--model", "org/m", "--task", "*|a|*", "--task", "all")["runs"]
    assert list(run["results"]) == ["lighteval|a|0", "all"]
    table = invoke("show", output["dir"], "--task", "lighteval|c|0")  # a task of org/other only
    assert table.exit_code == 0
    assert f"org/m — {date_of(output['new'][0])}: no task matches --task" in table.stdout
    [row] = [line for line in table.stdout.splitlines() if line.startswith("│ lighteval|c|0")]
    assert " 0.5000 " in row
    result = invoke("show", output["dir"], "--task", "mmlu*")
    assert result.exit_code == 2
    assert result.stderr.strip() == f"evalsink: error: no task matches 'mmlu*' in {output['dir']}"


# -- several output dirs -----------------------------------------------------------------------------


@pytest.fixture
def output_dirs(tmp_path: Path) -> dict[str, Any]:
    """A folder holding the output dirs of three evaluations of my-org/my-model (results, results-v2,
    results-v3, saved in that order, v3 also with a run of org/other), as the quickstart leaves."""
    qs = tmp_path / "qs"
    runs = {
        "v1": save_run(qs / "results", "my-org/my-model", {"t": [1, 1, 1, 0]})[0],
        "v2": save_run(qs / "results-v2", "my-org/my-model", {"t": [1, 1, 0, 0]})[0],
        "other": save_run(qs / "results-v3", "org/other", {"t": [1.0]})[0],
        "v3": save_run(qs / "results-v3", "my-org/my-model", {"t": [1, 0, 0, 0]})[0],
    }
    return {"dir": qs, **runs}


def test_runs_of_one_model_in_several_output_dirs_are_one_model(output_dirs: dict[str, Any]) -> None:
    data = show_json(output_dirs["dir"])
    assert [(run["model"], run["path"]) for run in data["runs"]] == [
        ("my-org/my-model", str(output_dirs["v3"])),  # the newest of the three output dirs
        ("org/other", str(output_dirs["other"])),
    ]
    files = find_results_files(output_dirs["dir"])
    assert {f.folder for f in files} == {"my-org/my-model", "org/other"}  # no output dir in the name


def test_all_lists_each_models_runs_oldest_first_across_output_dirs(output_dirs: dict[str, Any]) -> None:
    data = show_json(output_dirs["dir"], "--all")
    assert [run["path"] for run in data["runs"]] == [
        str(output_dirs[name]) for name in ("v1", "v2", "v3", "other")
    ]
    dates = [run["date_id"] for run in data["runs"][:3]]
    assert dates == sorted(dates)


def test_model_picks_one_models_runs_across_output_dirs(output_dirs: dict[str, Any]) -> None:
    [run] = show_json(output_dirs["dir"], "--model", "my-org/my-model")["runs"]
    assert run["path"] == str(output_dirs["v3"])
    every = show_json(output_dirs["dir"], "--model", "my-model", "--all")["runs"]
    assert [run["path"] for run in every] == [str(output_dirs[name]) for name in ("v1", "v2", "v3")]
    [other] = show_json(output_dirs["dir"], "--model", "org/*")["runs"]
    assert other["model"] == "org/other"
    result = invoke("show", output_dirs["dir"], "--model", "results-v2")  # a folder is not a model
    assert result.exit_code == 2
    assert "no run matches model 'results-v2'; runs found: my-org/my-model 2" in result.stderr


def test_models_sharing_a_folder_are_told_apart(tmp_path: Path) -> None:
    """A results_path_template without {model} puts every model's runs in one folder."""
    template = "{output_dir}/flat"
    one, _ = save_run(tmp_path / "out", "org/one", {"t": [1.0]}, results_path_template=template)
    two, _ = save_run(tmp_path / "out", "org/two", {"t": [0.0]}, results_path_template=template)
    assert one.parent == two.parent
    data = show_json(tmp_path / "out")
    assert [(run["model"], run["path"]) for run in data["runs"]] == [
        ("org/one", str(one)),
        ("org/two", str(two)),
    ]


def test_a_run_without_a_model_name_is_named_by_its_folder(tmp_path: Path) -> None:
    """Its folder below the output dir's results/ folder, so output dirs still group as one model."""
    text = json.dumps({"results": {"t": {"acc": 0.5}}})
    for output, date in [("results", "2025-01-01T00-00-00"), ("results-v2", "2025-01-02T00-00-00")]:
        folder = tmp_path / output / "results" / "org" / "x"
        folder.mkdir(parents=True)
        (folder / f"results_{date}.json").write_text(text, encoding="utf-8")
    [run] = show_json(tmp_path)["runs"]
    assert (run["model"], run["date_id"]) == ("org/x", "2025-01-02T00-00-00")
    assert len(show_json(tmp_path, "--model", "org/x", "--all")["runs"]) == 2


def test_a_damaged_run_that_is_not_picked_is_not_read(output_dirs: dict[str, Any]) -> None:
    output_dirs["v1"].write_text("{", encoding="utf-8")  # its model comes from its folder
    data = show_json(output_dirs["dir"], "--model", "my-org/my-model")
    assert [run["path"] for run in data["runs"]] == [str(output_dirs["v3"])]


# -- lighteval's own files -----------------------------------------------------------------------------


def test_a_lighteval_results_file() -> None:
    expected = json.loads(DATA.read_text(encoding="utf-8"))
    [run] = show_json(DATA)["runs"]
    assert run["results"] == expected["results"]
    assert run["model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert run["date_id"] is None  # not named results_<date_id>.json
    result = invoke("show", DATA)
    assert result.exit_code == 0
    [gsm8k] = [line for line in result.stdout.splitlines() if "lighteval|gsm8k|0" in line]
    assert "extractive_match" in gsm8k
    assert "0.0129" in gsm8k
    assert "± 0.0031" in gsm8k
    assert "HuggingFaceTB/SmolLM2-135M-Instruct — lighteval_results.json" in result.stdout


def test_nan_and_null_are_shown_and_written_as_strict_json(tmp_path: Path) -> None:
    """lighteval writes bare NaN (invalid JSON that Python still reads); evalsink writes null."""
    text = DATA.read_text(encoding="utf-8")
    text = text.replace('"acc": 0.362962962962963', '"acc": NaN')
    text = text.replace('"acc_stderr": 0.041539484047424', '"acc_stderr": null')
    text = text.replace(
        '"extractive_match": 0.01288855193328279,\n      "extractive_match_stderr"',
        '"extractive_match": Infinity,\n      "extractive_match_stderr"',
        1,
    )
    path = tmp_path / "results_2025-11-05T14-43-47.148527.json"
    path.write_text(text, encoding="utf-8")

    result = invoke("show", "--json", path)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout, parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}"))
    [run] = data["runs"]
    assert run["date_id"] == "2025-11-05T14-43-47.148527"
    assert run["results"]["lighteval|mmlu:anatomy|5"] == {"acc": None, "acc_stderr": None}
    assert run["results"]["lighteval|gsm8k|0"]["extractive_match"] is None

    table = invoke("show", path)
    assert table.exit_code == 0
    [anatomy] = [line for line in table.stdout.splitlines() if "mmlu:anatomy" in line]
    assert " NaN " in anatomy
    assert "± null" in anatomy
    [gsm8k] = [line for line in table.stdout.splitlines() if "gsm8k" in line]
    assert " inf " in gsm8k


def test_a_run_with_a_nan_metric_written_by_the_tracker(tmp_path: Path) -> None:
    path, results = save_run(tmp_path / "out", "org/m", {"t": [float("nan"), float("nan")]})
    assert results["t"]["acc"] is None
    [run] = show_json(path)["runs"]
    assert run["results"]["t"]["acc"] is None
    [row] = [line for line in invoke("show", path).stdout.splitlines() if " t " in line]
    assert " null " in row


def test_a_run_without_results_says_so(tmp_path: Path) -> None:
    path, results = save_run(tmp_path / "out", "org/empty", {})
    assert results == {"all": {}}  # nothing was evaluated
    result = invoke("show", path)
    assert result.exit_code == 0
    assert f"org/empty — {date_of(path)}: no results ({path})" in result.stdout


# -- errors ------------------------------------------------------------------------------------------


def _error_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken.json").write_text('{"results": {', encoding="utf-8")
    (tmp_path / "list.json").write_text("[1, 2]", encoding="utf-8")
    (tmp_path / "other.json").write_text('{"name": "not results"}', encoding="utf-8")
    (tmp_path / "typed.json").write_text('{"results": {"t": {"acc": "high"}}}', encoding="utf-8")
    (tmp_path / "binary.json").write_bytes(b'{"results": {}}\x80')
    return {
        "missing": (tmp_path / "nope", "nope: no such file or directory"),
        "no runs": (tmp_path / "empty", "empty: no results files (results_<date_id>.json) found"),
        "invalid JSON": (tmp_path / "broken.json", "broken.json: invalid JSON: Expecting"),
        "not an object": (
            tmp_path / "list.json",
            "list.json: not a results file: it has no 'results' object",
        ),
        "no results": (tmp_path / "other.json", "other.json: not a results file: it has no 'results' object"),
        "wrong types": (
            tmp_path / "typed.json",
            "typed.json: not a results file: results.t.acc: Input should",
        ),
        "not text": (tmp_path / "binary.json", "binary.json: not a results file: not UTF-8 text"),
    }


ERRORS = ["missing", "no runs", "invalid JSON", "not an object", "no results", "wrong types", "not text"]


@pytest.mark.parametrize("case", ERRORS)
def test_input_errors_are_one_line_and_exit_2(tmp_path: Path, case: str) -> None:
    path, message = _error_cases(tmp_path)[case]
    result = invoke("show", path)
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("evalsink: error: ")
    assert message in line
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_a_newest_run_that_is_corrupt_names_its_file(output: dict[str, Any]) -> None:
    output["new"][0].write_text("{", encoding="utf-8")
    result = invoke("show", output["dir"])
    assert result.exit_code == 2
    assert result.stderr.strip().startswith(f"evalsink: error: {output['new'][0]}: invalid JSON")


def test_an_unreadable_file(output: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    """Permissions cannot be relied on (tests may run as root), so reading fails by substitution."""
    path = output["new"][0]

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    result = invoke("show", path)
    assert result.exit_code == 2
    assert result.stderr.strip() == f"evalsink: error: {path}: cannot read: Permission denied"


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["show"], "evalsink: error: Missing argument 'PATH' (see 'evalsink show --help')"),
        (
            ["show", ".", "--colour"],
            "evalsink: error: No such option '--colour' (see 'evalsink show --help')",
        ),
        (
            ["shwo", "."],
            "evalsink: error: No such command 'shwo'. Did you mean 'show'? (see 'evalsink --help')",
        ),
        (["--quiet"], "evalsink: error: No such option '--quiet' (see 'evalsink --help')"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(args: list[str], line: str) -> None:
    """click would print usage, a hint and the error over four lines."""
    result = invoke(*args)
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [line]


def test_evalsink_without_a_command_still_shows_the_help() -> None:
    result = invoke()
    assert result.exit_code in {0, 2}  # click >= 8.2 exits 2 here, older releases 0
    assert "Commands:" in result.output
    assert "show" in result.output
    assert "evalsink: error" not in result.output


def test_python_m_evalsink_show(output: dict[str, Any], tmp_path: Path) -> None:
    done = run_cli("show", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"org/m — {date_of(output['new'][0])}" in done.stdout
    assert "lighteval|b|0" in done.stdout
    assert done.stderr == ""


@pytest.mark.parametrize("case", ["missing", "invalid JSON", "no results"])
def test_python_m_evalsink_show_errors(tmp_path: Path, case: str) -> None:
    path, message = _error_cases(tmp_path)[case]
    done = run_cli("show", path, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stdout == ""
    [line] = done.stderr.splitlines()
    assert line.startswith("evalsink: error: ")
    assert message in line
    assert "Traceback" not in done.stderr


def test_python_m_evalsink_show_usage_error(tmp_path: Path) -> None:
    done = run_cli("show", cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr == "evalsink: error: Missing argument 'PATH' (see 'python -m evalsink show --help')\n"
