"""lighteval's names on the Hub (repository, config, split, file paths) and reading a file list back."""

from __future__ import annotations

import re

import pytest

from evalsink.paths import task_file_part
from evalsink_hub.naming import (
    config_name,
    config_names,
    details_path,
    details_repo_id,
    parse_repo_files,
    split_name,
)

D1 = "2025-11-05T14-43-47.148527"
D2 = "2025-11-06T09-00-00"
# what datasets accepts as a split name
SPLIT_NAME = re.compile(r"^\w+(\.\w+)*$")


def test_repository_named_as_lighteval_private_unless_public() -> None:
    assert details_repo_id("evalsink-org", "meta-llama/Llama-3.1-8B", public=False) == (
        "evalsink-org/details_meta-llama__Llama-3.1-8B_private"
    )
    assert details_repo_id("evalsink-org", "meta-llama/Llama-3.1-8B", public=True) == (
        "evalsink-org/details_meta-llama__Llama-3.1-8B"
    )
    assert details_repo_id("me", "gpt2", public=True) == "me/details_gpt2"


def test_characters_the_hub_refuses_in_a_repository_name_become_underscores() -> None:
    assert details_repo_id("org", "org/model:v1 final", public=True) == "org/details_org__model_v1_final"


def test_a_repository_name_too_long_for_the_hub_asks_for_a_repo_id() -> None:
    with pytest.raises(ValueError, match="give the hub sink an explicit repo_id"):
        details_repo_id("org", "o/" + "m" * 90, public=True)


@pytest.mark.parametrize(
    ("task", "expected"),
    [
        ("lighteval|mmlu:anatomy|5", "lighteval_mmlu_anatomy_5"),
        ("leaderboard|arc:challenge|25", "leaderboard_arc_challenge_25"),
        ("custom|plain|0", "custom_plain_0"),
        ("suite:sub-task.v2|3", "suite_sub_task_v2_3"),
    ],
)
def test_config_names_are_lightevals(task: str, expected: str) -> None:
    assert config_name(task) == expected


@pytest.mark.parametrize(
    ("date_id", "expected"),
    [(D1, "2025_11_05T14_43_47.148527"), (D2, "2025_11_06T09_00_00")],
)
def test_split_names_are_lightevals_and_valid_for_datasets(date_id: str, expected: str) -> None:
    assert split_name(date_id) == expected
    assert SPLIT_NAME.match(split_name(date_id))


def test_tasks_sharing_a_config_name_get_distinct_ones() -> None:
    names = config_names(["a:b|0", "a|b|0", "plain|0", "results"])
    assert names["plain|0"] == "plain_0"
    assert names["a:b|0"] != names["a|b|0"]
    assert names["a:b|0"].startswith("a_b_0_")
    assert names["a|b|0"].startswith("a_b_0_")
    assert names["results"] != "results"  # the results config keeps its name
    # a task's name depends on the tasks it collides with, never on the order of the list
    assert names == config_names(["results", "plain|0", "a|b|0", "a:b|0"])
    assert config_names(["a|b|0", "a:b|0"]) == {task: names[task] for task in ("a|b|0", "a:b|0")}


def test_percent_encoded_task_parts_are_named_after_the_task() -> None:
    part = task_file_part("custom|a/b|0")
    assert part == "custom|a%2Fb|0"
    assert config_names([part]) == {part: "custom_a_b_0"}


def test_a_file_list_is_sorted_into_results_and_details() -> None:
    anatomy, plain = task_file_part("lighteval|mmlu:anatomy|5"), task_file_part("custom|plain|0")
    tricky = "x_2025-01-01T00-00-00_y|0"  # looks like a date inside the task name
    paths = [
        ".gitattributes",
        "README.md",
        f"results_{D1}.json",
        f"results_{D1}.parquet",
        f"results_{D2}.json",
        details_path(anatomy, D1),
        details_path(plain, D1),
        details_path(anatomy, D2),
        details_path(tricky, D2),
        f"{D2}/notes.txt",
        f"nested/{D1}/details_x_{D1}.parquet",
        f"{D1}/details_x_{D2}.parquet",  # date of the file does not match its folder
    ]
    found = parse_repo_files(paths)
    assert found.results_json == {D1: f"results_{D1}.json", D2: f"results_{D2}.json"}
    assert found.results_parquet == {D1: f"results_{D1}.parquet"}
    assert found.details == {
        anatomy: {D1: details_path(anatomy, D1), D2: details_path(anatomy, D2)},
        plain: {D1: details_path(plain, D1)},
        tricky: {D2: details_path(tricky, D2)},
    }
    assert found.latest_results_date() == D2
    assert found.latest_date() == D2


def test_an_empty_repository_has_no_runs() -> None:
    found = parse_repo_files(["README.md", ".gitattributes"])
    assert found.latest_results_date() is None
    assert found.latest_date() is None
    assert not found.details
