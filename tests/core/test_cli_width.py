"""``evalsink show`` and ``evalsink diff`` in a narrow terminal, and piped (rich assumes 80 columns
then): the task names stay on one line while the other columns wrap or fold; nothing is cut."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from core_helpers import save_run
from rich.cells import cell_len

from evalsink.cli import main

LONG_TASK = "lighteval|mmlu:high_school_european_history|5"  # 45 characters


def invoke(*args: str | Path, columns: int) -> Result:
    return CliRunner().invoke(main, [str(arg) for arg in args], env={"COLUMNS": str(columns)})


def table_lines(result: Result, columns: int) -> list[str]:
    """The lines of the tables printed, checked to fit ``columns`` with nothing cut short."""
    lines = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]
    assert lines, result.stdout
    assert max(cell_len(line) for line in lines) <= columns, result.stdout
    assert "…" not in result.stdout
    return lines


def one_line(lines: list[str], *words: str) -> str:
    """The one line holding all of ``words``, whole."""
    [line] = [line for line in lines if all(word in line for word in words)]
    return line


def write_results(path: Path, results: Mapping[str, Mapping[str, float]], **extra: Any) -> Path:
    path.write_text(json.dumps({"results": results, **extra}), encoding="utf-8")
    return path


@pytest.fixture
def quickstart(tmp_path: Path) -> tuple[Path, Path]:
    """The quickstart's two runs: custom|arith|0 scores 0.75, then 0.5."""
    a = save_run(
        tmp_path / "results", {"custom|arith|0": [{"em": v} for v in (1, 1, 1, 0)]}, model="my-org/my-model"
    )
    b = save_run(
        tmp_path / "results-v2",
        {"custom|arith|0": [{"em": v} for v in (1, 0, 1, 0)]},
        model="my-org/my-model",
    )
    return a, b


def test_the_quickstart_diff_at_80_columns(quickstart: tuple[Path, Path]) -> None:
    """rich squeezed the task column to two characters: 'cu', 'st', 'om', ... and a 'ta' 'sk' header."""
    result = invoke("diff", *quickstart, columns=80)
    assert result.exit_code == 1, result.output
    lines = table_lines(result, 80)
    header = one_line(lines, "task", "metric", "A", "B", "Δ", "status")
    assert [cell.strip() for cell in header.split("┃")] == ["task", "metric", "A", "B", "Δ", "status"]
    row = one_line(lines, "custom|arith|0")
    cells = [cell.strip() for cell in row.split("│")]
    assert cells == ["custom|arith|0", "em ↑", "0.7500", "0.5000", "-0.2500", "regression"]
    stderr = lines[lines.index(row) + 1]  # too wide beside its value: the stderr goes below it
    assert [cell.strip() for cell in stderr.split("│")] == ["", "", "± 0.2500", "± 0.2887", "", ""]
    assert "↑ higher is better, ↓ lower is better" in result.stdout  # no 'better' column to say so
    assert "2 regression(s) beyond tolerance 0: custom|arith|0 em -0.2500, all em -0.2500" in result.stdout


def test_the_quickstart_diff_is_unchanged_where_it_fits(quickstart: tuple[Path, Path]) -> None:
    result = invoke("diff", *quickstart, columns=120)
    row = one_line(table_lines(result, 120), "custom|arith|0")
    assert row == (
        "│ custom|arith|0 │ em     │ ↑      │ 0.7500 ± 0.2500 │ 0.5000 ± 0.2887 │ -0.2500 │ regression │"
    )
    assert "higher is better" not in result.stdout


def test_the_quickstart_show_at_80_columns(quickstart: tuple[Path, Path]) -> None:
    result = invoke("show", quickstart[1], columns=80)
    assert result.exit_code == 0, result.output
    row = one_line(table_lines(result, 80), "custom|arith|0")
    assert row == "│ custom|arith|0 │ em     │ 0.5000 │ ± 0.2887 │"  # it fits: as wide as it needs


def test_show_folds_the_metric_names_before_the_task_names(tmp_path: Path) -> None:
    path = write_results(
        tmp_path / "run.json",
        {LONG_TASK: {"acc": 0.5, "acc_stderr": 0.1}, "t": {"extractive_match_with_a_long_name": 0.25}},
    )
    result = invoke("show", path, columns=80)
    assert result.exit_code == 0, result.output
    lines = table_lines(result, 80)
    row = one_line(lines, LONG_TASK)
    assert [cell.strip() for cell in row.split("│")] == [LONG_TASK, "acc", "0.5000", "± 0.1000"]
    start = lines.index(one_line(lines, "0.2500"))  # the metric name folds, every character kept
    pieces = [line.split("│")[1].strip() for line in lines[start:]]
    assert "".join(pieces) == "extractive_match_with_a_long_name"


def test_the_statuses_wrap_at_spaces_before_the_task_names_wrap(tmp_path: Path) -> None:
    task = "leaderboard|truthfulqa:mc|0"
    a = write_results(tmp_path / "a.json", {task: {"acc": 0.5}, "all": {"acc": 0.5}})
    b = write_results(tmp_path / "b.json", {task: {"acc": 0.49}, "all": {"acc": 0.5}})
    result = invoke("diff", a, b, "--tolerance", "0.05", columns=80)
    assert result.exit_code == 0, result.output
    lines = table_lines(result, 80)
    row = one_line(lines, task)
    assert "within" in row
    assert "tolerance" in lines[lines.index(row) + 1]


def test_the_hash_table_keeps_task_names_whole(tmp_path: Path) -> None:
    task, other = "leaderboard|arc:challenge|25", "leaderboard|hellaswag|10"
    same = {"hash_examples": "e", "hash_full_prompts": "p", "hash_input_tokens": "i", "hash_cont_tokens": "c"}
    changed = {**same, "hash_cont_tokens": "other"}
    results = {task: {"acc": 0.5}, other: {"acc": 0.5}}
    a = write_results(tmp_path / "a.json", results, summary_tasks={t: {"hashes": same} for t in results})
    b = write_results(
        tmp_path / "b.json", results, summary_tasks={task: {"hashes": changed}, other: {"hashes": same}}
    )
    result = invoke("diff", a, b, columns=80)
    assert result.exit_code == 0, result.output
    row = one_line(table_lines(result, 80), task, "changed")
    assert [cell.strip() for cell in row.split("│")] == [task, "same", "same", "same", "changed"]


@pytest.mark.parametrize("columns", [80, 60])
def test_when_nothing_else_gives_way_task_names_fold_but_are_never_cut(tmp_path: Path, columns: int) -> None:
    """45 characters of task name and seven columns do not fit 80 columns: the last resort folds."""
    a = write_results(tmp_path / "a.json", {LONG_TASK: {"acc": 0.5, "acc_stderr": 0.125}})
    b = write_results(tmp_path / "b.json", {LONG_TASK: {"acc": 0.25, "acc_stderr": 0.125}})
    result = invoke("diff", a, b, columns=columns)
    assert result.exit_code == 1, result.output
    rows = [line for line in table_lines(result, columns) if line.count("│") == 5]  # the metrics table
    cells = [[cell.strip() for cell in line.split("│")] for line in rows]
    assert "".join(row[0] for row in cells) == LONG_TASK
    for column, value in [(2, "0.5000±0.1250"), (3, "0.2500±0.1250"), (4, "-0.2500"), (5, "regression")]:
        assert "".join(row[column] for row in cells).replace(" ", "") == value
