"""docs/hooks.md and the hookspecs are one contract: neither may drift from the other."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from evalsink import hookspecs

DOCS = Path(__file__).resolve().parents[2] / "docs" / "hooks.md"


def _documented() -> dict[str, list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    found: dict[str, list[str]] = {}
    for name, params in re.findall(r"def (evalsink_\w+)\(self, ([^)]*)\)", text):
        found[name] = [part.split(":")[0].strip() for part in params.split(",") if part.strip()]
    return found


def _specs() -> dict[str, list[str]]:
    return {
        name: list(inspect.signature(function).parameters)
        for name, function in inspect.getmembers(hookspecs, inspect.isfunction)
        if name.startswith("evalsink_")
    }


def test_every_hookspec_is_documented_with_its_arguments() -> None:
    assert _documented() == _specs()


def test_every_hook_has_a_section_and_a_docstring() -> None:
    text = DOCS.read_text(encoding="utf-8")
    for name, function in inspect.getmembers(hookspecs, inspect.isfunction):
        if name.startswith("evalsink_"):
            assert f"## {name}" in text
            assert function.__doc__
            assert ":param run:" in function.__doc__


def test_hook_names_constant_matches_specs() -> None:
    assert set(hookspecs.HOOK_NAMES) == set(_specs())


@pytest.mark.parametrize("name", hookspecs.HOOK_NAMES)
def test_each_hook_is_exercised_by_the_recorder_test_sink(name: str) -> None:
    import evalsink_recorder

    assert hasattr(evalsink_recorder.RecorderSink, name)
