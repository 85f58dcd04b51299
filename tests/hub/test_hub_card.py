"""The README.md card: huggingface_hub parses it, and datasets loads every config and split it names.

The datasets check lays the repository's files out in a local folder and lets
``datasets.load_dataset`` resolve the card's ``data_files`` exactly as it does for a Hub repository.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard

from evalsink.paths import task_file_part
from evalsink_hub.card import MAX_CARD_TASKS, LatestResults, build_card, glob_escape
from evalsink_hub.naming import config_name, details_path, parse_repo_files, results_parquet_path

D1 = "2025-11-05T14-43-47.148527"
D2 = "2025-11-06T09-00-00.000001"
S1 = "2025_11_05T14_43_47.148527"
S2 = "2025_11_06T09_00_00.000001"
ANATOMY = "lighteval|mmlu:anatomy|5"
PLAIN = "custom|plain|0"
ODD = 'odd: "quoted" #x [1]*?|0'  # YAML and glob metacharacters
REPO = "evalsink-org/details_org__tiny-model_private"

RUNS = {ANATOMY: [D1, D2], PLAIN: [D1], ODD: [D2]}


def repo_paths() -> list[str]:
    paths = ["README.md", ".gitattributes"]
    for date_id in (D1, D2):
        paths += [f"results_{date_id}.json", results_parquet_path(date_id)]
    for task, dates in RUNS.items():
        paths += [details_path(task_file_part(task), date_id) for date_id in dates]
    return paths


def latest(results: dict[str, Any] | None = None) -> LatestResults:
    return LatestResults(D2, results or {"all": {"acc": 0.5}, ANATOMY: {"acc": 0.5}}, "http://hub/x.json")


def card_configs(text: str) -> dict[str, dict[str, list[str]]]:
    """{config: {split: paths}} as huggingface_hub's DatasetCard reads them."""
    card = DatasetCard(text)
    configs = card.data.to_dict()["configs"]
    return {
        config["config_name"]: {entry["split"]: entry["path"] for entry in config["data_files"]}
        for config in configs
    }


def test_the_card_parses_and_lists_a_config_per_task_and_results() -> None:
    text = build_card(REPO, "org/tiny-model", parse_repo_files(repo_paths()), latest())
    configs = card_configs(text)
    a1, a2 = (details_path(task_file_part(ANATOMY), d) for d in (D1, D2))
    p1 = details_path(task_file_part(PLAIN), D1)
    assert next(iter(configs)) == "results"
    assert configs["results"] == {
        S1: [results_parquet_path(D1)],
        S2: [results_parquet_path(D2)],
        "latest": [results_parquet_path(D2)],
    }
    assert configs["lighteval_mmlu_anatomy_5"] == {S1: [a1], S2: [a2], "latest": [a2]}
    # a task absent from the newest run: its latest split is its own newest run
    assert configs["custom_plain_0"] == {S1: [p1], "latest": [p1]}
    odd = details_path(task_file_part(ODD), D2)
    assert configs[config_name(ODD)] == {S2: [glob_escape(odd)], "latest": [glob_escape(odd)]}
    assert DatasetCard(text).data.to_dict()["pretty_name"] == "Evaluation run of org/tiny-model"


def test_the_front_matter_is_plain_yaml() -> None:
    text = build_card(REPO, "org/tiny-model", parse_repo_files(repo_paths()), latest())
    assert text.startswith("---\n")
    front = yaml.safe_load(text.split("---\n")[1])
    assert set(front) == {"pretty_name", "configs"}
    assert all(set(config) == {"config_name", "data_files"} for config in front["configs"])


def test_the_text_shows_the_latest_results_and_a_load_dataset_snippet() -> None:
    results = {"all": {"acc": 0.5}, ANATOMY: {"acc": 0.25, "acc_stderr": 0.1}}
    text = build_card(REPO, "org/tiny-model", parse_repo_files(repo_paths()), latest(results))
    body = DatasetCard(text).text
    assert f'load_dataset("{REPO}", "custom_plain_0", split="latest")' in body
    assert "[latest results from run 2025-11-06T09-00-00.000001](http://hub/x.json)" in body
    block = body.split("```python\n")[-1].split("\n```")[0]
    assert json.loads(block) == results
    assert "| `lighteval_mmlu_anatomy_5` | `lighteval\\|mmlu:anatomy\\|5` | 2 |" in body


def test_many_tasks_show_all_first_and_the_rest_in_the_results_file() -> None:
    results = {f"suite|task{i:04d}|0": {"acc": i / 1000} for i in range(MAX_CARD_TASKS + 20)}
    results["all"] = {"acc": 0.5}
    text = build_card(REPO, "m", parse_repo_files(repo_paths()), latest(results))
    block = text.split("## Latest results")[1].split("```python\n")[1].split("\n```")[0]
    shown = json.loads(block)
    assert next(iter(shown)) == "all"
    assert len(shown) == MAX_CARD_TASKS
    assert "21 more task(s) are in the results file." in text


def test_a_repository_without_results_or_details_still_gets_a_valid_card() -> None:
    text = build_card(REPO, "m", parse_repo_files(["README.md"]), None)
    card = DatasetCard(text)
    assert "configs" not in card.data.to_dict()
    assert "No results file was found" in card.text


def test_results_kept_in_another_repository_leave_only_task_configs() -> None:
    paths = [p for p in repo_paths() if not p.startswith("results_")]
    text = build_card(REPO, "m", parse_repo_files(paths), latest())
    assert "results" not in card_configs(text)
    assert "The `results` configuration" not in text


def test_datasets_loads_every_config_and_split_of_the_card(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    root = tmp_path / "repo"
    for path in repo_paths():
        target = root / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if path.endswith(".parquet"):
            pq.write_table(pa.table({"file": [path]}), target)
    (root / "README.md").write_text(
        build_card(REPO, "org/tiny-model", parse_repo_files(repo_paths()), latest()), encoding="utf-8"
    )
    cache = str(tmp_path / "datasets-cache")
    expected = card_configs((root / "README.md").read_text(encoding="utf-8"))
    original = {glob_escape(path): path for path in repo_paths()}
    assert datasets.get_dataset_config_names(str(root)) == list(expected)
    for config, splits in expected.items():
        assert datasets.get_dataset_split_names(str(root), config) == list(splits)
        for split, [pattern] in splits.items():
            rows = datasets.load_dataset(str(root), config, split=split, cache_dir=cache).to_list()
            # each split reads exactly the one file it names (glob metacharacters escaped)
            assert [row["file"] for row in rows] == [original[pattern]]
