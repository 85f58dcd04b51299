"""lighteval's names on the Hub (repository, config, split, file paths) and reading a file list back."""

from __future__ import annotations

import hashlib
import re

import pytest
from huggingface_hub.errors import HFValidationError
from huggingface_hub.utils import validate_repo_id
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsink.paths import task_file_part
from evalsink_hub.naming import (
    config_name,
    config_names,
    details_path,
    details_repo_id,
    details_repo_name,
    lighteval_repo_name,
    parse_repo_files,
    repo_id_problem,
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


def test_characters_the_hub_refuses_in_a_repository_name_become_underscores_plus_a_hash() -> None:
    name = details_repo_id("org", "org/model:v1 final", public=True)
    assert name == f"org/details_org__model_v1_final_{digest('org/model:v1 final')}"


# Model names whose lighteval repository name the Hub refuses (found by an audit: each failed only
# at the push after the evaluation, and so did the push_run the error advised).
AWKWARD_MODELS = [
    "org/sub/model ü",  # a space, and a letter Python's \w takes but the Hub does not
    "org/模型",
    "models--org--name",  # a Hugging Face cache folder name: "--" is refused
    "org/model..v2",
    "org/model-",  # public: the name would end with "-"
    "org/model.",
    "org/repo.git",
    "o/" + "m" * 90,  # longer than the Hub's 96 characters
    "ﬁne-tuned/Ｍｏｄｅｌ",  # compatibility characters: NFKD gives ASCII
    "/data/ckpt/model\n",
    "",
]


@pytest.mark.parametrize("model", AWKWARD_MODELS)
@pytest.mark.parametrize("public", [False, True])
def test_every_model_name_gives_a_repository_id_huggingface_hub_accepts(model: str, public: bool) -> None:
    validate_repo_id(details_repo_id("org", model, public))


@pytest.mark.parametrize(
    ("model", "public", "expected"),
    [
        ("org/sub/model ü", False, "details_org__sub__model_u_{}_private"),
        ("org/模型", True, "details_org____{}"),
        ("models--org--name", False, "details_models-org-name_{}_private"),
        ("org/model..v2", True, "details_org__model.v2_{}"),
        ("org/model-", True, "details_org__model-_{}"),
        ("ﬁne-tuned/Ｍｏｄｅｌ", True, "details_fine-tuned__Model_{}"),
    ],
)
def test_a_refused_name_is_made_readable_and_told_apart_by_a_hash(
    model: str, public: bool, expected: str
) -> None:
    assert details_repo_name(model, public) == expected.format(digest(model))


def test_a_name_too_long_for_the_hub_is_shortened_and_keeps_its_hash_and_suffix() -> None:
    long_a, long_b = "o/" + "m" * 90 + "a", "o/" + "m" * 90 + "b"
    name_a, name_b = details_repo_name(long_a, False), details_repo_name(long_b, False)
    assert len(name_a) == 96
    assert name_a.endswith(f"_{digest(long_a)}_private")
    assert name_a != name_b


@pytest.mark.parametrize(
    "model",
    ["/data/ckpt/model", "org/-model", "org/.model", "org/model-", "org/model.", "A.B_c-9", "_"],
)
def test_a_name_the_hub_takes_is_lightevals_exactly_even_when_it_looks_odd(model: str) -> None:
    """lighteval compatibility: these repositories exist (lighteval pushed to them): same name."""
    for public in (False, True) if model[-1] not in "-." else (False,):
        assert details_repo_name(model, public) == lighteval_repo_name(model, public)
        assert details_repo_name(model, public) == (
            f"details_{model.replace('/', '__')}{'' if public else '_private'}"
        )


# text biased towards what makes names awkward: refused ASCII, runs of - and ., non-ASCII letters
MODEL_NAMES = st.text(
    st.one_of(
        st.sampled_from("abcXYZ019_-./ :|~"),
        st.characters(codec="utf-8"),
    ),
    max_size=120,
)


@settings(max_examples=400, deadline=None)
@given(model=MODEL_NAMES, public=st.booleans())
def test_property_every_model_name_gives_a_valid_repository_id(model: str, public: bool) -> None:
    repo_id = details_repo_id("org", model, public)
    validate_repo_id(repo_id)
    lightevals = lighteval_repo_name(model, public)
    if _hub_takes(f"org/{lightevals}"):
        assert repo_id == f"org/{lightevals}"  # lighteval's repository, as lighteval named it
    else:
        assert repo_id.endswith(f"_{digest(model)}{'' if public else '_private'}")


@settings(max_examples=300, deadline=None)
@given(first=MODEL_NAMES, second=MODEL_NAMES, public=st.booleans())
def test_property_a_renamed_model_never_shares_a_repository(first: str, second: str, public: bool) -> None:
    """Two models share a repository only when lighteval's own naming maps them together (``a/b``
    and ``a__b``): a name changed for the Hub carries its model's hash."""
    renamed = [
        model
        for model in (first, second)
        if details_repo_name(model, public) != lighteval_repo_name(model, public)
    ]
    if renamed and first != second:
        assert details_repo_name(first, public) != details_repo_name(second, public)


@settings(max_examples=500, deadline=None)
@given(
    repo_id=st.text(st.sampled_from("aZ9_-./ ü"), max_size=12)
    | st.builds(lambda a, b: f"{a}/{b}", st.text(max_size=100), st.text(max_size=100))
)
def test_property_the_names_rules_are_huggingface_hubs(repo_id: str) -> None:
    """The checks made at construction (without importing huggingface_hub) agree with it."""
    if repo_id.count("/") != 1:
        assert repo_id_problem(repo_id) is not None
        return
    assert (repo_id_problem(repo_id) is None) == _hub_takes(repo_id)


@pytest.mark.parametrize(
    ("repo_id", "complaint"),
    [
        ("my org/x", "its namespace 'my org' holds ' '"),
        ("org/x--y", "its name 'x--y' holds '--' or '..'"),
        ("org/x.git", "its name 'x.git' ends with '.git'"),
        ("-org/x", "its namespace '-org' starts or ends with '-' or '.'"),
        ("o" * 97 + "/x", "is longer than 96 characters"),
        ("org/a/b", "it is not of the form 'org/name'"),
    ],
)
def test_a_refused_repository_id_is_said_why(repo_id: str, complaint: str) -> None:
    assert complaint in (repo_id_problem(repo_id) or "")
    with pytest.raises(HFValidationError):
        validate_repo_id(repo_id)


def test_an_org_the_hub_refuses_fails_when_the_name_is_built() -> None:
    with pytest.raises(ValueError, match="its namespace 'my org' holds ' '"):
        details_repo_id("my org", "org/model", public=False)


def digest(model: str) -> str:
    return hashlib.sha1(model.encode("utf-8")).hexdigest()[:8]


def _hub_takes(repo_id: str) -> bool:
    try:
        validate_repo_id(repo_id)
    except HFValidationError:
        return False
    return True


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
