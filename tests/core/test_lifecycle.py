"""The run's lifecycle as sinks see it: hook order, batches, local-before-remote, isolation, required."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from core_helpers import Calls, log_samples

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError, SinkConfigError, SinkFailedError

TASK = "lighteval|arc:easy|0"
MakeTracker = Callable[..., EvaluationTracker]


def _queries(task: str, count: int, start: int = 0) -> list[str]:
    return [f"{task} q{i}" for i in range(start, start + count)]


def test_hooks_fire_in_order_with_batches_of_flush_every(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(flush_every=50, run_id="run-order")
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_samples(tracker, TASK, 120)
    report = tracker.save()
    assert calls.hooks() == [
        "run_started",
        "details_batch",
        "details_batch",
        "details_batch",
        "results_saved",
        "run_finished",
    ]
    batches = calls.of("details_batch")
    assert [(b["size"], b["first_index"]) for b in batches] == [(50, 0), (50, 50), (20, 100)]
    assert calls.queries() == _queries(TASK, 120)
    assert calls.of("run_started") == [{"run_id": "run-order", "model_name": "org/model"}]
    assert calls.of("results_saved")[0]["tasks"] == ["all", TASK]
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]
    assert report.ok
    assert report["recorder"].outputs == ["recorder://run-order"]


def test_run_started_fires_lazily_at_the_first_batch(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(flush_every=10)
    log_samples(tracker, TASK, 9)
    assert calls.all == []  # nothing flushed yet: the run has not started for the sinks
    log_samples(tracker, TASK, 1, start=9)
    assert calls.hooks() == ["run_started", "details_batch"]
    assert calls.of("details_batch")[0]["size"] == 10


def test_model_info_logged_before_the_start_reaches_run_started(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker()
    tracker.general_config_logger.log_model_info({"model_name": "org/late"})
    tracker.start()
    tracker.start()  # once only
    assert calls.of("run_started") == [{"run_id": tracker.run_id, "model_name": "org/late"}]


def test_save_without_samples_starts_saves_and_finishes(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    tracker.save()
    assert calls.hooks() == ["run_started", "results_saved", "run_finished"]


def test_a_tracker_closed_before_anything_happened_opens_no_run(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    make_tracker().close()
    assert calls.all == []  # a remote sink would otherwise create an empty run only to finish it
    buffered = make_tracker(flush_every=10)
    log_samples(buffered, TASK, 3)  # buffered, not flushed: still a run to deliver and finish
    buffered.close()
    assert calls.hooks() == ["run_started", "details_batch", "run_finished"]


def test_batches_mix_tasks_in_logging_order(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(flush_every=4)
    for i in range(3):
        log_samples(tracker, "b|x|0", 1, start=i)
        log_samples(tracker, "a|x|0", 1, start=i)
    tracker.save()
    batches = calls.of("details_batch")
    assert [b["tasks"] for b in batches] == [["b|x|0", "a|x|0"], ["b|x|0", "a|x|0"]]
    assert [b["size"] for b in batches] == [4, 2]
    assert calls.queries() == ["b|x|0 q0", "a|x|0 q0", "b|x|0 q1", "a|x|0 q1", "b|x|0 q2", "a|x|0 q2"]


def test_local_sinks_run_before_remote_ones(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(
        sinks=["recorder-remote", "recorder"],
        sink_config={"recorder-remote": {"label": "remote"}, "recorder": {"label": "local"}},
        flush_every=5,
    )
    log_samples(tracker, TASK, 7)
    tracker.save()
    sequence = [(label, hook) for label, hook, _ in calls.all]
    expected = []
    for hook in ["run_started", "details_batch", "details_batch", "results_saved", "run_finished"]:
        expected += [("local", hook), ("remote", hook)]
    assert sequence == expected


@pytest.mark.parametrize("fail_in", ["run_started", "details_batch", "results_saved", "run_finished"])
def test_a_failing_sink_costs_no_other_sink_anything(
    make_tracker: MakeTracker, calls: Calls, fail_in: str
) -> None:
    # both sinks are remote, so the flaky one, enabled first, is called first on every hook
    tracker = make_tracker(
        sinks=["flaky", "recorder-remote"], sink_config={"flaky": {"fail_in": fail_in}}, flush_every=10
    )
    tracker.general_config_logger.log_model_info(model_name="org/m")
    log_samples(tracker, TASK, 25)
    report = tracker.save()  # does not raise: the flaky sink is not required

    hooks = [
        "run_started",
        "details_batch",
        "details_batch",
        "details_batch",
        "results_saved",
        "run_finished",
    ]
    assert calls.hooks("recorder") == hooks
    assert calls.queries("recorder") == _queries(TASK, 25)
    assert calls.of("results_saved", "recorder")[0]["tasks"] == ["all", TASK]
    assert calls.of("run_finished", "recorder") == [{"status": "ok", "error": None}]
    first_flaky = next(i for i, (label, _, _) in enumerate(calls.all) if label == "flaky")
    first_recorder = next(i for i, (label, _, _) in enumerate(calls.all) if label == "recorder")
    assert first_flaky < first_recorder  # the failure happened before the recorder's turn

    flaky_hooks = calls.hooks("flaky")
    assert flaky_hooks[-1] == "run_finished"  # still told the run is over, to clean up
    failed_at = flaky_hooks.index(fail_in)
    assert flaky_hooks[failed_at + 1 :] in ([], ["run_finished"])  # no more data after failing

    assert not report.ok
    assert report.failed == ["flaky"]
    assert report["flaky"].failed_hooks == [f"evalsink_{fail_in}"]
    assert report["flaky"].errors == [f"evalsink_{fail_in}: RuntimeError: flaky sink failed on purpose"]
    assert report["recorder-remote"].ok
    assert "flaky sink failed on purpose" in str(report)


def test_a_required_sink_failing_makes_save_raise_after_the_others(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(
        sinks=["flaky", "recorder"],
        sink_config={"flaky": {"required": True, "fail_in": "results_saved"}},
    )
    log_samples(tracker, TASK, 3)
    with pytest.raises(
        SinkFailedError, match=r"required sink 'flaky' failed: .*flaky sink failed on purpose"
    ):
        tracker.save()
    assert calls.hooks("recorder") == ["run_started", "details_batch", "results_saved", "run_finished"]
    finished = calls.of("run_finished", "recorder")[0]
    assert finished["status"] == "failed"
    assert "required sink 'flaky' failed" in finished["error"]  # the error that fails save(), not None
    assert tracker.report is not None
    assert tracker.report.failed == ["flaky"]


def test_a_required_sink_that_failed_during_logging_fails_save(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(
        sinks=["recorder", "flaky"],
        sink_config={"flaky": {"required": True, "fail_in": "details_batch"}},
        flush_every=2,
    )
    log_samples(tracker, TASK, 5)  # the first batch already failed the flaky sink
    with pytest.raises(SinkFailedError, match="details_batch"):
        tracker.save()
    assert calls.queries() == _queries(TASK, 5)
    assert calls.hooks()[-2:] == ["results_saved", "run_finished"]
    assert calls.of("run_finished")[0]["status"] == "failed"


def test_a_sink_failing_at_construction_stops_the_tracker_early(tmp_path: Path, calls: Calls) -> None:
    with pytest.raises(SinkConfigError) as info:
        EvaluationTracker(tmp_path, sinks=["recorder", "flaky"], sink_config={"flaky": {"fail_in": "init"}})
    message = str(info.value)
    assert "sink 'flaky' could not start" in message
    assert "RuntimeError: flaky sink failed on purpose" in message
    assert calls.all == []


def test_with_block_exception_finishes_the_run_as_failed(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(flush_every=100)
    seen_inside: list[str] = []

    def evaluate() -> None:
        with tracker:
            seen_inside.extend(calls.hooks())
            log_samples(tracker, TASK, 3)
            raise ValueError("evaluation crashed")

    with pytest.raises(ValueError, match="evaluation crashed"):
        evaluate()
    assert seen_inside == ["run_started"]  # entering the block starts the run
    assert calls.hooks() == ["run_started", "details_batch", "run_finished"]
    assert calls.queries() == _queries(TASK, 3)  # what was logged still reaches the sinks
    assert calls.of("run_finished") == [{"status": "failed", "error": "evaluation crashed"}]


def test_with_block_normal_exit_finishes_ok_once(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    with tracker:
        log_samples(tracker, TASK, 3)
        tracker.save()
        assert "run_finished" not in calls.hooks()  # inside the block, save() does not finish the run
    assert calls.hooks() == ["run_started", "details_batch", "results_saved", "run_finished"]
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]
    tracker.close()
    assert calls.hooks().count("run_finished") == 1


def test_save_outside_a_with_block_finishes_ok_once(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    log_samples(tracker, TASK, 3)
    tracker.save()
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]
    tracker.close()
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]


def test_an_exception_in_save_outside_a_with_block_finishes_the_run_as_failed(
    make_tracker: MakeTracker, calls: Calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_tracker()
    log_samples(tracker, TASK, 2)

    def explode() -> None:
        raise RuntimeError("aggregation exploded")

    monkeypatch.setattr(tracker.details_logger, "aggregate", explode)
    with pytest.raises(RuntimeError, match="aggregation exploded"):
        tracker.save()
    assert "results_saved" not in calls.hooks()
    assert calls.of("run_finished") == [{"status": "failed", "error": "aggregation exploded"}]


def test_reading_details_mid_run_loses_no_batch(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker(flush_every=1000)
    log_samples(tracker, TASK, 5)
    assert [r["doc"]["query"] for r in tracker.details[TASK]] == _queries(TASK, 5)  # buffered, read
    assert calls.all == []  # reading handed nothing to the sinks
    log_samples(tracker, TASK, 2, start=5)
    assert len(tracker.details_logger.details[TASK]) == 7
    tracker.save()
    assert [(b["size"], b["first_index"]) for b in calls.of("details_batch")] == [(7, 0)]
    assert calls.queries() == _queries(TASK, 7)


def test_reading_details_between_flushes_keeps_every_batch_whole(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(flush_every=4)
    log_samples(tracker, TASK, 6)  # one batch of 4 delivered, 2 buffered
    assert len(tracker.details[TASK]) == 6
    log_samples(tracker, TASK, 2, start=6)
    tracker.save()
    assert [(b["size"], b["first_index"]) for b in calls.of("details_batch")] == [(4, 0), (4, 4)]
    assert calls.queries() == _queries(TASK, 8)


def test_a_second_save_is_refused(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    log_samples(tracker, TASK, 2)
    tracker.save()
    with pytest.raises(EvalsinkError, match="already saved"):
        tracker.save()
    assert calls.hooks().count("results_saved") == 1
    assert calls.hooks().count("run_finished") == 1


def test_a_second_save_in_a_with_block_is_refused(make_tracker: MakeTracker, calls: Calls) -> None:
    tracker = make_tracker()
    with tracker:
        log_samples(tracker, TASK, 2)
        tracker.save()
        with pytest.raises(EvalsinkError, match="already saved"):
            tracker.save()
    assert calls.hooks() == ["run_started", "details_batch", "results_saved", "run_finished"]


def test_a_required_sink_failing_at_run_finished_fails_the_with_block(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(
        sinks=["recorder", "flaky"], sink_config={"flaky": {"required": True, "fail_in": "run_finished"}}
    )

    def evaluate() -> None:
        with tracker:
            log_samples(tracker, TASK, 2)
            report = tracker.save()  # run_finished has not happened yet: nothing to raise
            assert report.ok

    with pytest.raises(SinkFailedError, match=r"required sink 'flaky' failed: .*run_finished"):
        evaluate()
    assert calls.hooks()[-1] == "run_finished"
    assert calls.hooks("flaky")[-1] == "run_finished"


def test_a_required_sink_failing_at_run_finished_fails_a_plain_save(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(
        sinks=["recorder", "flaky"], sink_config={"flaky": {"required": True, "fail_in": "run_finished"}}
    )
    log_samples(tracker, TASK, 2)
    with pytest.raises(SinkFailedError, match=r"required sink 'flaky' failed: .*run_finished"):
        tracker.save()  # save() finishes the run itself, so it sees the failure
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]


def test_a_non_required_sink_failing_at_run_finished_does_not_fail_the_with_block(
    make_tracker: MakeTracker, calls: Calls
) -> None:
    tracker = make_tracker(sinks=["recorder", "flaky"], sink_config={"flaky": {"fail_in": "run_finished"}})
    with tracker:
        log_samples(tracker, TASK, 2)
        report = tracker.save()
    assert report.failed == ["flaky"]  # the report sees the late failure
    assert calls.of("run_finished") == [{"status": "ok", "error": None}]
