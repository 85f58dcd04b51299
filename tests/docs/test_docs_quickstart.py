"""docs/quickstart.md works as written: every snippet runs, in order, and prints what the page says."""

from __future__ import annotations

from pathlib import Path

import pytest
from docs_snippets import Block, assert_output, read_blocks, run_page

PAGE = Path(__file__).resolve().parents[2] / "docs" / "quickstart.md"


def test_the_quickstart_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("evalsink_local")
    pytest.importorskip("evalsink_tensorboard")  # "Enable a second sink" installs it
    pytest.importorskip("pyarrow")
    workdir = tmp_path / "evals"
    workdir.mkdir()
    monkeypatch.chdir(workdir)

    ran = run_page(PAGE.read_text(encoding="utf-8"), workdir)

    assert {block.lang for block in ran} == {"python", "console"}
    # what the page says the reader ends up with
    assert len(list(workdir.glob("results/results/my-org/my-model/results_*.json"))) == 1
    assert (
        len(list(workdir.glob("results-v2/details/my-org/my-model/*/details_custom|arith|0_*.parquet"))) == 1
    )
    assert len(list(workdir.glob("results-v2/tb/eval/events.out.tfevents.*"))) == 1
    assert not (workdir / "results" / ".evalsink").exists()  # the spool is gone after a good save


def test_every_python_block_is_checked_against_an_output_or_prints_nothing() -> None:
    """A python block that prints must show what it prints: the page cannot promise silently."""
    for block in read_blocks(PAGE.read_text(encoding="utf-8")):
        if block.lang == "python" and block.marker != "skip" and "print(" in block.body:
            assert block.expected is not None, (
                f"line {block.line}: prints, but the page shows no output block"
            )


def test_markers_are_known() -> None:
    for block in read_blocks(PAGE.read_text(encoding="utf-8")):
        assert block.marker in {None, "skip"}, f"line {block.line}: unknown docs-test marker {block.marker!r}"


def test_the_checker_catches_a_wrong_output(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match="differs"):
        assert_output("em 0.75\n", "em 0.50\n", tmp_path, "here")
    assert_output(
        f"run 0123456789abcdef (2026-01-01T00-00-00.000000): ok in 1.00s\n{'...'}\n",
        (f"run fedcba9876543210 (2030-12-31T23-59-59.999999): ok in 0.01s\n{tmp_path}/x\n"),
        tmp_path,
        "here",
    )


def test_blocks_and_markers_are_read_as_documented() -> None:
    text = "\n".join(
        [
            "```python",
            "print(1)",
            "```",
            "<!-- docs-test: output -->",
            "```text",
            "1",
            "```",
            "<!-- docs-test: skip -->",
            "```python",
            "import network",
            "```",
            "```bash",
            "pip install x",
            "```",
        ]
    )
    blocks = read_blocks(text + "\n")
    assert [(b.lang, b.marker, b.expected) for b in blocks] == [
        ("python", None, "1\n"),
        ("python", "skip", None),
        ("bash", None, None),
    ]
    assert isinstance(blocks[0], Block)
