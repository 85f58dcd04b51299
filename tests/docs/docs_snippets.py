"""Running a page's code blocks as a reader would, and comparing their output with the page's.

A page is read as a sequence of fenced blocks:

* ``python`` blocks run in order, each in a fresh namespace (a reader may paste each into a file of
  its own, so each must carry its imports), in the test's working directory;
* ``console`` blocks are shell sessions: the lines starting with ``$ `` run, in order, in one bash
  process, and the other lines are the expected output;
* a block right after the comment ``<!-- docs-test: output -->`` is the expected output of the
  block before it;
* a block right after ``<!-- docs-test: skip -->`` is not run (one that needs the network or an
  account); blocks of other languages (``bash`` install commands, ``text``) are never run.

Outputs are compared after replacing what differs from run to run — date ids, run ids, durations,
the working directory (shown as ``/home/me/evals``) — and trailing spaces; ``...`` in the expected
output matches anything on its line (doctest's ELLIPSIS).
"""

from __future__ import annotations

import contextlib
import doctest
import io
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

WORKDIR_SHOWN = "/home/me/evals"
_FENCE = re.compile(
    r"^(?P<fence>```+|~~~+)(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S
)
_MARKER = re.compile(r"<!--\s*docs-test:\s*(?P<what>[\w-]+)\s*-->\s*$")
_DATE_ID = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}\.\d{6}")
_RUN_ID = re.compile(r"\brun [0-9a-f]{16}\b")
_SECONDS = re.compile(r"\bin \d+\.\d\ds\b")


@dataclass
class Block:
    lang: str
    body: str
    line: int
    marker: str | None
    expected: str | None = None  # the following "output" block, when there is one


def read_blocks(text: str) -> list[Block]:
    """The page's fenced blocks, each with the docs-test marker just above it, outputs attached."""
    blocks: list[Block] = []
    for match in _FENCE.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = _MARKER.search(before)
        block = Block(
            lang=match["lang"],
            body=match["body"],
            line=text.count("\n", 0, match.start()) + 1,
            marker=marker["what"] if marker else None,
        )
        if block.marker == "output":
            if not blocks:
                raise ValueError(f"line {block.line}: an output block needs a block before it")
            blocks[-1].expected = block.body
            continue
        blocks.append(block)
    return blocks


def normalise(text: str, workdir: Path) -> str:
    for folder in {str(workdir), os.path.realpath(workdir)}:
        text = text.replace(folder, WORKDIR_SHOWN)
    text = _DATE_ID.sub("<date_id>", text)  # same length in page and output: table widths agree
    text = _RUN_ID.sub("run <run_id>", text)
    text = _SECONDS.sub("in <seconds>s", text)
    return "\n".join(line.rstrip() for line in text.strip("\n").splitlines()) + "\n"


def assert_output(expected: str, got: str, workdir: Path, where: str) -> None:
    want, have = normalise(expected, workdir), normalise(got, workdir)
    if not doctest.OutputChecker().check_output(want, have, doctest.ELLIPSIS):
        raise AssertionError(
            f"{where}: the output differs from the page's\n--- page\n{want}--- actual\n{have}"
        )


def run_python(block: Block, workdir: Path) -> str:
    stdout = io.StringIO()
    code = compile(block.body, f"<block at line {block.line}>", "exec")
    with contextlib.redirect_stdout(stdout):
        exec(code, {"__name__": "__main__"})
    return stdout.getvalue()


def console_session(block: Block) -> tuple[str, str]:
    """(the commands as a bash script, the expected output) of a console block."""
    commands, expected = [], []
    for line in block.body.splitlines():
        if line.startswith("$ "):
            commands.append(line[2:])
        else:
            expected.append(line)
    return "\n".join(commands) + "\n", "\n".join(expected) + "\n"


def run_console(block: Block, workdir: Path) -> str:
    script, _ = console_session(block)
    bin_dir = str(Path(sys.executable).parent)  # the `evalsink` command of this environment
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", ""), "COLUMNS": "120"}
    env.pop("FORCE_COLOR", None)
    done = subprocess.run(
        ["bash", "-c", script], cwd=workdir, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    return done.stdout + done.stderr


def run_page(text: str, workdir: Path) -> list[Block]:
    """Run every runnable block of a page in ``workdir``; return the blocks that ran."""
    ran = []
    for block in read_blocks(text):
        if block.marker == "skip" or block.lang not in {"python", "console"}:
            continue
        where = f"block at line {block.line}"
        if block.lang == "python":
            output = run_python(block, workdir)
            if block.expected is not None:
                assert_output(block.expected, output, workdir, where)
        else:
            output = run_console(block, workdir)
            assert_output(console_session(block)[1], output, workdir, where)
        ran.append(block)
    return ran
