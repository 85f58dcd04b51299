"""docs/writing-a-sink.md shows plugins/example's real code, and `evalsink new-sink`'s real output.

A code block whose first line is ``# plugins/example/<path>`` must be that file, verbatim; one whose
first line is ``# plugins/example/<path> (excerpt)`` must be a verbatim, contiguous part of it. So
the walk-through cannot drift from the package CI tests, and editing either one without the other
fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from evalsink.cli import main

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "writing-a-sink.md"
EXAMPLE = REPO / "plugins" / "example"
SOURCE = re.compile(r"# (?P<path>plugins/example/\S+)(?P<excerpt> \(excerpt\))?")
SHOWN_WHOLE = {
    "plugins/example/pyproject.toml",
    "plugins/example/src/evalsink_example/__init__.py",
    "plugins/example/tests/test_jsonl_conformance.py",
}
NOT_PACKAGE_FILES = {"__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "build", "dist"}


def code_blocks(markdown: str) -> list[list[str]]:
    """The lines of every fenced code block (```), fences excluded."""
    blocks: list[list[str]] = []
    current: list[str] | None = None
    for line in markdown.splitlines():
        if line.startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append(current)
                current = None
        elif current is not None:
            current.append(line)
    assert current is None, "unclosed code block"
    return blocks


def sourced_blocks() -> list[tuple[str, bool, str]]:
    """(path, is_excerpt, code) of each block headed by a plugins/example path."""
    found = []
    for block in code_blocks(DOC.read_text(encoding="utf-8")):
        header = SOURCE.fullmatch(block[0]) if block else None
        if header is not None:
            found.append((header["path"], header["excerpt"] is not None, "\n".join(block[1:]) + "\n"))
    return found


def test_the_walk_through_shows_the_example_package_whole() -> None:
    whole = {path for path, excerpt, _ in sourced_blocks() if not excerpt}
    assert whole >= SHOWN_WHOLE


@pytest.mark.parametrize(
    ("path", "excerpt", "code"),
    [pytest.param(*block, id=f"{block[0]}{' (excerpt)' if block[1] else ''}") for block in sourced_blocks()],
)
def test_each_shown_file_is_the_real_one(path: str, excerpt: bool, code: str) -> None:
    real = (REPO / path).read_text(encoding="utf-8")
    if excerpt:
        assert code.strip("\n") in real, f"the excerpt of {path} in {DOC.name} is not in the file"
    else:
        assert code == real, f"{path} differs from the copy in {DOC.name}: copy the file into the doc"


def test_the_layout_lists_the_example_package_files() -> None:
    [tree] = [
        block for block in code_blocks(DOC.read_text(encoding="utf-8")) if block[:1] == ["plugins/example/"]
    ]
    shown = {re.sub(r"^[│├└─\s]+", "", line).split("#")[0].strip() for line in tree[1:]}
    files = {
        path.name
        for path in EXAMPLE.rglob("*")
        if path.is_file()
        and not NOT_PACKAGE_FILES.intersection(path.relative_to(EXAMPLE).parts)
        and not any(part.endswith(".egg-info") for part in path.parts)
    }
    assert files <= shown


def test_the_new_sink_output_is_the_real_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    [block] = [
        block
        for block in code_blocks(DOC.read_text(encoding="utf-8"))
        if block[:1] == ["$ evalsink new-sink mysink"]
    ]
    monkeypatch.chdir(tmp_path)

    result = CliRunner().invoke(main, ["new-sink", "mysink"])

    assert result.exit_code == 0, result.output
    assert result.output == "\n".join(block[1:]) + "\n"
