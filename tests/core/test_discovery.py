"""Discovery: sinks are listed from package metadata, imported only when enabled, clashes refused
only for a tracker that enables the clashing name."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from evalsink import EvaluationTracker, Sink, discovery, hookimpl
from evalsink.discovery import (
    GROUP,
    Installed,
    discover,
    find_sink,
    find_sinks,
    install_hint,
    installed_sinks,
)
from evalsink.errors import DuplicateSinkError, SinkLoadError, SinkNotInstalledError


@pytest.fixture(autouse=True)
def installed_from_an_index(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests run from a clone; hints are checked as a user of the released packages sees them
    (the source-tree hint has its own tests below)."""
    monkeypatch.setattr(discovery, "_source_plugin", lambda name: None)


@dataclass
class FakeDist:
    name: str
    version: str

    @property
    def metadata(self) -> dict[str, str]:
        return {"Name": self.name}


class FakeEntryPoint:
    """What ``installed_sinks`` reads from an entry point: name, value, dist, load()."""

    def __init__(self, name: str, value: str, dist: FakeDist | None) -> None:
        self.name = name
        self.value = value
        self.group = GROUP
        self.dist = dist
        self._real = importlib.metadata.EntryPoint(name=name, value=value, group=GROUP)

    def load(self) -> Any:
        return self._real.load()


@pytest.fixture
def add_entry_points(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Make ``evalsink.discovery`` see the installed entry points plus fake ones."""

    def add(*fakes: FakeEntryPoint) -> None:
        real = list(importlib.metadata.entry_points(group=GROUP))

        def entry_points(**kwargs: Any) -> list[Any]:
            assert kwargs == {"group": GROUP}
            return [*real, *fakes]

        monkeypatch.setattr(discovery, "entry_points", entry_points)

    return add


def _broken() -> FakeEntryPoint:
    return FakeEntryPoint("broken", "evalsink_no_such_module_xyz:Sink", FakeDist("broken-sink", "9.9"))


def test_installed_sinks_lists_the_test_environment() -> None:
    sinks = installed_sinks()
    assert {"local", "recorder", "recorder-remote", "flaky"} <= set(sinks)
    recorder = sinks["recorder"]
    assert recorder.name == "recorder"
    assert recorder.value == "evalsink_recorder:RecorderSink"
    assert recorder.distribution == "evalsink-recorder"
    assert recorder.version == "0.0.1"
    assert sinks["local"].distribution == "evalsink-local"


def test_listing_imports_no_sink(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from evalsink.discovery import installed_sinks\n"
        "names = set(installed_sinks())\n"
        "assert {'local', 'recorder', 'flaky'} <= names, names\n"
        "loaded = [m for m in ('evalsink_recorder', 'evalsink_local', 'pyarrow') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "from evalsink.discovery import find_sink\n"
        "find_sink('recorder').load()\n"  # the check above can fail: loading does import
        "assert 'evalsink_recorder' in sys.modules\n"
        "assert 'evalsink_local' not in sys.modules\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, cwd=tmp_path, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def without(*names: str) -> Installed:
    """What is installed here, minus some sinks: the missing-sink messages, whatever the env holds."""
    real = discover()
    return Installed(
        sinks={name: entry for name, entry in real.sinks.items() if name not in names},
        conflicts=real.conflicts,
    )


def test_find_sink_of_a_known_first_party_sink_gives_the_pip_line() -> None:
    with pytest.raises(SinkNotInstalledError) as info:
        find_sink("wandb", without("wandb"))
    message = str(info.value)
    assert "sink 'wandb' is not installed: pip install \"evalsink[wandb]\"" in message
    assert "recorder" in message  # lists what is installed


def test_find_sink_of_an_unknown_sink() -> None:
    nothing = Installed(sinks={}, conflicts={})
    with pytest.raises(SinkNotInstalledError) as info:
        find_sink("no-such-sink", nothing)
    message = str(info.value)
    assert (
        "sink 'no-such-sink' is not installed: install the package that provides the evalsink sink "
        "'no-such-sink'" in message
    )
    assert "installed sinks: none" in message
    assert install_hint("hub") == 'pip install "evalsink[hub]"'


def test_find_sink_looks_only_in_the_installed_it_is_given() -> None:
    real = discover()
    only_flaky = Installed(sinks={"flaky": real.sinks["flaky"]}, conflicts={})
    assert find_sink("flaky", only_flaky) is real.sinks["flaky"]
    with pytest.raises(
        SinkNotInstalledError, match=r"sink 'recorder' is not installed.*installed sinks: flaky"
    ):
        find_sink("recorder", only_flaky)  # installed on this machine, but not in what was passed


def test_find_sinks_returns_the_entries_in_the_order_asked() -> None:
    entries = find_sinks(["flaky", "recorder"])
    assert [entry.name for entry in entries] == ["flaky", "recorder"]
    assert entries[1].value == "evalsink_recorder:RecorderSink"
    assert find_sinks([]) == []


def test_every_missing_sink_is_named_in_one_error() -> None:
    with pytest.raises(SinkNotInstalledError) as info:
        find_sinks(["recorder", "wandb", "no-such-sink", "hub"], without("wandb", "hub"))
    message = str(info.value)
    assert "sink 'wandb' is not installed: pip install \"evalsink[wandb]\"" in message
    assert "sink 'hub' is not installed: pip install \"evalsink[hub]\"" in message
    assert "sink 'no-such-sink' is not installed" in message
    assert "'recorder' is not installed" not in message


def test_a_tracker_enabling_two_missing_sinks_names_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("evalsink.tracker.discover", lambda: without("wandb"))
    with pytest.raises(SinkNotInstalledError) as info:
        EvaluationTracker(tmp_path, sinks=["recorder", "wandb", "no-such-sink"])
    message = str(info.value)
    assert "sink 'wandb' is not installed: pip install \"evalsink[wandb]\"" in message
    assert "sink 'no-such-sink' is not installed: install the package that provides" in message
    assert not (tmp_path / ".evalsink").exists()


def test_find_sink_returns_the_entry() -> None:
    entry = find_sink("flaky")
    assert entry.value == "evalsink_recorder:FlakySink"
    sink_class = entry.load()
    assert sink_class.__name__ == "FlakySink"


def _claim_recorder_twice(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(FakeEntryPoint("recorder", "other_pkg:Recorder", FakeDist("other-sinks", "2.3.4")))


def _assert_names_both_claims(error: DuplicateSinkError) -> None:
    message = str(error)
    assert "'recorder'" in message
    assert "evalsink-recorder 0.0.1" in message
    assert "evalsink_recorder:RecorderSink" in message
    assert "other-sinks 2.3.4" in message
    assert "other_pkg:Recorder" in message


def test_two_distributions_claiming_a_name_is_a_conflict_not_a_listing_error(
    add_entry_points: Callable[..., None],
) -> None:
    _claim_recorder_twice(add_entry_points)
    sinks = installed_sinks()  # listing does not raise
    assert "recorder" not in sinks
    assert {"local", "flaky", "recorder-remote"} <= set(sinks)
    installed = discover()
    assert installed.sinks == sinks
    claims = installed.conflicts["recorder"]
    assert [(c.distribution, c.version, c.value) for c in claims] == [
        ("evalsink-recorder", "0.0.1", "evalsink_recorder:RecorderSink"),
        ("other-sinks", "2.3.4", "other_pkg:Recorder"),
    ]
    assert "recorder" in installed.names()
    assert installed.names() == sorted(installed.names())


def test_enabling_a_conflicting_name_is_an_error_naming_both(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    _claim_recorder_twice(add_entry_points)
    with pytest.raises(DuplicateSinkError) as info:
        find_sink("recorder")
    _assert_names_both_claims(info.value)
    with pytest.raises(DuplicateSinkError) as info:
        find_sinks(["flaky", "recorder"])
    _assert_names_both_claims(info.value)
    with pytest.raises(DuplicateSinkError) as info:
        EvaluationTracker(tmp_path / "out", sinks=["local", "recorder"])
    _assert_names_both_claims(info.value)
    assert not (tmp_path / "out").exists()


def test_a_tracker_not_enabling_the_conflicting_name_works(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    _claim_recorder_twice(add_entry_points)
    assert find_sink("local").distribution == "evalsink-local"
    tracker = EvaluationTracker(tmp_path, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/m")
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 1.0})
    report = tracker.save()
    assert report.ok
    assert list((tmp_path / "results" / "org" / "m").glob("results_*.json"))


def test_the_same_distribution_listed_twice_is_one_sink(add_entry_points: Callable[..., None]) -> None:
    # editable installs can list a distribution twice, with a differently spelt name
    add_entry_points(
        FakeEntryPoint("recorder", "evalsink_recorder:RecorderSink", FakeDist("evalsink_recorder", "0.0.1")),
        FakeEntryPoint("extra", "evalsink_recorder:RecorderSink", FakeDist("extra-dist", "1.0")),
        FakeEntryPoint("extra", "evalsink_recorder:RecorderSink", FakeDist("Extra.Dist", "1.0")),
    )
    sinks = installed_sinks()
    assert sinks["recorder"].distribution == "evalsink-recorder"
    assert sinks["extra"].distribution == "extra-dist"


def test_a_conflict_lists_a_distribution_listed_twice_once(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(
        FakeEntryPoint("recorder", "other_pkg:Recorder", FakeDist("other-sinks", "2.3.4")),
        FakeEntryPoint("recorder", "other_pkg:Recorder", FakeDist("Other_Sinks", "2.3.4")),
    )
    claims = discover().conflicts["recorder"]
    assert [c.distribution for c in claims] == ["evalsink-recorder", "other-sinks"]


def test_entry_point_without_distribution(add_entry_points: Callable[..., None]) -> None:
    add_entry_points(FakeEntryPoint("orphan", "evalsink_recorder:RecorderSink", None))
    assert installed_sinks()["orphan"].distribution == "<unknown distribution>"


def test_a_broken_sink_fails_only_when_enabled(add_entry_points: Callable[..., None], tmp_path: Path) -> None:
    add_entry_points(
        FakeEntryPoint("broken", "evalsink_no_such_module_xyz:Sink", FakeDist("broken-sink", "9.9"))
    )
    assert "broken" in installed_sinks()
    tracker = EvaluationTracker(tmp_path / "ok", sinks=["recorder"])  # broken is present, not enabled
    tracker.general_config_logger.log_model_info(model_name="org/m")
    report = tracker.save()
    tracker.close()
    assert report.ok
    with pytest.raises(SinkLoadError) as info:
        EvaluationTracker(tmp_path / "broken", sinks=["recorder", "broken"])
    message = str(info.value)
    assert "'broken'" in message
    assert "broken-sink 9.9" in message
    assert "ModuleNotFoundError" in message


def test_a_broken_sink_beside_the_local_sink(add_entry_points: Callable[..., None], tmp_path: Path) -> None:
    add_entry_points(
        FakeEntryPoint("broken", "evalsink_no_such_module_xyz:Sink", FakeDist("broken-sink", "9.9"))
    )
    tracker = EvaluationTracker(tmp_path, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/m")
    tracker.metrics_logger.log("lighteval|t|0", {"acc": 1.0})
    report = tracker.save()
    tracker.close()
    assert report.ok
    assert list((tmp_path / "results" / "org" / "m").glob("results_*.json"))


def not_a_class() -> None:
    """Target of a fake entry point that is not a sink class."""


def test_an_entry_point_that_is_not_a_class(add_entry_points: Callable[..., None], tmp_path: Path) -> None:
    value = f"{__name__}:not_a_class"
    add_entry_points(FakeEntryPoint("func", value, FakeDist("func-sink", "0.1")))
    with pytest.raises(
        SinkLoadError, match=r"func-sink 0\.1: entry point .* is a function, not a sink class"
    ):
        EvaluationTracker(tmp_path, sinks=["func"])


class MisspeltHookSink(Sink):
    """A sink whose hook name has a typo: pluggy refuses it when it is registered."""

    @hookimpl
    def evalsink_run_strated(self, run: Any) -> None:
        pass


def test_a_sink_with_a_misspelt_hook_is_refused(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    add_entry_points(FakeEntryPoint("typo", f"{__name__}:MisspeltHookSink", FakeDist("typo-sink", "1")))
    with pytest.raises(
        SinkLoadError, match=r"'typo' does not follow the hook contract.*evalsink_run_strated"
    ):
        EvaluationTracker(tmp_path, sinks=["typo"])


class WrapperHookSink(Sink):
    """A sink implementing a hook as a wrapper: evalsink calls hooks itself, so it is refused."""

    @hookimpl(wrapper=True)
    def evalsink_run_started(self, run: Any) -> Any:
        return (yield)


class DefaultedArgumentSink(Sink):
    @hookimpl
    def evalsink_details_batch(self, run: Any, batch: Any = None) -> None:  # pluggy never passes batch
        raise AssertionError("never registered")


class UnmarkedHookSink(Sink):
    def evalsink_details_batch(self, run: Any, batch: Any) -> None:  # no @hookimpl: never called
        raise AssertionError("never registered")


class ConnectedClientSink(Sink):
    """A property named like a hook that raises when read (a client not connected yet)."""

    @property
    def evalsink_run_started(self) -> Any:
        raise RuntimeError("not connected")


class PartialUploadError(RuntimeError):
    def __init__(self, outputs: list[str]) -> None:
        super().__init__("upload stopped half way")
        self.outputs = outputs


class HalfwaySink(Sink):
    """Fails in results_saved after writing some outputs, which its exception carries."""

    @hookimpl
    def evalsink_results_saved(self, run: Any, results: Any) -> None:
        raise PartialUploadError([f"remote://{run.run_id}/results.json"])


def test_a_sink_with_a_hook_wrapper_is_refused(add_entry_points: Callable[..., None], tmp_path: Path) -> None:
    add_entry_points(FakeEntryPoint("wrap", f"{__name__}:WrapperHookSink", FakeDist("wrap-sink", "1")))
    with pytest.raises(SinkLoadError, match=r"'wrap' does not follow the hook contract.*hook wrapper"):
        EvaluationTracker(tmp_path, sinks=["wrap"])


@pytest.mark.parametrize(
    ("sink_class", "message"),
    [
        ("DefaultedArgumentSink", r"evalsink_details_batch gives a default to batch"),
        ("UnmarkedHookSink", r"evalsink_details_batch lack\(s\) the @hookimpl marker"),
    ],
)
def test_a_hook_that_would_never_see_its_data_is_refused(
    add_entry_points: Callable[..., None], tmp_path: Path, sink_class: str, message: str
) -> None:
    """Both shapes register silently with pluggy and then drop every batch: refused when built."""
    add_entry_points(FakeEntryPoint("quiet", f"{__name__}:{sink_class}", FakeDist("quiet-sink", "1")))
    with pytest.raises(SinkLoadError, match=rf"'quiet' does not follow the hook contract: {message}"):
        EvaluationTracker(tmp_path, sinks=["quiet"])


def test_registration_does_not_read_attributes_named_like_hooks(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    add_entry_points(
        FakeEntryPoint("client", f"{__name__}:ConnectedClientSink", FakeDist("client-sink", "1"))
    )
    EvaluationTracker(tmp_path, sinks=["client"]).close()


def test_a_failing_sink_still_reports_the_outputs_its_exception_carries(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    add_entry_points(FakeEntryPoint("halfway", f"{__name__}:HalfwaySink", FakeDist("halfway-sink", "1")))
    tracker = EvaluationTracker(tmp_path, sinks=["halfway", "recorder"], run_id="half")
    report = tracker.save()
    assert report.failed == ["halfway"]
    assert report["halfway"].outputs == ["remote://half/results.json"]
    assert report["halfway"].errors == ["evalsink_results_saved: PartialUploadError: upload stopped half way"]
    assert report["recorder"].outputs == ["recorder://half"]


def test_hint_for_a_first_party_sink_whose_extra_is_not_released_yet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Until plugins/wandb exists, the core declares no [wandb] extra: the hint must not send the
    user to a pip line that cannot work, and must turn into that line once the extra exists."""
    import evalsink.discovery

    monkeypatch.setattr(evalsink.discovery, "_declared_extras", lambda: {"local", "all", "testing"})
    assert (
        install_hint("wandb") == "the 'wandb' sink is planned but not released with this evalsink version yet"
    )
    assert install_hint("local") == 'pip install "evalsink[local]"'
    monkeypatch.setattr(evalsink.discovery, "_declared_extras", lambda: {"local", "wandb"})
    assert install_hint("wandb") == 'pip install "evalsink[wandb]"'


def test_declared_extras_read_the_installed_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    import evalsink.discovery

    monkeypatch.undo()  # the real function, reading the installed evalsink's metadata
    extras = evalsink.discovery._declared_extras()
    assert {"local", "hub", "tensorboard", "trackio", "wandb", "all", "testing"} <= extras


def test_hint_from_a_source_tree_names_the_plugin_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """evalsink installed from a clone: "evalsink[hub]" names a distribution no index has, so the
    hint leads with the folder to install, and still shows the released command."""
    monkeypatch.undo()
    plugin = discovery._source_plugin("hub")
    repository = Path(__file__).resolve().parents[2]
    assert plugin == repository / "plugins" / "hub"  # this clone, recorded by pip in direct_url.json
    assert install_hint("hub") == (
        f'pip install {plugin} (from this source tree; from a package index: pip install "evalsink[hub]")'
    )
    assert discovery._source_plugin("no-such-sink") is None  # no folder: the released command only


def test_hint_of_a_release_install_is_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.undo()

    class Release:
        def read_text(self, name: str) -> str | None:
            return None  # installed from a wheel off an index: no direct_url.json

    class FromUrl:
        def read_text(self, name: str) -> str | None:
            return '{"url": "https://example.org/evalsink-1.0.tar.gz", "archive_info": {}}'

    for dist in (Release(), FromUrl()):
        monkeypatch.setattr(importlib.metadata, "distribution", lambda name, dist=dist: dist)
        assert discovery._source_plugin("hub") is None
        assert install_hint("hub") == 'pip install "evalsink[hub]"'


def test_a_misspelt_sink_name_gets_a_suggestion() -> None:
    nothing = Installed(sinks={}, conflicts={})
    with pytest.raises(
        SinkNotInstalledError,
        match=r"sink 'tensorbord' is not installed: .* \(did you mean 'tensorboard'\?\)",
    ):
        find_sink("tensorbord", nothing)
    with pytest.raises(SinkNotInstalledError) as info:
        find_sink("zzz", nothing)
    assert "did you mean" not in str(info.value)


class WarningSink(Sink):
    """Reports from a hook, and from a thread of its own, things that are not failures."""

    def __init__(self, config: Any, settings: Any) -> None:  # does not call super().__init__
        self.config, self.settings = config, settings

    @hookimpl
    def evalsink_details_batch(self, run: Any, batch: Any) -> None:
        import threading

        worker = threading.Thread(target=self.warn, args=(f"batch of {len(batch)} kept in another form",))
        worker.start()
        worker.join()

    @hookimpl
    def evalsink_results_saved(self, run: Any, results: Any) -> list[str]:
        self.warn("a value was shortened")
        return [f"warned://{run.run_id}"]


def test_a_sink_warning_reaches_the_report_and_the_log(
    add_entry_points: Callable[..., None], tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    add_entry_points(FakeEntryPoint("warner", f"{__name__}:WarningSink", FakeDist("warner-sink", "1")))
    tracker = EvaluationTracker(tmp_path, sinks=["warner", "recorder"], run_id="warned")
    tracker.details_logger.log("custom|t|0", {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
    report = tracker.save()
    assert report.ok  # a warning is not a failure
    assert report["warner"].warnings == ["batch of 1 kept in another form", "a value was shortened"]
    assert report["recorder"].warnings == []
    assert "warner: batch of 1 kept in another form" in report.warnings
    assert "warner: a value was shortened" in report.warnings
    assert "sink 'warner': a value was shortened" in caplog.text


def test_two_sinks_sharing_an_environment_prefix_are_refused_when_enabled(
    add_entry_points: Callable[..., None], tmp_path: Path
) -> None:
    """``recorder-remote`` and ``recorder_remote`` both read ``EVALSINK_RECORDER_REMOTE__*``: each
    would get options meant for the other."""
    add_entry_points(FakeEntryPoint("recorder_remote", "other_pkg:Remote", FakeDist("other-sinks", "2.3.4")))
    for name in ("recorder-remote", "recorder_remote"):
        with pytest.raises(DuplicateSinkError) as info:
            find_sink(name)
        message = str(info.value)
        assert "EVALSINK_RECORDER_REMOTE__" in message
        assert "'recorder-remote' from evalsink-recorder 0.0.1" in message
        assert "'recorder_remote' from other-sinks 2.3.4" in message
    with pytest.raises(DuplicateSinkError):
        EvaluationTracker(tmp_path / "out", sinks=["local", "recorder_remote"])
    assert not (tmp_path / "out").exists()
    assert find_sink("recorder").name == "recorder"  # the others are untouched
