"""A run saved offline (local sink only) published later with ``evalsink push --to hub``."""

from __future__ import annotations

from pathlib import Path

from loopback_hub import LoopbackHub
from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker
from evalsink.replay import replay_run, saved_runs

ORG = "evalsink-org"
REPO = f"{ORG}/details_org__tiny-model_private"
SAMPLES = {"lighteval|mmlu:anatomy|5": [1.0, 0.0], "custom|plain|0": [0.25, 0.75, 0.5]}


def test_an_offline_run_is_pushed_later_in_one_commit(tmp_path: Path, loopback_hub: LoopbackHub) -> None:
    tracker = EvaluationTracker(tmp_path, sinks=["local"])
    log_accuracy_samples(tracker, SAMPLES)
    date_id = tracker.save().date_id
    assert loopback_hub.requests == []  # nothing went to the Hub while evaluating

    [saved] = saved_runs(tmp_path)
    report = replay_run(
        saved,
        ["hub"],
        sink_config={"hub": {"retry_backoff": 0.0, "timeout": 10.0}},
        tracker_options={"hub_results_org": ORG},
    )

    assert report.ok, str(report)
    [_, commit] = loopback_hub.commits(REPO)
    files = loopback_hub.files(REPO)
    local_results = next(tmp_path.glob(f"results/**/results_{date_id}.json"))
    assert files[f"results_{date_id}.json"] == local_results.read_bytes()
    for task in SAMPLES:
        [local] = tmp_path.glob(f"details/**/{date_id}/details_{task}_{date_id}.parquet")
        assert files[f"{date_id}/details_{task}_{date_id}.parquet"] == local.read_bytes()
    assert "README.md" in commit.added
