"""``evalsink diff``: metric deltas with a direction per metric, hash changes, tasks only in one run,
and the exit codes a CI gate relies on (0 ok, 1 regression, 2 usage or input error)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from core_helpers import run_cli, save_run

from evalsink.cli import main
from evalsink.commands.compare import compare, declared_directions
from evalsink.results_files import load_results

DATA = Path(__file__).parent / "data" / "lighteval_results.json"
Samples = Mapping[str, list[Mapping[str, float]]]


def acc(*values: float) -> list[Mapping[str, float]]:
    return [{"acc": value} for value in values]


def invoke(*args: str | Path) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], env={"COLUMNS": "250"})


def diff_json(*args: str | Path, code: int) -> dict[str, Any]:
    result = invoke("diff", "--json", *args)
    assert result.exit_code == code, result.output
    data: dict[str, Any] = json.loads(
        result.stdout, parse_constant=lambda token: pytest.fail(f"non-strict JSON: {token}")
    )
    return data


def row(data: dict[str, Any], task: str, metric: str) -> dict[str, Any]:
    [found] = [m for m in data["metrics"] if m["task"] == task and m["metric"] == metric]
    return found


@pytest.fixture
def runs(tmp_path: Path) -> dict[str, Path]:
    """A baseline and a candidate: t1 drops from 0.75 to 0.5, t2 is unchanged but asked with other
    prompts, t3 disappears, t4 is new with t3's score; so 'all' drops by 0.25 / 3."""
    a = save_run(tmp_path / "a", {"t1": acc(1, 1, 1, 0), "t2": acc(1, 0), "t3": acc(1, 0)})
    b = save_run(tmp_path / "b", {"t1": acc(1, 1, 0, 0), "t2": acc(1, 0), "t4": acc(0, 1)}, prompt="reworded")
    return {"a": a, "b": b}


# -- the gate ----------------------------------------------------------------------------------------


def test_a_regression_fails_with_exit_code_1(runs: dict[str, Path]) -> None:
    data = diff_json(runs["a"], runs["b"], code=1)
    t1 = row(data, "t1", "acc")
    assert (t1["a"], t1["b"], t1["delta"]) == (0.75, 0.5, -0.25)
    assert t1["status"] == "regression"
    assert t1["higher_is_better"] is True
    assert t1["direction_from"] == "default"
    assert row(data, "t2", "acc")["status"] == "same"
    assert data["regressions"] == 2  # t1 and the 'all' average
    assert row(data, "all", "acc")["status"] == "regression"
    assert data["ok"] is False
    assert data["a"]["path"] == str(runs["a"])
    assert data["b"]["model"] == "org/m"


def test_the_tolerance_is_an_absolute_change_a_metric_may_worsen_by(runs: dict[str, Path]) -> None:
    data = diff_json(runs["a"], runs["b"], "--tolerance", "0.25", code=0)  # exactly 0.25 is allowed
    assert row(data, "t1", "acc")["status"] == "within tolerance"
    assert data["ok"] is True
    assert data["tolerance"] == 0.25
    data = diff_json(runs["a"], runs["b"], "--tolerance", "0.2499", code=1)
    assert row(data, "t1", "acc")["status"] == "regression"


def test_an_improvement_passes(runs: dict[str, Path]) -> None:
    data = diff_json(runs["b"], runs["a"], code=0)  # the same runs, the other way round
    t1 = row(data, "t1", "acc")
    assert t1["delta"] == 0.25
    assert t1["status"] == "improvement"
    assert data["regressions"] == 0


def test_the_table_reports_deltas_hashes_and_missing_tasks(runs: dict[str, Path]) -> None:
    result = invoke("diff", runs["a"], runs["b"])
    assert result.exit_code == 1
    out = result.stdout
    assert out.startswith(f"A: org/m {runs['a'].name[8:-5]} ({runs['a']})\nB: org/m ")
    rows = [line for line in out.splitlines() if line.startswith("│")]  # table rows only
    [t1] = [line for line in rows if " t1 " in line and " acc " in line]
    assert "0.7500 ± 0.2500" in t1
    assert "0.5000 ± 0.2887" in t1
    assert "-0.2500" in t1
    assert "regression" in t1
    assert not [line for line in rows if " t2 " in line]  # unchanged: not listed by default
    assert "1 metric(s) with the same value in both runs, not listed (--show-same lists them)" in out
    assert (
        "hashes of all 2 task(s) in both runs: examples changed, prompts changed, input tokens same, "
        "continuations same" in out  # t1 and t2 were asked with other prompts
    )
    assert "not recorded" not in out
    every = invoke("diff", runs["a"], runs["b"], "--show-same").stdout
    [t2] = [line for line in every.splitlines() if line.startswith("│") and " t2 " in line]
    assert " same " in t2
    assert "0.0000" in t2
    assert "+0.0000" not in t2
    assert "not listed" not in every
    assert "tasks only in A: t3" in out
    assert "tasks only in B: t4" in out
    assert "2 regression(s) beyond tolerance 0: t1 acc -0.2500, all acc -0.0833" in out
    assert result.stderr == ""


# -- direction ---------------------------------------------------------------------------------------


@pytest.fixture
def loss_runs(tmp_path: Path) -> dict[str, Path]:
    """loss rises from 1.0 to 2.0 between the runs; nothing declares its direction."""
    a = save_run(tmp_path / "a", {"t": [{"loss": 1.0}, {"loss": 1.0}]})
    b = save_run(tmp_path / "b", {"t": [{"loss": 2.0}, {"loss": 2.0}]})
    return {"a": a, "b": b}


def test_higher_is_better_by_default(loss_runs: dict[str, Path]) -> None:
    data = diff_json(loss_runs["a"], loss_runs["b"], code=0)
    assert row(data, "t", "loss")["status"] == "improvement"


def test_lower_is_better_takes_globs(loss_runs: dict[str, Path]) -> None:
    data = diff_json(loss_runs["a"], loss_runs["b"], "--lower-is-better", "lo*", code=1)
    loss = row(data, "t", "loss")
    assert loss["status"] == "regression"
    assert loss["higher_is_better"] is False
    assert loss["direction_from"] == "--lower-is-better"
    assert loss["delta"] == 1.0
    diff_json(
        loss_runs["b"], loss_runs["a"], "--lower-is-better", "perplexity", "--lower-is-better", "loss", code=0
    )


def test_the_results_files_declare_lighteval_directions(tmp_path: Path) -> None:
    configs = {
        "t": {
            "name": "t",
            "metrics": [
                {"metric_name": "ppl", "higher_is_better": False},
                {"metric_name": ["em", "bits"], "higher_is_better": {"em": True, "bits": False}},
            ],
        }
    }
    a = save_run(tmp_path / "a", {"t": [{"ppl": 3.0, "em": 0.5, "bits": 1.0}]}, task_configs=configs)
    b = save_run(tmp_path / "b", {"t": [{"ppl": 4.0, "em": 0.6, "bits": 2.0}]}, task_configs=configs)
    assert declared_directions(load_results(a).results) == {
        ("t", "ppl"): False,
        ("t", "em"): True,
        ("t", "bits"): False,
    }
    data = diff_json(a, b, code=1)
    assert row(data, "t", "ppl")["status"] == "regression"
    assert row(data, "t", "ppl")["direction_from"] == "results file"
    assert row(data, "t", "bits")["status"] == "regression"
    assert row(data, "t", "em")["status"] == "improvement"
    assert row(data, "all", "ppl")["higher_is_better"] is False  # 'all' has no config: shared declaration
    data = diff_json(a, b, "--higher-is-better", "ppl", "--higher-is-better", "bits", code=0)
    assert row(data, "t", "ppl")["status"] == "improvement"
    assert row(data, "t", "ppl")["direction_from"] == "--higher-is-better"


def test_a_metric_matching_both_directions_is_an_input_error(loss_runs: dict[str, Path]) -> None:
    result = invoke(
        "diff", loss_runs["a"], loss_runs["b"], "--lower-is-better", "l*", "--higher-is-better", "*s"
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "evalsink: error: metric 'loss' matches both --lower-is-better 'l*' and --higher-is-better '*s'"
    )


# -- stderr, NaN, hashes, missing tasks: hand-written lighteval files ---------------------------------------


def edited(tmp_path: Path, name: str, edit: Mapping[str, Any]) -> Path:
    """A copy of the lighteval-style file with values replaced, each named by a '/'-separated path."""
    data = json.loads(DATA.read_text(encoding="utf-8"))
    for where, value in edit.items():
        *parents, key = where.split("/")
        target = data
        for parent in parents:
            target = target[parent]
        target[key] = value
    path = tmp_path / name
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_a_file_against_itself_is_all_same() -> None:
    data = diff_json(DATA, DATA, code=0)
    assert {m["status"] for m in data["metrics"]} == {"same"}
    expected_tasks = list(json.loads(DATA.read_text(encoding="utf-8"))["results"])
    assert list(dict.fromkeys(m["task"] for m in data["metrics"])) == expected_tasks
    assert [h["changed"] for h in data["hashes"]] == [[], [], []]
    result = invoke("diff", DATA, DATA)
    assert (
        "hashes identical for all 3 task(s) in both runs: same examples, prompts, input tokens and "
        "continuations" in result.stdout
    )
    assert "6 metric(s) with the same value in both runs, not listed" in result.stdout
    assert "no regression beyond tolerance 0" in result.stdout


def test_stderr_values_are_shown_but_never_gated(tmp_path: Path) -> None:
    b = edited(
        tmp_path,
        "b.json",
        {
            "results/lighteval|gsm8k|0": {
                "extractive_match": 0.01288855193328279,
                "extractive_match_stderr": 0.5,
            }
        },
    )
    data = diff_json(DATA, b, code=0)
    gsm8k = row(data, "lighteval|gsm8k|0", "extractive_match")
    assert gsm8k["status"] == "same"
    assert (gsm8k["a_stderr"], gsm8k["b_stderr"]) == (0.003106901266499665, 0.5)
    assert not [m for m in data["metrics"] if m["metric"].endswith("_stderr")]  # folded, not rows


def test_a_stderr_without_its_metric_is_shown_not_gated(tmp_path: Path) -> None:
    a = edited(tmp_path, "a.json", {"results/lighteval|gsm8k|0": {"em_stderr": 0.1}})
    b = edited(tmp_path, "b.json", {"results/lighteval|gsm8k|0": {"em_stderr": 0.9}})
    data = diff_json(a, b, code=0)
    orphan = row(data, "lighteval|gsm8k|0", "em_stderr")
    assert orphan["gated"] is False
    assert orphan["status"] == "changed"


def test_nan_and_null_are_reported_not_gated_unless_strict(tmp_path: Path) -> None:
    text = DATA.read_text(encoding="utf-8").replace('"acc": 0.362962962962963', '"acc": NaN')  # lighteval
    b = tmp_path / "b.json"
    b.write_text(text, encoding="utf-8")
    data = diff_json(DATA, b, code=0)
    anatomy = row(data, "lighteval|mmlu:anatomy|5", "acc")
    assert anatomy["status"] == "not finite"
    assert (anatomy["a"], anatomy["b"], anatomy["delta"]) == (0.362962962962963, None, None)
    table = invoke("diff", DATA, b)
    [line] = [line for line in table.stdout.splitlines() if "mmlu:anatomy" in line and "acc" in line]
    assert "NaN" in line
    assert "not finite" in line
    strict = diff_json(DATA, b, "--strict", code=1)
    assert strict["strict_failures"] == ["lighteval|mmlu:anatomy|5 acc has no finite value in B"]
    diff_json(b, DATA, "--strict", code=0)  # a value that became finite is not a failure


def test_a_null_written_by_the_tracker(tmp_path: Path) -> None:
    a = save_run(tmp_path / "a", {"t": acc(1, 0)})
    b = save_run(tmp_path / "b", {"t": acc(float("nan"), float("nan"))})
    data = diff_json(a, b, code=0)
    t = row(data, "t", "acc")
    assert (t["a"], t["b"], t["status"]) == (0.5, None, "not finite")


def test_which_hashes_changed(tmp_path: Path) -> None:
    hashes = json.loads(DATA.read_text(encoding="utf-8"))["summary_tasks"]["lighteval|gsm8k|0"]["hashes"]
    b = edited(
        tmp_path,
        "b.json",
        {"summary_tasks/lighteval|gsm8k|0/hashes": {**hashes, "hash_cont_tokens": "ffffffffffffffff"}},
    )
    data = diff_json(DATA, b, code=0)
    changes = {h["task"]: h["changed"] for h in data["hashes"]}
    assert changes == {
        "lighteval|mmlu:anatomy|5": [],
        "lighteval|mmlu:astronomy|5": [],
        "lighteval|gsm8k|0": ["hash_cont_tokens"],  # same prompts, other generations
    }
    result = invoke("diff", DATA, b)
    [line] = [
        line for line in result.stdout.splitlines() if "lighteval|gsm8k|0" in line and "changed" in line
    ]
    cells = [cell.strip() for cell in line.split("│")[1:-1]]
    assert cells == ["lighteval|gsm8k|0", "same", "same", "same", "changed"]
    assert "mmlu:anatomy" not in result.stdout.split("hashes that differ")[1]  # only differing tasks
    assert "the other 2 task(s) have identical hashes" in result.stdout


def test_a_hash_missing_on_one_side_is_unknown(tmp_path: Path) -> None:
    hashes = json.loads(DATA.read_text(encoding="utf-8"))["summary_tasks"]["lighteval|gsm8k|0"]["hashes"]
    b = edited(
        tmp_path, "b.json", {"summary_tasks/lighteval|gsm8k|0/hashes": {**hashes, "hash_full_prompts": ""}}
    )
    [gsm8k] = [h for h in diff_json(DATA, b, code=0)["hashes"] if h["task"] == "lighteval|gsm8k|0"]
    assert gsm8k == {"task": "lighteval|gsm8k|0", "changed": [], "unknown": ["hash_full_prompts"]}
    out = invoke("diff", DATA, b).stdout
    [line] = [line for line in out.splitlines() if line.startswith("│ lighteval|gsm8k|0")]
    assert [cell.strip() for cell in line.split("│")[1:-1]] == [
        "lighteval|gsm8k|0",
        "same",
        "?",
        "same",
        "same",
    ]
    assert "? = not recorded in one of the runs" in out


def test_the_summary_names_ten_regressions_then_counts(tmp_path: Path) -> None:
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    a.write_text(json.dumps({"results": {f"t{i:02}": {"acc": 0.5} for i in range(12)}}), encoding="utf-8")
    b.write_text(json.dumps({"results": {f"t{i:02}": {"acc": 0.25} for i in range(12)}}), encoding="utf-8")
    result = invoke("diff", a, b)
    assert result.exit_code == 1
    [summary] = [line for line in result.stdout.splitlines() if "regression(s)" in line]
    assert summary.startswith("12 regression(s) beyond tolerance 0: t00 acc -0.2500, t01 acc -0.2500")
    assert summary.endswith("t09 acc -0.2500 and 2 more")
    assert "hashes: no task has hashes in both runs" in result.stdout


def test_tasks_only_in_one_run_pass_unless_strict(runs: dict[str, Path]) -> None:
    data = diff_json(runs["a"], runs["b"], "--tolerance", "1", code=0)
    assert data["tasks_only_in_a"] == ["t3"]
    assert data["tasks_only_in_b"] == ["t4"]
    assert data["strict_failures"] == []
    data = diff_json(runs["a"], runs["b"], "--tolerance", "1", "--strict", code=1)
    assert data["strict_failures"] == ["task t3 is missing from B"]
    result = invoke("diff", runs["a"], runs["b"], "--tolerance", "1", "--strict")
    assert "strict: task t3 is missing from B" in result.stdout
    assert "no regression beyond tolerance 1" in result.stdout


def test_a_metric_only_in_one_run(tmp_path: Path) -> None:
    b = edited(
        tmp_path, "b.json", {"results/lighteval|gsm8k|0": {"extractive_match": 0.0128885519, "f1": 0.2}}
    )
    data = diff_json(DATA, b, "--tolerance", "0.01", code=0)
    assert row(data, "lighteval|gsm8k|0", "f1")["status"] == "only in B"
    assert row(data, "lighteval|gsm8k|0", "extractive_match")["status"] == "within tolerance"
    reverse = diff_json(b, DATA, "--strict", code=1)
    assert reverse["strict_failures"] == ["lighteval|gsm8k|0 f1 is missing from B"]


# -- output dirs ---------------------------------------------------------------------------------------


def test_output_dirs_use_their_newest_run(tmp_path: Path) -> None:
    a = save_run(tmp_path / "a", {"t": acc(1, 0)})
    save_run(tmp_path / "b", {"t": acc(0, 0)})  # an older, worse run of the candidate
    newest = save_run(tmp_path / "b", {"t": acc(1, 1)})
    data = diff_json(tmp_path / "a", tmp_path / "b", code=0)
    assert data["a"]["path"] == str(a)
    assert data["b"]["path"] == str(newest)
    assert row(data, "t", "acc")["status"] == "improvement"


def test_a_dir_holding_several_models_needs_model(tmp_path: Path) -> None:
    save_run(tmp_path / "a", {"t": acc(1, 0)}, model="org/one")
    save_run(tmp_path / "a", {"t": acc(0, 0)}, model="org/two")
    save_run(tmp_path / "b", {"t": acc(1, 0)}, model="org/two")
    result = invoke("diff", tmp_path / "a", tmp_path / "b")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"evalsink: error: {tmp_path / 'a'} holds runs of 2 models (org/one, org/two): "
        "pick one with --model or pass a results file"
    )
    data = diff_json(tmp_path / "a", tmp_path / "b", "--model", "org/two", code=0)
    assert row(data, "t", "acc")["status"] == "improvement"


def test_a_folder_of_output_dirs_of_one_model_gives_its_newest_run(tmp_path: Path) -> None:
    """The quickstart's folder holds results/, results-v2/... of one model: one model, not four."""
    qs = tmp_path / "qs"
    baseline = save_run(qs / "results", {"t": acc(1, 1)}, model="my-org/my-model")
    save_run(qs / "results-v2", {"t": acc(1, 0)}, model="my-org/my-model")
    newest = save_run(qs / "results-v3", {"t": acc(0, 0)}, model="my-org/my-model")
    data = diff_json(qs / "results", qs, code=1)
    assert (data["a"]["path"], data["b"]["path"]) == (str(baseline), str(newest))
    assert data["b"]["model"] == "my-org/my-model"
    assert row(data, "t", "acc")["delta"] == -1.0
    data = diff_json(qs / "results", qs, "--model", "my-org/my-model", code=1)
    assert data["b"]["path"] == str(newest)

    save_run(qs / "results-v2", {"t": acc(1, 1)}, model="org/other")
    result = invoke("diff", qs / "results", qs)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"evalsink: error: {qs} holds runs of 2 models (my-org/my-model, org/other): "
        "pick one with --model or pass a results file"
    )
    assert diff_json(qs / "results", qs, "--model", "my-model", code=1)["b"]["path"] == str(newest)


def test_compare_is_usable_without_the_command() -> None:
    run = load_results(DATA)
    result = compare(run, run, tolerance=0.0)
    assert not result.failed
    assert len(result.metrics) == 6  # 4 tasks with acc + 'all' with acc and extractive_match


# -- errors ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.json", str(DATA)], "evalsink: error: missing.json: no such file or directory"),
        ([str(DATA), "broken.json"], "evalsink: error: broken.json: invalid JSON: Expecting value"),
        ([str(DATA), "other.json"], "evalsink: error: other.json: not a results file: it has no 'results'"),
        ([str(DATA), "empty"], "evalsink: error: empty: no results files (results_<date_id>.json) found"),
    ],
)
def test_input_errors_are_one_line_and_exit_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "broken.json").write_text('{"results": ', encoding="utf-8")
    (tmp_path / "other.json").write_text('{"name": "x"}', encoding="utf-8")
    (tmp_path / "empty").mkdir()
    result = invoke("diff", *args)
    assert result.exit_code == 2
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith(message)


@pytest.mark.parametrize("tolerance", ["-0.1", "nan", "inf", "lots"])
def test_a_tolerance_that_would_disable_the_gate_is_refused(tolerance: str) -> None:
    result = invoke("diff", DATA, DATA, "--tolerance", tolerance)
    assert result.exit_code == 2
    [line] = result.stderr.splitlines()
    assert line.startswith("evalsink: error: Invalid value for '--tolerance': ")


def test_python_m_evalsink_diff_exit_codes(runs: dict[str, Path], tmp_path: Path) -> None:
    regressed = run_cli("diff", runs["a"], runs["b"], cwd=tmp_path)
    assert regressed.returncode == 1, regressed.stderr
    assert "2 regression(s) beyond tolerance 0" in regressed.stdout
    assert regressed.stderr == ""

    tolerated = run_cli("diff", runs["a"], runs["b"], "--tolerance", "0.3", "--json", cwd=tmp_path)
    assert tolerated.returncode == 0, tolerated.stderr
    assert json.loads(tolerated.stdout)["ok"] is True

    missing = run_cli("diff", runs["a"], tmp_path / "nowhere", cwd=tmp_path)
    assert missing.returncode == 2
    assert missing.stdout == ""
    assert missing.stderr == f"evalsink: error: {tmp_path / 'nowhere'}: no such file or directory\n"

    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    broken = run_cli("diff", "broken.json", runs["b"], cwd=tmp_path)
    assert broken.returncode == 2
    assert len(broken.stderr.splitlines()) == 1
    assert "Traceback" not in broken.stderr
