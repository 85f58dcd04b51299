"""``evalsink new-sink``: the generated package is valid, lint-clean, typed, installable, and its tests
pass as generated; bad names and existing folders are refused in one line, with nothing written."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from evalsink.cli import main
from evalsink.commands import new_sink

REPO = Path(__file__).resolve().parents[2]
LONGEST_NAME = "abcdefghij-abcdefghij-abcdefghij"  # 32 characters, the most check_name accepts


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def generate(folder: Path, name: str = "mysink") -> Path:
    target = folder / f"evalsink-{name}"
    result = invoke("new-sink", name, "--dir", str(target))
    assert result.exit_code == 0, result.output
    return target


def tree(folder: Path) -> set[str]:
    return {path.relative_to(folder).as_posix() for path in folder.rglob("*") if path.is_file()}


def run(
    *command: str | Path, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        check=False,  # the caller asserts on the return code, with the output in the message
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def require_module(name: str) -> None:
    """The lint and type checks run where the repository's dev tools are installed (the dev venv, tox's
    lint and type environments); elsewhere they are reported as skipped, not silently passed."""
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed in this environment")


def test_generates_a_package_named_after_the_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("new-sink", "my-sink")

    assert result.exit_code == 0, result.output
    package = tmp_path / "evalsink-my-sink"
    assert tree(package) == {
        "pyproject.toml",
        "README.md",
        "src/evalsink_my_sink/__init__.py",
        "src/evalsink_my_sink/py.typed",
        "tests/test_my_sink_conformance.py",
    }
    pyproject = (package / "pyproject.toml").read_text(encoding="utf-8")
    assert 'name = "evalsink-my-sink"' in pyproject
    assert 'my-sink = "evalsink_my_sink:MySinkSink"' in pyproject
    for path in package.rglob("*"):
        if path.is_file():
            assert "${" not in path.read_text(encoding="utf-8"), f"unfilled placeholder in {path}"
    source = (package / "src/evalsink_my_sink/__init__.py").read_text(encoding="utf-8")
    assert 'SINK_NAME = "my-sink"' in source
    assert "EVALSINK_MY_SINK__<FIELD>" in source
    assert not [entry for entry in tmp_path.iterdir() if entry.name.startswith(".")]  # no staging left


def test_dir_creates_missing_parents(tmp_path: Path) -> None:
    result = invoke("new-sink", "mysink", "--dir", str(tmp_path / "a" / "b"))

    assert result.exit_code == 0, result.output
    assert (tmp_path / "a" / "b" / "src" / "evalsink_mysink" / "__init__.py").is_file()


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("My Sink", "is not a sink name"),
        ("MySink", "is not a sink name"),
        ("1sink", "is not a sink name"),
        ("my--sink", "is not a sink name"),
        ("my_", "is not a sink name"),
        ("my.sink", "is not a sink name"),
        (LONGEST_NAME + "x", "is not a sink name"),
        ("evalsink-foo", "without the 'evalsink-' prefix"),
        ("local", "a sink named 'local' is already installed (evalsink-local"),
        (
            "recorder_remote",
            "share its package and environment variables with the installed sink 'recorder-remote'",
        ),
    ],
)
def test_a_bad_name_is_refused_in_one_line(tmp_path: Path, name: str, why: str) -> None:
    result = invoke("new-sink", name, "--dir", str(tmp_path / "out"))

    assert result.exit_code == 2
    assert why in result.stderr
    assert result.stderr.startswith("evalsink: error: ")
    assert result.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("existing", ["folder", "empty folder", "file"])
def test_an_existing_target_is_refused_and_left_alone(tmp_path: Path, existing: str) -> None:
    target = tmp_path / "evalsink-mysink"
    if existing == "file":
        target.write_text("mine", encoding="utf-8")
    else:
        target.mkdir()
        if existing == "folder":
            (target / "notes.txt").write_text("mine", encoding="utf-8")
    before = tree(tmp_path)

    result = invoke("new-sink", "mysink", "--dir", str(target))

    assert result.exit_code == 2
    assert result.stderr == f"evalsink: error: {target} already exists; choose another --dir\n"
    assert tree(tmp_path) == before


def test_a_failed_write_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_write_text = Path.write_text

    def failing_write_text(self: Path, data: str, *args: object, **kwargs: object) -> int:
        if self.name == "README.md":
            raise OSError(28, "No space left on device")
        return real_write_text(self, data, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "write_text", failing_write_text)
    result = invoke("new-sink", "mysink", "--dir", str(tmp_path / "pkg"))

    assert result.exit_code == 2
    assert "could not create" in result.stderr
    assert "No space left on device" in result.stderr
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["mysink", "a_b-c", LONGEST_NAME])
def test_the_generated_code_passes_the_repository_lint(tmp_path: Path, name: str) -> None:
    require_module("ruff")
    package = generate(tmp_path, name)
    module = new_sink.variables(name)["module"]
    # the repository's rules; for isort, the package's own view: its module is first-party, evalsink
    # is a dependency like pytest
    config = [
        "--config",
        str(REPO / "pyproject.toml"),
        "--config",
        f"lint.isort.known-first-party = ['{module}']",
    ]

    for command in (["check", "--no-cache"], ["format", "--check", "--no-cache"]):
        done = run(sys.executable, "-m", "ruff", *command, *config, package, cwd=tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr


def test_the_generated_code_passes_mypy_strict(tmp_path: Path) -> None:
    require_module("mypy")
    package = generate(tmp_path)
    done = run(
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        REPO / "pyproject.toml",
        "--cache-dir",
        tmp_path / "mypy-cache",
        package / "src",
        package / "tests",
        cwd=REPO,  # the config's mypy_path (evalsink's sources) is relative to the repository
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_generated_package_installs_and_its_tests_pass(tmp_path: Path) -> None:
    """What a sink author does first: install the package, run its tests, before any edit.

    pip builds and installs the package's wheel (its build backend comes from the package index)
    into a folder of its own, put on this interpreter's path: evalsink, its local sink and pytest
    are this environment's, the sink is found only through the installed entry point, and a
    `packages` setting that left the module out of the wheel would fail here.
    """
    package = generate(tmp_path)
    site = tmp_path / "site"
    installed = run(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--target",
        site,
        package,
        cwd=tmp_path,
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")}
    env["PYTHONPATH"] = str(site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"

    done = run(sys.executable, "-m", "pytest", "-p", "no:cacheprovider", cwd=package, env=env)

    assert done.returncode == 0, done.stdout + done.stderr
    summary = done.stdout.strip().splitlines()[-1]
    assert re.search(r"\b\d+ passed\b", summary), done.stdout
    assert not re.search(r"skipped|deselected|xfail|error|warning", summary), done.stdout  # the whole kit ran
    assert (site / "evalsink_mysink" / "__init__.py").is_file()


def test_the_templates_ship_in_the_core_wheel(tmp_path: Path) -> None:
    built = run(
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--quiet",
        "--no-deps",
        "-w",
        tmp_path,
        REPO / "core",
        cwd=tmp_path,
    )
    assert built.returncode == 0, built.stdout + built.stderr
    [wheel] = tmp_path.glob("evalsink-*.whl")

    names = set(zipfile.ZipFile(wheel).namelist())

    assert {f"evalsink/templates/sink/{template}" for template in new_sink.FILES} <= names


def test_a_name_differing_from_an_installed_one_only_in_case_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A third party's sink may be named ``MySink``: ``mysink`` would read its EVALSINK_MYSINK__*
    variables, and enabling either would then be refused."""
    import click

    from evalsink import discovery
    from evalsink.commands.new_sink import check_name

    entry = discovery.SinkEntry("MySink", "their_pkg:Sink", "their-sinks", "1.0", None)  # type: ignore[arg-type]
    monkeypatch.setattr(discovery, "discover", lambda: discovery.Installed({"MySink": entry}, {}))
    with pytest.raises(click.BadParameter, match=r"'mysink' would share .* the installed sink 'MySink'"):
        check_name("mysink")
    assert check_name("othersink") == "othersink"
