"""Recovering a run whose output is on S3: its spool is in EVALSINK_SPOOL_DIR, shared with other outputs."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from conftest import Bucket
from s3_helpers import check_whole, log_demo_samples, read_table, strict_json

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError
from evalsink.manifest import RunState
from evalsink.recovery import find_runs, recover_all, recover_run

TASK = "custom|qa|0"


def _failed_run(
    make_tracker: Callable[..., EvaluationTracker], url: str, run_id: str
) -> list[dict[str, object]]:
    """A run whose evaluation crashed after 10 samples were flushed: spool and manifest left behind."""
    tracker = make_tracker(url, run_id=run_id, flush_every=5)
    tracker.general_config_logger.log_model_info(model_name="org/model")
    rows = log_demo_samples(tracker, TASK, 10)
    tracker.close(RuntimeError("the evaluation crashed"))
    return rows


def test_a_failed_run_is_found_for_its_own_output_only_and_recovered_marked_partial(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker]
) -> None:
    url, other = bucket.url("evals"), bucket.url("other-evals")
    rows = _failed_run(make_tracker, url, "mine")
    _failed_run(make_tracker, other + "/", "theirs")  # same spool folder, another output
    assert bucket.list_keys() == []

    [run] = find_runs(url)
    assert (run.run_id, run.state, run.unpublished, run.recoverable) == ("mine", RunState.FAILED, False, True)
    assert [found.run_id for found in find_runs(other)] == ["theirs"]  # a trailing '/' is the same output

    reports = recover_all(url)

    assert list(reports) == ["mine"]
    report = reports["mine"]
    assert report.ok, str(report)
    results_url, details_url = report["local"].outputs
    results = strict_json(bucket.get(results_url.removeprefix(f"s3://{bucket.name}/")))
    assert results["evalsink_recovery"]["partial"] is True
    assert results["evalsink_recovery"]["samples_recovered"] == 10
    assert read_table(bucket.get(details_url.removeprefix(f"s3://{bucket.name}/"))).to_pylist() == rows
    for key in bucket.list_keys():
        check_whole(key, bucket.get(key))
    assert find_runs(url) == []
    assert [found.run_id for found in find_runs(other)] == ["theirs"]


def test_a_saved_and_published_run_is_not_recovered(
    bucket: Bucket, make_tracker: Callable[..., EvaluationTracker]
) -> None:
    """Saved, results file there, but a sink failed afterwards: a re-push, not a recovery."""
    url = bucket.url("evals")
    tracker = make_tracker(url, run_id="published", sinks=["local", "flaky"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    log_demo_samples(tracker, TASK, 3)
    report = tracker.save()
    assert report.failed == ["flaky"]

    [run] = find_runs(url)
    assert (run.state, run.unpublished, run.recoverable) == (RunState.SAVED, False, False)
    with pytest.raises(EvalsinkError, match="was saved"):
        recover_run(url, "published")


def test_an_unknown_run_names_where_it_was_looked_for(bucket: Bucket) -> None:
    with pytest.raises(EvalsinkError) as raised:
        recover_run(bucket.url("evals"), "nowhere")
    message = str(raised.value)
    assert f"no run 'nowhere' of {bucket.url('evals')} to recover in " in message
    assert "evalsink-runs" in message
    assert "EVALSINK_SPOOL_DIR" in message
