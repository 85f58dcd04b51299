"""SinkManager's isolation beyond exceptions: what one sink is handed cannot change what the next
sink gets, hooks that would never run are refused, what a hook returns and what a sink warns
about late are never dropped without a word, and the conformance kit sees a saved run fail.

The sinks are defined here and made visible to discovery through fake entry points, as a user's
own sink package would be.
"""

from __future__ import annotations

import functools
import importlib.metadata
import logging
import textwrap
import threading
import warnings
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, ClassVar

import orjson
import pytest
from core_helpers import Calls, log_samples, run_pytest

from evalsink import EvaluationTracker, Sink, discovery, hookimpl
from evalsink.errors import SinkLoadError
from evalsink.manager import SinkManager
from evalsink.models import EvaluationResults
from evalsink.run import DetailsBatch

TASK = "custom|t|0"
MakeTracker = Callable[..., EvaluationTracker]


class _EntryPoint:
    """What discovery reads from an entry point (name, value, dist, load()), for a class here."""

    group = discovery.GROUP
    dist = None

    def __init__(self, name: str, class_name: str) -> None:
        self.name = name
        self.value = f"{__name__}:{class_name}"

    def load(self) -> Any:
        return importlib.metadata.EntryPoint(name=self.name, value=self.value, group=self.group).load()


@pytest.fixture
def sinks_here(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """Install sinks of this module under the given names: ``sinks_here(name="ClassName")``."""

    def install(**classes: str) -> None:
        real = list(importlib.metadata.entry_points(group=discovery.GROUP))
        fakes = [_EntryPoint(name, class_name) for name, class_name in classes.items()]
        monkeypatch.setattr(discovery, "entry_points", lambda **kwargs: [*real, *fakes])

    return install


def results_file(output: Path) -> dict[str, Any]:
    [path] = output.glob("results/**/results_*.json")
    loaded: dict[str, Any] = orjson.loads(path.read_bytes())
    return loaded


# -- a sink's edits stay its own ---------------------------------------------------------------


class EditingSink(Sink):
    """A local sink called before the others that edits every batch it is handed (in place, and
    quietly: an edit that raises is swallowed, so the sink itself never fails)."""

    remote: ClassVar[bool] = False
    refused: ClassVar[list[str]] = []

    @hookimpl
    def evalsink_details_batch(self, batch: Any) -> None:
        for name, edit in [
            ("task_names[0]", lambda: batch.task_names.__setitem__(0, "EDITED|task|0")),
            ("task_names.append", lambda: batch.task_names.append("EDITED|task|0")),
            ("first_index", lambda: setattr(batch, "first_index", 99999)),
            ("lines()[0]", lambda: batch.lines().__setitem__(0, b"{}")),
        ]:
            try:
                edit()
            except (TypeError, AttributeError):
                EditingSink.refused.append(name)


class ResultsEditingSink(Sink):
    """A local sink called before the others that empties the results it is handed."""

    remote: ClassVar[bool] = False

    @hookimpl
    def evalsink_results_saved(self, results: EvaluationResults) -> None:
        results.results.clear()
        results.versions.clear()
        results.config_general.model_name = "edited/model"
        results.summary_tasks.clear()


@pytest.fixture(autouse=True)
def _reset_editing_sink() -> Iterator[None]:
    EditingSink.refused.clear()
    yield
    EditingSink.refused.clear()


def test_a_sink_editing_the_results_costs_the_sinks_after_it_nothing(
    make_tracker: MakeTracker, sinks_here: Callable[..., None], calls: Calls, tmp_path: Path
) -> None:
    """The editing sink runs first (local, enabled first); the local sink used to write a results
    file with ``"results": {}`` while the report said every sink was fine."""
    sinks_here(editor="ResultsEditingSink")
    tracker = make_tracker(
        sinks=["editor", "local", "recorder-remote"], sink_config={"recorder-remote": {"label": "remote"}}
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_samples(tracker, TASK, 4)
    tracker.versions_logger.log(TASK, 3)
    report = tracker.save()

    assert report.ok, report
    written = results_file(tmp_path / "out")
    assert set(written["results"]) == {TASK, "all"}
    assert written["versions"] == {TASK: 3}
    assert written["config_general"]["model_name"] == "org/model"
    assert set(written["summary_tasks"]) == {TASK}
    assert calls.of("results_saved", "remote")[0]["tasks"] == ["all", TASK]


class KeepingSink(Sink):
    """Keeps the results object it was handed."""

    def __init__(self) -> None:
        self.warnings: list[str] = []
        self.seen: list[EvaluationResults] = []

    @hookimpl
    def evalsink_results_saved(self, results: EvaluationResults) -> None:
        self.seen.append(results)


def test_each_sink_gets_its_own_deep_copy_of_the_results_in_the_same_key_order(tmp_path: Path) -> None:
    """Key order (kept in a private attribute), unknown keys and nested values all survive the copy;
    the caller's model is left as it was."""
    given = {
        "results": {TASK: {"acc": 0.5, "acc_stderr": 0.1}},
        "config_tasks": {TASK: {"version": 1, "name": "t", "extra": {"nested": [1, 2]}}},
        "summary_tasks": {TASK: {"truncated": 1, "hashes": {"hash_examples": "x"}, "padded": 2}},
        "config_general": {"model_name": "org/m", "unknown_key": {"a": [1]}},
        "versions": {TASK: 1},
    }
    original = EvaluationResults.model_validate(given)
    before = original.model_dump_json()
    manager = SinkManager()
    first, second = KeepingSink(), KeepingSink()
    manager.register("first", first, required=False)
    manager.register("second", second, required=False)
    manager.results_saved(run=None, results=original)  # type: ignore[arg-type]

    [one], [two] = first.seen, second.seen
    assert one is not two
    assert original is not one
    assert original is two  # the last sink: nothing comes after it, and the caller is done with it
    for copy in (one, two):
        assert copy.model_dump_json() == before  # same keys, same order
        assert copy.config_tasks[TASK]._key_order == ("version", "name", "extra")
    one.config_tasks[TASK].__pydantic_extra__["extra"]["nested"].append(3)  # type: ignore[index]
    one.config_general.__pydantic_extra__["unknown_key"]["a"].clear()  # type: ignore[index]
    assert two.model_dump_json() == before


def test_a_sink_cannot_change_the_batch_the_next_sink_gets(
    make_tracker: MakeTracker, sinks_here: Callable[..., None], calls: Calls
) -> None:
    sinks_here(editor="EditingSink")
    tracker = make_tracker(sinks=["editor", "recorder"], flush_every=3)
    log_samples(tracker, TASK, 7)
    report = tracker.save()

    assert report.ok, report
    batches = calls.of("details_batch")
    assert [(b["size"], b["first_index"], b["tasks"]) for b in batches] == [
        (3, 0, [TASK]),
        (3, 3, [TASK]),
        (1, 6, [TASK]),
    ]
    assert calls.queries() == [f"{TASK} q{i}" for i in range(7)]
    assert set(EditingSink.refused) == {"task_names[0]", "task_names.append", "first_index", "lines()[0]"}


def test_a_batch_is_read_only_whatever_it_was_built_from() -> None:
    """The spool builds batches from lists (a resumed run's replay): they are not shared."""
    names, lines = ["a", "b"], [b'{"task_name": "a"}', b'{"task_name": "b"}']
    batch = DetailsBatch(names, lines, first_index=4)
    names[0], lines[0] = "changed", b"{}"
    assert batch.task_names == ("a", "b")
    assert list(batch.lines()) == [b'{"task_name": "a"}', b'{"task_name": "b"}']
    assert (batch.first_index, len(batch), batch.tasks) == (4, 2, ["a", "b"])
    assert [record["task_name"] for record in batch.records()] == ["a", "b"]
    with pytest.raises(AttributeError):
        batch.first_index = 0  # type: ignore[misc]
    with pytest.raises(AttributeError):
        batch.task_names = ("x",)  # type: ignore[misc]


# -- hooks that would never run ----------------------------------------------------------------


class AsyncHookSink(Sink):
    @hookimpl
    async def evalsink_run_started(self, run: Any) -> None:
        raise AssertionError("never registered")


class GeneratorHookSink(Sink):
    @hookimpl
    def evalsink_results_saved(self, run: Any) -> Iterator[str]:
        yield "/never/written"


class AsyncGeneratorHookSink(Sink):
    @hookimpl
    async def evalsink_details_batch(self, batch: Any) -> Any:
        yield batch


@pytest.mark.parametrize(
    ("sink_class", "message"),
    [
        ("AsyncHookSink", r"evalsink_run_started is an `async def`"),
        ("GeneratorHookSink", r"evalsink_results_saved is a generator function \(it contains `yield`\)"),
        ("AsyncGeneratorHookSink", r"evalsink_details_batch is an async generator"),
    ],
)
def test_a_hook_whose_body_would_never_run_is_refused(
    sinks_here: Callable[..., None], tmp_path: Path, sink_class: str, message: str
) -> None:
    """pluggy registers them, calling one only makes a coroutine or a generator, and the report
    said the sink was fine while its code never ran."""
    sinks_here(lazy=sink_class)
    with pytest.raises(SinkLoadError, match=rf"sink 'lazy' does not follow the hook contract: {message}"):
        EvaluationTracker(tmp_path, sinks=["lazy"])


def _plain(function: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., Any]:
    """A decorator that hides an ``async def`` behind a plain function (as some retry helpers do)."""

    @functools.wraps(function)
    def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    del call.__wrapped__  # nothing left for inspect to unwrap
    return call


class HiddenAsyncSink(Sink):
    @hookimpl
    @_plain
    async def evalsink_results_saved(self) -> None:  # no argument: pluggy sees (*args, **kwargs)
        raise AssertionError("never awaited")


def test_a_hook_that_returns_a_coroutine_fails_its_sink(
    make_tracker: MakeTracker, sinks_here: Callable[..., None]
) -> None:
    sinks_here(hidden="HiddenAsyncSink")
    tracker = make_tracker(sinks=["hidden", "recorder"])
    log_samples(tracker, TASK, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine ... was never awaited"
        report = tracker.save()
    assert report.failed == ["hidden"]
    assert report["hidden"].errors == [
        "evalsink_results_saved: TypeError: the hook returned an awaitable: hooks are not awaited, "
        "so its body never ran"
    ]
    assert report["recorder"].ok


# -- what results_saved returns ----------------------------------------------------------------


class ReturningSink(Sink):
    """Returns from results_saved whatever the test put in ``returns``."""

    returns: ClassVar[Any] = None

    @hookimpl
    def evalsink_results_saved(self) -> Any:
        returned = ReturningSink.returns
        return returned() if callable(returned) else returned


@pytest.mark.parametrize(
    ("returned", "outputs", "described"),
    [
        ({"results": "/x"}, [], "dict {'results': '/x'}"),
        (42, [], "int 42"),
        (b"/bytes/path", [], "bytes b'/bytes/path'"),
        (lambda: (path for path in ["/gen"]), [], "generator <generator object"),
        (["/a", 7, Path("/b")], ["/a", "/b"], "a list holding int 7"),
    ],
    ids=["dict", "int", "bytes", "generator", "list-with-an-int"],
)
def test_results_saved_returning_something_else_than_paths_is_a_warning(
    make_tracker: MakeTracker,
    sinks_here: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    returned: Any,
    outputs: list[str],
    described: str,
) -> None:
    """It used to vanish: no output, no warning. The sink did its work, so it is not a failure."""
    monkeypatch.setattr(ReturningSink, "returns", returned)
    sinks_here(returner="ReturningSink")
    tracker = make_tracker(sinks=["returner"])
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        report = tracker.save()

    outcome = report["returner"]
    assert outcome.ok
    assert outcome.outputs == outputs
    [warning] = outcome.warnings
    assert warning.startswith(f"evalsink_results_saved returned {described}")
    assert "left out of the outputs" in warning
    assert f"returner: {warning}" in report.warnings
    assert warning in caplog.text


@pytest.mark.parametrize(
    ("returned", "outputs"), [(None, []), ("/one", ["/one"]), (("/a", Path("/b")), ["/a", "/b"])]
)
def test_results_saved_returning_paths_is_quiet(
    make_tracker: MakeTracker,
    sinks_here: Callable[..., None],
    monkeypatch: pytest.MonkeyPatch,
    returned: Any,
    outputs: list[str],
) -> None:
    monkeypatch.setattr(ReturningSink, "returns", returned)
    sinks_here(returner="ReturningSink")
    report = make_tracker(sinks=["returner"]).save()
    assert (report["returner"].outputs, report["returner"].warnings) == (outputs, [])


# -- warnings given after the run finished -----------------------------------------------------


class LateWarningSink(Sink):
    """Starts an upload thread in results_saved that warns once it is let go (after the run)."""

    go: ClassVar[threading.Event] = threading.Event()
    threads: ClassVar[list[threading.Thread]] = []

    @hookimpl
    def evalsink_results_saved(self) -> None:
        def upload() -> None:
            LateWarningSink.go.wait(10)
            self.warn("the upload was retried twice")

        thread = threading.Thread(target=upload, daemon=True)
        thread.start()
        LateWarningSink.threads.append(thread)


def test_a_warning_from_a_sink_thread_after_the_run_finished_is_logged_and_reported(
    make_tracker: MakeTracker, sinks_here: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """It used to stay in the sink's list, which nothing read any more: neither logged nor reported."""
    LateWarningSink.go.clear()
    LateWarningSink.threads.clear()
    sinks_here(late="LateWarningSink")
    tracker = make_tracker(sinks=["late"])
    with caplog.at_level(logging.WARNING, logger="evalsink"):
        report = tracker.save()  # outside a with block: the run is finished too
        assert report["late"].warnings == []
        LateWarningSink.go.set()
        [thread] = LateWarningSink.threads
        thread.join(10)
    assert report["late"].warnings == ["the upload was retried twice"]
    assert "sink 'late' (after the run finished): the upload was retried twice" in caplog.text


def test_a_warning_given_after_a_sinks_last_hook_call_reaches_the_report(
    make_tracker: MakeTracker, sinks_here: Callable[..., None], caplog: pytest.LogCaptureFixture
) -> None:
    """Warnings were collected after each hook call only: the sink has no run_finished hook, so
    one given after its results_saved returned was never collected."""
    LateWarningSink.go.clear()
    LateWarningSink.threads.clear()
    sinks_here(late="LateWarningSink")
    with caplog.at_level(logging.WARNING, logger="evalsink"), make_tracker(sinks=["late"]) as tracker:
        report = tracker.save()
        LateWarningSink.go.set()
        [thread] = LateWarningSink.threads
        thread.join(10)
    assert report["late"].warnings == ["the upload was retried twice"]
    assert "sink 'late': the upload was retried twice" in caplog.text


# -- the conformance kit -----------------------------------------------------------------------

KIT_SINKS = '''
import importlib.metadata
from pathlib import Path

import pytest

from evalsink import RunStatus, Sink, SinkConfig, discovery, hookimpl
from evalsink.testing import SavedRun, SinkConformance


class FolderConfig(SinkConfig):
    folder: str


class PublishingSink(Sink):
    """Publishes a file per run at results_saved."""

    config_model = FolderConfig

    @hookimpl
    def evalsink_results_saved(self, run):
        path = Path(self.config.folder) / f"{run.run_id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("{}")
        return [str(path)]


class RetractingSink(PublishingSink):
    """Deletes what it published when the run finishes FAILED, even a run it saved."""

    @hookimpl
    def evalsink_run_finished(self, run, status):
        if status is RunStatus.FAILED:
            for path in Path(self.config.folder).glob("*.json"):
                path.unlink()


class EntryPoint:
    group = discovery.GROUP
    dist = None

    def __init__(self, name, class_name):
        self.name, self.value = name, f"{__name__}:{class_name}"

    def load(self):
        return importlib.metadata.EntryPoint(name=self.name, value=self.value, group=self.group).load()


@pytest.fixture(autouse=True)
def _sinks_installed(monkeypatch):
    real = list(importlib.metadata.entry_points(group=discovery.GROUP))
    fakes = [EntryPoint("publishing", "PublishingSink"), EntryPoint("retracting", "RetractingSink")]
    monkeypatch.setattr(discovery, "entry_points", lambda **kwargs: [*real, *fakes])


class Kit(SinkConformance):
    @pytest.fixture
    def sink_config(self, tmp_path):
        return {"folder": str(tmp_path / "published")}

    def check_saved(self, saved: SavedRun) -> None:
        assert [Path(path).exists() for path in saved.outcome.outputs] == [True]
'''


def run_kit_test(tmp_path: Path, test: str) -> dict[str, str]:
    """Run one kit test for both sinks in a child pytest; class name -> passed/failed/error."""
    body = KIT_SINKS + "".join(
        textwrap.dedent(
            f"""

            class Test{name.capitalize()}(Kit):
                @pytest.fixture
                def sink_name(self):
                    return {name!r}
            """
        )
        for name in ("publishing", "retracting")
    )
    (tmp_path / "test_kit_sinks.py").write_text(body, encoding="utf-8")
    return {kind: outcome for kind, name, outcome in run_pytest(tmp_path, "-k", test) if name == test}


def test_the_kit_fails_a_sink_that_deletes_a_saved_run_when_it_then_fails(tmp_path: Path) -> None:
    """A required sink failing after this one saved finishes the run FAILED: the data this sink
    published must stay (the local files, and a re-push, say the run was saved)."""
    outcomes = run_kit_test(tmp_path, "test_a_run_that_fails_after_it_was_saved_keeps_its_data")
    assert outcomes == {"TestPublishing": "passed", "TestRetracting": "failure"}
