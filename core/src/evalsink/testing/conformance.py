"""The behaviour every sink owes its users, as a test class a sink's own suite subclasses.

A sink passes when it is found through its entry point, refuses options it does not know, gets
through an ordinary run, a failed run, a saved run that fails afterwards, and a run full of odd
values and many batches without an error, and can be finished twice. What a sink wrote lives in
its backend, which the kit cannot read: :meth:`SinkConformance.check_saved` and
:meth:`SinkConformance.check_failed` are where a sink's suite reads its own output back.

Usage::

    from evalsink.testing import SinkConformance

    class TestMySinkConformance(SinkConformance):
        @pytest.fixture
        def sink_name(self) -> str:
            return "mysink"

        @pytest.fixture
        def sink_config(self, tmp_path) -> dict:
            return {"folder": str(tmp_path / "mysink")}

        def check_saved(self, saved):
            ...  # read the backend, compare with saved.evaluation
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import pytest

from evalsink.config import env_prefix
from evalsink.discovery import discover
from evalsink.errors import SinkConfigError, SinkFailedError
from evalsink.report import SaveReport, SinkOutcome
from evalsink.run import RunStatus
from evalsink.sink import Sink, SinkConfig
from evalsink.testing.corpus import Evaluation, odd_evaluation, plain_evaluation
from evalsink.tracker import EvaluationTracker

MODEL_NAME = "evalsink-conformance/tiny-model"
UNKNOWN_OPTION = "no_such_option_in_any_sink"


FAULT_HOOKS = ("evalsink_run_started", "evalsink_details_batch", "evalsink_results_saved")


class InjectedFaultError(RuntimeError):
    """What the conformance kit raises from a sink's hook to fail it on purpose."""


class EvaluationCrashedError(RuntimeError):
    """The exception the kit raises inside a run to fail it."""


@dataclass
class SavedRun:
    """A run the kit logged and saved: what went in, and what the tracker reported."""

    sink_name: str
    tracker: EvaluationTracker
    report: SaveReport
    evaluation: Evaluation
    output_dir: Path
    status: RunStatus = RunStatus.OK
    """How the run finished: ``FAILED`` when it failed after it was saved (another, required, sink
    failed), in :meth:`SinkConformance.test_a_run_that_fails_after_it_was_saved_keeps_its_data`.
    What was saved must still be there; a backend that records the run's state shows this one."""

    @property
    def outcome(self) -> SinkOutcome:
        return self.report[self.sink_name]


@dataclass
class FailedRun:
    """A run whose evaluation raised inside the tracker's ``with`` block (never saved)."""

    sink_name: str
    tracker: EvaluationTracker
    evaluation: Evaluation
    output_dir: Path
    error: BaseException

    @property
    def outcome(self) -> SinkOutcome:
        return self.tracker.sink_outcomes[self.sink_name]


def log_evaluation(tracker: EvaluationTracker, evaluation: Evaluation) -> None:
    """Log every sample as details and metrics, and each task's version, as lighteval does."""
    tracker.general_config_logger.log_model_info(model_name=MODEL_NAME)
    for sample in evaluation.samples:
        tracker.details_logger.log(sample.task, sample.doc, sample.model_response, sample.metrics)
        tracker.metrics_logger.log(sample.task, sample.metrics)
    for task in evaluation.tasks:
        tracker.versions_logger.log(task, 0)


def _call_hook(sink: Any, hook: str, **arguments: Any) -> None:
    """Call a sink's hook directly, with the subset of arguments it declares (as pluggy does)."""
    method: Callable[..., Any] | None = getattr(sink, hook, None)
    if method is None:
        return
    accepted = inspect.signature(method).parameters
    method(**{name: value for name, value in arguments.items() if name in accepted})


def _assert_ok(outcome: SinkOutcome, what: str) -> None:
    assert outcome.ok, f"the {outcome.name!r} sink failed {what}: {'; '.join(outcome.errors)}"


@pytest.mark.evalsink_conformance
class SinkConformance:
    """Subclass in a sink's test suite; provide the ``sink_name`` and ``sink_config`` fixtures.

    Every run also enables the local sink (the default one, installed with evalsink), so a sink
    that publishes the local files is tested as users run it.
    """

    flush_every: ClassVar[int] = 64
    """Samples per details batch in the kit's runs: small, so the odd run arrives in many batches."""
    hook_timeout: ClassVar[float] = 120.0
    """The sink's ``hook_timeout`` in the kit's runs (unless its ``sink_config`` sets one): a hook
    that never returns fails the test in minutes, not after the default half hour."""

    # -- what a sink's suite provides -------------------------------------------------------
    @pytest.fixture
    def sink_name(self) -> str:
        pytest.fail(f"{type(self).__name__} must define a `sink_name` fixture returning the entry-point name")

    @pytest.fixture
    def sink_config(self) -> dict[str, Any]:
        """The sink's config for the kit's runs (e.g. a project, a folder in tmp_path)."""
        return {}

    @pytest.fixture
    def tracker_options(self) -> dict[str, Any]:
        """Extra EvaluationTracker arguments (e.g. ``hub_results_org``)."""
        return {}

    def check_saved(self, saved: SavedRun) -> None:
        """Read the sink's output back and compare it with ``saved.evaluation``. Override this.

        Also called for a saved run that then failed (``saved.status`` is ``FAILED``): the data must
        be there all the same; a check of the run's state (an exit code) follows ``saved.status``.
        """

    def check_failed(self, failed: FailedRun) -> None:
        """Check the backend marks the run failed (an exit code, a status). Override this."""

    # -- helpers ----------------------------------------------------------------------------
    @pytest.fixture(autouse=True)
    def _isolated_env(self, evalsink_env: Path) -> None:
        """The kit's runs see no EVALSINK_* setting of the developer's shell."""

    @pytest.fixture
    def conformance_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "conformance-output"

    @pytest.fixture
    def make_tracker(
        self,
        sink_name: str,
        sink_config: dict[str, Any],
        tracker_options: dict[str, Any],
        conformance_dir: Path,
    ) -> Iterator[Callable[..., EvaluationTracker]]:
        made: list[EvaluationTracker] = []

        def make(**overrides: Any) -> EvaluationTracker:
            sinks = ["local"] if sink_name == "local" else ["local", sink_name]
            options: dict[str, Any] = {
                "output_dir": conformance_dir,
                "sinks": sinks,
                "sink_config": {sink_name: {"hook_timeout": self.hook_timeout, **sink_config}},
                "flush_every": self.flush_every,
                **tracker_options,
                **overrides,
            }
            tracker = EvaluationTracker(**options)
            made.append(tracker)
            return tracker

        yield make
        for tracker in made:
            tracker.close()  # a no-op for a finished run; finishes one a failed test left open

    @staticmethod
    def _save(make_tracker: Callable[..., EvaluationTracker], name: str, evaluation: Evaluation) -> SavedRun:
        tracker = make_tracker()
        log_evaluation(tracker, evaluation)
        report = tracker.save()
        saved = SavedRun(name, tracker, report, evaluation, Path(tracker.settings.output_dir))
        _assert_ok(saved.outcome, "a run")
        _assert_ok(report["local"], f"a run beside the {name!r} sink")
        return saved

    # -- the contract -----------------------------------------------------------------------
    def test_found_through_its_entry_point(self, sink_name: str, sink_config: dict[str, Any]) -> None:
        installed = discover()
        assert sink_name in installed.sinks, (
            f"no 'evalsink.sinks' entry point named {sink_name!r} (installed: {installed.names()})"
        )
        assert sink_name not in installed.conflicts, f"{sink_name!r} is claimed by several distributions"
        entry = installed.sinks[sink_name]
        sink_class = entry.load()
        assert issubclass(sink_class, Sink), f"{entry.value} is not an evalsink.Sink subclass"
        config_model = sink_class.config_model
        assert issubclass(config_model, SinkConfig), "config_model must subclass evalsink.SinkConfig"
        config_model.model_validate(sink_config)
        assert "properties" in config_model.model_json_schema()

    def test_constructs_from_its_config(
        self, make_tracker: Callable[..., EvaluationTracker], sink_name: str
    ) -> None:
        tracker = make_tracker()
        name = sink_name
        loaded = discover().sinks[name].load()
        assert isinstance(tracker.sink(name), loaded)
        assert isinstance(tracker.sink(name).config, loaded.config_model)

    def test_unknown_option_is_rejected(
        self,
        make_tracker: Callable[..., EvaluationTracker],
        sink_name: str,
        sink_config: dict[str, Any],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        with pytest.raises(SinkConfigError, match=UNKNOWN_OPTION):
            make_tracker(sink_config={sink_name: {**sink_config, UNKNOWN_OPTION: 1}})
        env_name = f"{env_prefix(sink_name)}{UNKNOWN_OPTION.upper()}"
        monkeypatch.setenv(env_name, "1")
        with pytest.raises(SinkConfigError, match=env_name):
            make_tracker()

    def test_full_run(self, make_tracker: Callable[..., EvaluationTracker], sink_name: str) -> None:
        saved = self._save(make_tracker, sink_name, plain_evaluation())
        assert saved.tracker.run.date_id is not None
        self.check_saved(saved)

    def test_odd_values_and_many_batches(
        self, make_tracker: Callable[..., EvaluationTracker], sink_name: str
    ) -> None:
        evaluation = odd_evaluation()
        assert len(evaluation.samples) > 10 * self.flush_every
        saved = self._save(make_tracker, sink_name, evaluation)
        self.check_saved(saved)

    def test_empty_run(self, make_tracker: Callable[..., EvaluationTracker], sink_name: str) -> None:
        self._save(make_tracker, sink_name, Evaluation())

    def test_failed_run(self, make_tracker: Callable[..., EvaluationTracker], sink_name: str) -> None:
        tracker = make_tracker()
        evaluation = plain_evaluation()

        def crashing_evaluation() -> None:
            with tracker:
                log_evaluation(tracker, evaluation)
                raise EvaluationCrashedError("the evaluation crashed (raised by the conformance kit)")

        with pytest.raises(EvaluationCrashedError) as raised:
            crashing_evaluation()
        failed = FailedRun(sink_name, tracker, evaluation, Path(tracker.settings.output_dir), raised.value)
        _assert_ok(failed.outcome, "while a failed run was finished")
        assert tracker.report is None
        self.check_failed(failed)

    def test_finishing_twice_is_harmless(
        self, make_tracker: Callable[..., EvaluationTracker], sink_name: str
    ) -> None:
        saved = self._save(make_tracker, sink_name, plain_evaluation(samples_per_task=2))
        sink = saved.tracker.sink(saved.sink_name)
        for status in (RunStatus.OK, RunStatus.FAILED):
            _call_hook(sink, "evalsink_run_finished", run=saved.tracker.run, status=status, error=None)
        saved.tracker.close()
        _assert_ok(saved.tracker.sink_outcomes[saved.sink_name], "when finished again")

    def test_a_run_that_fails_after_it_was_saved_keeps_its_data(
        self, make_tracker: Callable[..., EvaluationTracker], sink_name: str
    ) -> None:
        """Saved, then finished ``FAILED``: what a required sink failing after this one saved does
        (``save()`` raises ``SinkFailedError`` inside the ``with`` block). The run's data is whole
        and published already, so ``run_finished(FAILED)`` may mark the run failed but must not
        delete or hide what ``results_saved`` wrote: ``check_saved`` still reads it all back."""
        tracker = make_tracker()
        evaluation = plain_evaluation()
        reports: list[SaveReport] = []

        def run_failing_after_save() -> None:
            with tracker:
                log_evaluation(tracker, evaluation)
                reports.append(tracker.save())
                raise SinkFailedError(
                    "required sink 'other' failed: raised by the conformance kit after the run was saved"
                )

        with pytest.raises(SinkFailedError):
            run_failing_after_save()
        [report] = reports
        saved = SavedRun(
            sink_name, tracker, report, evaluation, Path(tracker.settings.output_dir), RunStatus.FAILED
        )
        _assert_ok(saved.outcome, "while a saved run was finished as failed")
        _assert_ok(report["local"], f"a saved run finished as failed, beside the {sink_name!r} sink")
        self.check_saved(saved)

    @pytest.mark.parametrize("hook", FAULT_HOOKS)
    def test_a_fault_costs_the_other_sinks_nothing_and_the_run_can_be_pushed_again(
        self,
        make_tracker: Callable[..., EvaluationTracker],
        sink_name: str,
        sink_config: dict[str, Any],
        tracker_options: dict[str, Any],
        hook: str,
    ) -> None:
        """An exception raised from this sink's ``hook`` (injected): the local results are whole,
        the report names the sink, the hook and the error, and ``evalsink push`` re-sends the run."""
        if sink_name == "local":
            pytest.skip(
                "the local sink is the one the others are checked against; its faults: evalsink recover"
            )
        from evalsink.replay import replay_run, saved_runs

        sink_class = discover().sinks[sink_name].load()
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(
                sink_class, hook, _failing_hook(hook, getattr(sink_class, hook, None)), raising=False
            )
            tracker = make_tracker()
            log_evaluation(tracker, plain_evaluation())
            report = tracker.save()
        outcome = report[sink_name]
        assert not outcome.ok, f"the fault injected into {hook} did not fail the {sink_name!r} sink"
        assert outcome.failed_hooks[0] == hook
        assert f"{InjectedFaultError.__name__}: fault injected into {hook}" in outcome.errors[0]
        _assert_ok(report["local"], f"beside a {sink_name!r} sink failing in {hook}")
        [saved] = saved_runs(tracker.settings.output_dir)
        assert saved.date_id == report.date_id
        again = replay_run(
            saved, [sink_name], sink_config={sink_name: dict(sink_config)}, tracker_options=tracker_options
        )
        _assert_ok(again[sink_name], "when the failed run was pushed again (evalsink push)")


def _failing_hook(hook: str, original: Callable[..., Any] | None) -> Callable[..., Any]:
    """A hook implementation that raises; it keeps the original's hookimpl marker (or gets one)."""
    from evalsink.hookspecs import hookimpl

    def failing(self: Any) -> None:
        raise InjectedFaultError(f"fault injected into {hook} by the conformance kit")

    failing.__name__ = hook
    if original is None:
        return hookimpl(failing)
    failing.__dict__.update(original.__dict__)  # pluggy's hookimpl marker
    return failing
