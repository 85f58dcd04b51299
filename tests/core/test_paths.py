"""paths: model and task names become file names that never leave the output folder nor collide."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsink.paths import (
    UNKNOWN_MODEL,
    checked_date_id,
    model_path,
    new_date_id,
    safe_component,
    split_model_name,
    task_file_part,
)

TRICKY_NAMES = [
    "..",
    ".",
    "...",
    "a/b",
    "a%2Fb",
    "a\\b",
    "a%5Cb",
    "%",
    "%25",
    "%2E%2E",
    "%2E",
    "nul\x00byte",
    "nul%00byte",
    "tab\there",
    "new\nline",
    "del\x7f",
    "lighteval|mmlu:anatomy|5",
    "lighteval:mmlu:anatomy:5",
    "lighteval|mmlu:anatomy|5 ",
    "ünïcödé|täsk|0",
    "emoji 🤗",
    "x" * 199,
    "x" * 200,
    "x" * 201,
    "x" * 300,
    "x" * 300 + "y",
    "é" * 150,
    "é" * 151,
    "a" * 250 + "/" + "b",
    "a" * 250 + "%2F" + "b",
    "~",
    "%7E",
    "a~b",
]


def _is_single_safe_component(component: str) -> bool:
    return (
        component not in {"", ".", ".."}
        and "/" not in component
        and "\\" not in component
        and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in component)
        and len(component.encode("utf-8")) <= 180
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("..", "%2E%2E"),
        (".", "%2E"),
        ("a/b", "a%2Fb"),
        ("a\\b", "a%5Cb"),
        ("nul\x00", "nul%00"),
        ("100%", "100%25"),
        ("new\nline", "new%0Aline"),
        ("a~b", "a%7Eb"),  # '~' marks a cut name, so a short name never carries one
        ("~", "%7E"),
        ("...", "..."),  # only exactly '.' and '..' mean something to a file system
        ("lighteval|mmlu:anatomy|5", "lighteval|mmlu:anatomy|5"),
        ("ünïcödé", "ünïcödé"),
    ],
)
def test_safe_component_examples(name: str, expected: str) -> None:
    assert safe_component(name) == expected


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_safe_component_is_always_one_harmless_component(name: str) -> None:
    assert _is_single_safe_component(safe_component(name))


def test_safe_component_keeps_lighteval_separators() -> None:
    name = "lighteval|mmlu:high_school_world_history|5"
    assert safe_component(name) == name
    assert task_file_part(name) == name


def test_long_names_are_cut_with_a_hash_of_the_full_name() -> None:
    short = "x" * 180
    assert safe_component(short) == short
    long_a, long_b = "x" * 300 + "a", "x" * 300 + "b"
    out_a, out_b = safe_component(long_a), safe_component(long_b)
    assert out_a != out_b
    assert out_a.startswith("x" * 140)
    assert re.search(r"~[0-9a-f]{16}$", out_a)
    assert len(out_a.encode()) <= 180


def test_long_multibyte_names_are_cut_on_a_character_boundary() -> None:
    out = safe_component("é" * 300)
    out.encode("utf-8")  # valid UTF-8: no half character left
    assert len(out.encode()) <= 180
    assert set(out.split("~")[0]) == {"é"}


def test_safe_component_is_injective_on_tricky_names() -> None:
    outputs = {safe_component(name) for name in TRICKY_NAMES}
    assert len(outputs) == len(set(TRICKY_NAMES))


NAMES = st.text(alphabet=st.sampled_from("ab.%/\\:|~\x00\n é2F5C"), min_size=1, max_size=12)


@settings(max_examples=300, deadline=None, database=None)
@given(NAMES, NAMES)
def test_safe_component_is_injective_on_generated_names(a: str, b: str) -> None:
    if a != b:
        assert safe_component(a) != safe_component(b)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(min_size=1, max_size=300))
def test_safe_component_of_any_text_is_one_harmless_component(name: str) -> None:
    assert _is_single_safe_component(safe_component(name))


def test_safe_component_is_injective_against_crafted_cut_names() -> None:
    long_name = "x" * 300
    crafted = safe_component(long_name)  # 'xxx…~<hash>': an ordinary, short, valid name
    assert crafted != long_name
    assert "~" in crafted
    assert safe_component(crafted) != safe_component(long_name)


@settings(max_examples=300, deadline=None, database=None)
@given(st.text(alphabet=st.sampled_from("ab~%7E."), min_size=1, max_size=60))
def test_only_a_cut_name_carries_a_bare_tilde(name: str) -> None:
    assert "~" not in safe_component(name)  # short: never cut, so never mistaken for a cut name


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("org/model", "org/model"),
        ("model", "model"),
        ("../../etc/passwd", "%2E%2E/%2E%2E/etc/passwd"),
        ("/abs/path", "abs/path"),
        ("org\\..\\model", "org%5C..%5Cmodel"),
        ("org/..", "org/%2E%2E"),
        ("", UNKNOWN_MODEL),
        (None, UNKNOWN_MODEL),
        ("/", UNKNOWN_MODEL),
        ("org/m%o", "org/m%25o"),
    ],
)
def test_model_path(name: str | None, expected: str) -> None:
    assert model_path(name) == expected


@pytest.mark.parametrize("name", ["../../x", "a/../../b", "..", "./.", "org/" + "m" * 400, "a\x00/b"])
def test_model_path_parts_never_escape(name: str) -> None:
    parts = model_path(name).split("/")
    assert parts
    assert all(_is_single_safe_component(part) for part in parts)


def test_task_file_part_refuses_empty_names() -> None:
    with pytest.raises(ValueError, match="empty"):
        task_file_part("")


@pytest.mark.parametrize("name", ["a/b", "..", "x\\y", "%", "nul\x00"])
def test_task_file_part_encodes_like_safe_component(name: str) -> None:
    assert task_file_part(name) == safe_component(name)
    assert "/" not in task_file_part(name)


def test_new_date_id_format() -> None:
    assert new_date_id(datetime(2025, 11, 5, 14, 43, 47, 148527)) == "2025-11-05T14-43-47.148527"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(\.\d{6})?", new_date_id())
    assert ":" not in new_date_id()


def test_a_date_id_is_one_file_name_part() -> None:
    assert checked_date_id("2025-11-05T14-43-47.148527") == "2025-11-05T14-43-47.148527"
    for bad in ["", ".", "..", ".hidden", "../x", "a/b", "a\\b", "x\0", " 2025", "50%", "~x"]:
        with pytest.raises(ValueError, match="is not a usable date id"):
            checked_date_id(bad)


def test_a_date_id_that_would_escape_the_output_is_refused_before_anything_is_written(
    tmp_path: Path,
) -> None:
    """``publish()`` (and a run's manifest) hand the date id to the sinks as a path component:
    ``../../x`` wrote the details outside output_dir."""
    from evalsink import EvaluationTracker
    from evalsink.models import EvaluationResults

    tracker = EvaluationTracker(tmp_path / "out", sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/m")
    with pytest.raises(ValueError, match="is not a usable date id"):
        tracker.publish(EvaluationResults(), "../../escaped")
    tracker.close()
    assert not list(tmp_path.rglob("*escaped*"))
    assert not (tmp_path / "out" / "results").exists()


def test_split_model_name() -> None:
    assert split_model_name("org/model") == ("org", "model")
    assert split_model_name("model") == ("", "model")
    assert split_model_name(None) == ("", UNKNOWN_MODEL)
