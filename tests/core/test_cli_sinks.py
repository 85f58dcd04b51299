"""``evalsink sinks``: installed sinks from metadata (nothing imported), what EVALSINK_SINKS enables,
and ``--check``, which imports each sink and validates its config, reporting each failure."""

from __future__ import annotations

import importlib.metadata
import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from core_helpers import run_cli
from pydantic import Field

from evalsink import Sink, SinkConfig, discovery
from evalsink.cli import main
from evalsink.commands.sinks import configured_sinks
from evalsink.discovery import GROUP
from evalsink.tracker import select_sinks

FIXTURE_SINKS = {
    "recorder": "evalsink_recorder:RecorderSink",
    "recorder-remote": "evalsink_recorder:RemoteRecorderSink",
    "flaky": "evalsink_recorder:FlakySink",
}


def invoke(*args: str, env: Mapping[str, str] | None = None) -> Result:
    """Run the command in-process, wide enough that rich never wraps a cell."""
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250", **(env or {})})


def listing(*args: str, env: Mapping[str, str] | None = None) -> tuple[Result, dict[str, Any]]:
    result = invoke("sinks", "--json", *args, env=env)
    return result, json.loads(result.stdout)


def rows_by_name(data: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for row in data["sinks"]:
        out.setdefault(row["name"], []).append(row)
    return out


class FakeDist:
    def __init__(self, name: str, version: str) -> None:
        self.metadata = {"Name": name}
        self.version = version


class FakeEntryPoint:
    """What discovery reads from an entry point (as in test_discovery.py)."""

    def __init__(self, name: str, value: str, dist: FakeDist) -> None:
        self.name, self.value, self.group, self.dist = name, value, GROUP, dist
        self._real = importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)

    def load(self) -> Any:
        return self._real.load()


@pytest.fixture
def add_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make discovery see the installed entry points plus fake ones."""

    def add(*fakes: FakeEntryPoint) -> None:
        real = list(importlib.metadata.entry_points(group=GROUP))
        monkeypatch.setattr(discovery, "entry_points", lambda **kwargs: [*real, *fakes])

    return add


class NotASink:
    """Target of an entry point that names a class unrelated to evalsink."""


class NeedsProjectConfig(SinkConfig):
    project: str = Field(description="required: no default")


class NeedsProjectSink(Sink):
    """A sink whose config cannot be built from defaults alone."""

    config_model = NeedsProjectConfig


# -- listing ---------------------------------------------------------------------------------------


def test_the_fixture_sinks_are_listed_with_distribution_version_and_entry_point() -> None:
    result, data = listing()
    assert result.exit_code == 0, result.output
    rows = rows_by_name(data)
    for name, value in FIXTURE_SINKS.items():
        [row] = rows[name]
        assert row["distribution"] == "evalsink-recorder"
        assert row["version"] == "0.0.1"
        assert row["entry_point"] == value
        assert row["errors"] == []
        assert row["checked"] is False
        assert row["remote"] is None  # unknown without importing the class
    assert rows["local"][0]["distribution"] == "evalsink-local"
    assert data["ok"] is True
    assert data["checked"] is False


def test_the_table_shows_each_sink_and_what_is_enabled() -> None:
    result = invoke("sinks")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    [recorder_remote] = [line for line in lines if " recorder-remote " in line]
    assert "evalsink-recorder" in recorder_remote
    assert "0.0.1" in recorder_remote
    assert "evalsink_recorder:RemoteRecorderSink" in recorder_remote
    assert " no " in recorder_remote
    [local] = [line for line in lines if " local " in line and "evalsink-local" in line]
    assert " yes " in local
    assert "enabled: local (default; set EVALSINK_SINKS to change)" in result.stdout
    assert "evalsink sinks --check" in result.stdout  # says how to go further
    assert result.stderr == ""


def test_by_default_only_local_is_enabled() -> None:
    _, data = listing()
    assert data["enabled"] == ["local"]
    assert data["enabled_from"] == "default"
    enabled = {row["name"] for row in data["sinks"] if row["enabled"]}
    assert enabled == {"local"}


def test_evalsink_sinks_decides_what_is_enabled() -> None:
    result, data = listing(env={"EVALSINK_SINKS": " recorder, flaky ,recorder"})
    assert result.exit_code == 0, result.output
    assert data["enabled"] == ["recorder", "flaky"]
    assert data["enabled_from"] == "EVALSINK_SINKS"
    rows = rows_by_name(data)
    assert rows["recorder"][0]["enabled"] is True
    assert rows["flaky"][0]["enabled"] is True
    assert rows["local"][0]["enabled"] is False
    assert rows["recorder-remote"][0]["enabled"] is False
    table = invoke("sinks", env={"EVALSINK_SINKS": "recorder,flaky"})
    assert "enabled: recorder, flaky (EVALSINK_SINKS)" in table.stdout


def test_evalsink_sinks_set_but_empty_enables_nothing() -> None:
    result, data = listing(env={"EVALSINK_SINKS": ""})
    assert result.exit_code == 0
    assert data["enabled"] == []
    assert not any(row["enabled"] for row in data["sinks"])
    assert "enabled: none (EVALSINK_SINKS)" in invoke("sinks", env={"EVALSINK_SINKS": ""}).stdout


@pytest.mark.parametrize(
    "environ",
    [{}, {"EVALSINK_SINKS": ""}, {"EVALSINK_SINKS": "recorder"}, {"EVALSINK_SINKS": " a, b ,a,, "}],
)
def test_enabled_follows_the_trackers_rule(environ: dict[str, str]) -> None:
    """The command repeats the tracker's rule to avoid importing pluggy; they must not drift apart."""
    assert configured_sinks(environ)[0] == select_sinks(None, environ=environ)


def test_an_enabled_sink_that_is_not_installed_is_an_error() -> None:
    result, data = listing(env={"EVALSINK_SINKS": "recorder,hub-typo"})
    assert result.exit_code == 1
    [row] = rows_by_name(data)["hub-typo"]
    assert row["distribution"] is None
    assert row["enabled"] is True
    assert row["errors"] == [
        "enabled by EVALSINK_SINKS but not installed: install the package that provides the evalsink "
        "sink 'hub-typo'"
    ]
    assert data["ok"] is False
    table = invoke("sinks", env={"EVALSINK_SINKS": "recorder,hub-typo"})
    assert table.exit_code == 1
    assert "error: hub-typo: enabled by EVALSINK_SINKS but not installed" in table.stdout


def test_a_name_claimed_by_two_distributions_is_shown_as_an_error(
    add_entry_points: Callable[..., None],
) -> None:
    add_entry_points(FakeEntryPoint("recorder", "other_pkg:Recorder", FakeDist("other-sinks", "2.3.4")))
    result, data = listing()
    assert result.exit_code == 1
    claims = rows_by_name(data)["recorder"]
    assert [(c["distribution"], c["version"]) for c in claims] == [
        ("evalsink-recorder", "0.0.1"),
        ("other-sinks", "2.3.4"),
    ]
    for claim in claims:
        [error] = claim["errors"]
        assert "several installed distributions provide the sink 'recorder'" in error
        assert "evalsink-recorder 0.0.1" in error
        assert "other-sinks 2.3.4" in error
    assert rows_by_name(data)["flaky"][0]["errors"] == []  # the rest are listed as usual
    table = invoke("sinks")
    assert table.stdout.count("error: recorder: several installed distributions") == 1


# -- --check ---------------------------------------------------------------------------------------


def test_check_imports_each_sink_and_reports_its_kind() -> None:
    result, data = listing("--check")
    assert result.exit_code == 0, result.output
    rows = rows_by_name(data)
    assert data["checked"] is True
    assert rows["recorder"][0]["remote"] is False
    assert rows["recorder-remote"][0]["remote"] is True
    assert rows["local"][0]["remote"] is False
    assert all(row["checked"] and row["ok"] for row in data["sinks"])
    table = invoke("sinks", "--check")
    [line] = [line for line in table.stdout.splitlines() if " recorder-remote " in line]
    assert " remote " in line
    assert " ok " in line


def test_check_reports_a_sink_whose_import_fails(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(
        FakeEntryPoint("broken", "evalsink_no_such_module_xyz:Sink", FakeDist("broken-sink", "9.9"))
    )
    result, data = listing()
    assert result.exit_code == 0  # listing alone does not import it, so it cannot know
    assert rows_by_name(data)["broken"][0]["errors"] == []
    result, data = listing("--check")
    assert result.exit_code == 1
    rows = rows_by_name(data)
    [error] = rows["broken"][0]["errors"]
    assert "sink 'broken' from broken-sink 9.9 failed to import" in error
    assert "ModuleNotFoundError" in error
    assert rows["recorder"][0]["errors"] == []  # one broken sink does not hide the others' results
    table = invoke("sinks", "--check")
    assert table.exit_code == 1
    assert "error: broken: sink 'broken' from broken-sink 9.9 failed to import" in table.stdout
    assert "Traceback" not in table.output


def test_check_reports_a_class_that_is_not_a_sink(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(FakeEntryPoint("alien", f"{__name__}:NotASink", FakeDist("alien-sink", "1.0")))
    result, data = listing("--check")
    assert result.exit_code == 1
    [error] = rows_by_name(data)["alien"][0]["errors"]
    assert error == (
        f"entry point {__name__}:NotASink is {__name__}.NotASink, which is not a subclass of evalsink.Sink"
    )


def test_check_reports_a_config_that_defaults_cannot_build(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(FakeEntryPoint("needy", f"{__name__}:NeedsProjectSink", FakeDist("needy-sink", "1.0")))
    # not enabled: a note on what enabling it needs, not an error
    result, data = listing("--check")
    assert result.exit_code == 0
    needy = rows_by_name(data)["needy"][0]
    assert (needy["errors"], needy["notes"]) == (
        [],
        ["sink 'needy': invalid config: project: Field required"],
    )
    assert "note: needy (not enabled): sink 'needy': invalid config" in invoke("sinks", "--check").stdout
    # enabled: an error
    result, data = listing("--check", env={"EVALSINK_SINKS": "local,needy"})
    assert result.exit_code == 1
    [error] = rows_by_name(data)["needy"][0]["errors"]
    assert error == "sink 'needy': invalid config: project: Field required"
    result, data = listing("--check", env={"EVALSINK_SINKS": "needy", "EVALSINK_NEEDY__PROJECT": "p"})
    assert rows_by_name(data)["needy"][0]["errors"] == []
    assert result.exit_code == 0


def test_check_validates_the_config_from_the_environment() -> None:
    env = {"EVALSINK_FLAKY__FAIL_IN": "sometimes", "EVALSINK_RECORDER__LABLE": "typo"}
    result, data = listing("--check", env=env)
    assert result.exit_code == 1
    rows = rows_by_name(data)
    [flaky] = rows["flaky"][0]["errors"]
    assert flaky.startswith(
        "sink 'flaky': invalid config: EVALSINK_FLAKY__FAIL_IN='sometimes': Input should be"
    )
    [recorder] = rows["recorder"][0]["errors"]
    assert "unknown option(s) EVALSINK_RECORDER__LABLE" in recorder
    assert rows["recorder-remote"][0]["errors"] == []


# -- whole process ---------------------------------------------------------------------------------

SINK_LIBRARIES = (
    "evalsink_local",
    "evalsink_recorder",
    "evalsink_tensorboard",
    "evalsink_trackio",
    "evalsink_hub",
    "evalsink_wandb",
    "pyarrow",
    "pluggy",
    "pydantic",
)

IMPORTED_BY = textwrap.dedent(
    """
    import json, sys
    from evalsink.cli import main
    try:
        main(sys.argv[1:])
    except SystemExit as exit:
        code = exit.code
    watched = {watched!r}
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in watched)
    print(json.dumps({{"code": code, "loaded": loaded}}), file=sys.stderr)
    """
).format(watched=SINK_LIBRARIES)


def imported_by(*args: str, tmp_path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", IMPORTED_BY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stderr.strip().splitlines()[-1])
    return report


@pytest.mark.parametrize("args", [["--help"], ["sinks"], ["sinks", "--json"]])
def test_help_and_listing_import_no_sink_nor_heavy_library(args: list[str], tmp_path: Path) -> None:
    report = imported_by(*args, tmp_path=tmp_path)
    assert report["code"] == 0
    assert report["loaded"] == []


def test_check_does_import_the_sinks(tmp_path: Path) -> None:
    """The counterpart of the test above: the same probe sees sink modules once they are imported."""
    report = imported_by("sinks", "--check", tmp_path=tmp_path)
    assert report["code"] == 0
    assert {"evalsink_recorder", "evalsink_local", "pydantic"} <= set(report["loaded"])


def test_python_m_evalsink_sinks(tmp_path: Path) -> None:
    done = run_cli("sinks", "--json", cwd=tmp_path, env={"EVALSINK_SINKS": "flaky"})
    assert done.returncode == 0, done.stderr
    rows = rows_by_name(json.loads(done.stdout))
    assert rows["flaky"][0]["enabled"] is True
    assert rows["flaky"][0]["version"] == "0.0.1"
    assert rows["local"][0]["enabled"] is False


def test_python_m_evalsink_sinks_check_reports_a_broken_distribution(tmp_path: Path) -> None:
    """A real installed distribution (a dist-info folder on the path) whose module does not exist."""
    site = tmp_path / "site"
    dist_info = site / "broken_sink-9.9.dist-info"
    dist_info.mkdir(parents=True)
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: broken-sink\nVersion: 9.9\n")
    (dist_info / "entry_points.txt").write_text(
        "[evalsink.sinks]\nbroken = evalsink_no_such_module_xyz:Sink\n"
    )
    env = {"PYTHONPATH": str(site), "EVALSINK_FLAKY__FAIL_IN": "sometimes"}

    listed = run_cli("sinks", cwd=tmp_path, env=env)
    assert listed.returncode == 0, listed.stderr
    assert "broken-sink" in listed.stdout

    checked = run_cli("sinks", "--check", cwd=tmp_path, env=env)
    assert checked.returncode == 1
    assert "error: broken: sink 'broken' from broken-sink 9.9 failed to import" in checked.stdout
    assert "ModuleNotFoundError" in checked.stdout
    assert "error: flaky: sink 'flaky': invalid config: EVALSINK_FLAKY__FAIL_IN" in checked.stdout
    assert "Traceback" not in checked.stdout + checked.stderr
