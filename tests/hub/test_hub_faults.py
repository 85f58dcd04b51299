"""A Hub that fails: retried errors, a Hub that is down, lost answers, concurrent pushes, re-push from disk.

Faults are injected by the loopback server (``fail_next``, ``hang_next``, ``stop``); the retry
backoff is zero (or small and bounded) so the tests stay fast.
"""

from __future__ import annotations

import importlib
import time
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import DatasetCard, HfApi
from loopback_hub import DUMMY_TOKEN, LoopbackHub
from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker, SaveReport
from evalsink_hub import HubPushError, push_run

ORG = "evalsink-org"
MODEL = "org/tiny-model"
REPO = f"{ORG}/details_org__tiny-model_private"
D1 = "2025-11-05T14-43-47.148527"
D0 = "2025-11-01T08-00-00.000001"
ANATOMY = "lighteval|mmlu:anatomy|5"
PLAIN = "custom|plain|0"
SAMPLES = {ANATOMY: [1.0, 0.0], PLAIN: [0.25, 0.75]}


def evaluate(output: Path, monkeypatch: pytest.MonkeyPatch, **hub: Any) -> SaveReport:
    monkeypatch.setattr("evalsink.tracker.new_date_id", lambda: D1)
    tracker = EvaluationTracker(
        output,
        sinks=["local", "hub"],
        hub_results_org=ORG,
        sink_config={"hub": {"retry_backoff": 0.0, "timeout": 10.0, **hub}},
    )
    log_accuracy_samples(tracker, SAMPLES)
    return tracker.save()


def data_commits(hub: LoopbackHub, repo_id: str = REPO) -> list[Any]:
    """The repository's commits after the Hub's own initial commit."""
    return [commit for commit in hub.commits(repo_id) if commit.summary != "initial commit"]


def statuses(hub: LoopbackHub, fragment: str) -> list[int]:
    return [request.status for request in hub.requests if fragment in request.path]


def test_503_twice_then_success_pushes_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.fail_next(2, 503, method="POST")  # the first two requests of the push
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    assert statuses(loopback_hub, "/api/repos/create") == [503, 503, 200]
    assert len(data_commits(loopback_hub)) == 1
    assert loopback_hub.faults_pending == 0


def test_503_twice_on_the_commit_itself_still_makes_exactly_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.fail_next(2, 503, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    assert statuses(loopback_hub, "/commit/main") == [503, 503, 200]
    [commit] = data_commits(loopback_hub)
    assert "README.md" in commit.added


def test_a_rate_limit_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.fail_next(1, 429, path_contains="/api/repos/create")
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    assert statuses(loopback_hub, "/api/repos/create") == [429, 200]


def test_a_client_error_fails_at_once_with_the_servers_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.strict_namespaces = True
    loopback_hub.orgs = []  # the token's user is no member of the org
    report = evaluate(tmp_path, monkeypatch, retry_attempts=5)

    assert report.failed == ["hub"]
    [error] = report["hub"].errors
    assert "403" in error
    assert "is not a member of evalsink-org" in error
    assert statuses(loopback_hub, "/api/repos/create") == [403]  # no retry
    assert (tmp_path / f"results/{MODEL}/results_{D1}.json").exists()


def test_a_hub_that_is_down_fails_clearly_and_the_run_can_be_pushed_later_from_disk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.stop()
    started = time.monotonic()
    report = evaluate(tmp_path, monkeypatch, retry_attempts=3)

    assert time.monotonic() - started < 10
    assert report.failed == ["hub"]
    assert report["local"].ok
    [error] = report["hub"].errors
    assert "HubPushError: push of run 2025-11-05T14-43-47.148527 of 'org/tiny-model'" in error
    assert "failed after 3 attempt(s)" in error
    assert "ConnectError" in error
    assert f"Nothing was committed to {REPO}" in error
    assert f"evalsink_hub.push_run({str(tmp_path)!r}, 'org/tiny-model', date_id='{D1}')" in error
    results = tmp_path / f"results/{MODEL}/results_{D1}.json"
    details = sorted((tmp_path / f"details/{MODEL}/{D1}").iterdir())
    saved = {path: path.read_bytes() for path in [results, *details]}
    assert len(details) == 2

    loopback_hub.start()
    result = push_run(tmp_path, MODEL, D1, hub_results_org=ORG, config={"retry_backoff": 0})

    assert {path: path.read_bytes() for path in saved} == saved  # the push changed nothing locally
    [commit] = data_commits(loopback_hub)
    assert result.commit_url.endswith(commit.oid)
    files = loopback_hub.files(REPO)
    assert files[f"results_{D1}.json"] == saved[results]
    for path in details:
        assert files[f"{D1}/{path.name}"] == saved[path]
    card = DatasetCard(files["README.md"].decode("utf-8"))
    assert {c["config_name"] for c in card.data.to_dict()["configs"]} == {
        "results",
        "lighteval_mmlu_anatomy_5",
        "custom_plain_0",
    }


def test_push_run_takes_the_newest_saved_run_by_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.stop()
    evaluate(tmp_path, monkeypatch, retry_attempts=1)
    loopback_hub.start()

    result = push_run(tmp_path, MODEL, hub_results_org=ORG)

    assert f"results_{D1}.json" in result.paths
    with pytest.raises(FileNotFoundError, match="no saved run of model 'other/model'"):
        push_run(tmp_path, "other/model", hub_results_org=ORG)


def test_a_request_that_times_out_is_retried(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.hang_next(1, 5.0, path_contains="/api/repos/create")
    started = time.monotonic()
    report = evaluate(tmp_path, monkeypatch, timeout=0.3)

    assert report.ok, str(report)
    assert time.monotonic() - started < 4  # the hung request was abandoned after 0.3 s
    assert len(data_commits(loopback_hub)) == 1


def test_a_commit_whose_answer_is_lost_is_not_committed_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    # the server applies the commit after 1 s, when the client gave up waiting (0.3 s) and
    # retried at once: the retry lands first, the late original is refused (stale parent)
    loopback_hub.hang_next(1, 1.0, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, monkeypatch, timeout=0.3)
    time.sleep(1.2)  # let the held request finish on the server

    assert report.ok, str(report)
    assert len(data_commits(loopback_hub)) == 1
    assert sorted(statuses(loopback_hub, "/commit/main")) == [200, 412]


def test_a_commit_that_landed_before_its_retry_is_recognised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    # the original commit lands (after 0.4 s) before the retry (after >= 0.75 s of backoff) looks
    loopback_hub.hang_next(1, 0.4, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, monkeypatch, timeout=0.2, retry_backoff=1.5)

    assert report.ok, str(report)
    [commit] = data_commits(loopback_hub)
    assert report["hub"].outputs[1].endswith(commit.oid)  # the URL of the commit that landed
    assert statuses(loopback_hub, "/commits/") == [200]  # the retry looked for it in the history
    assert statuses(loopback_hub, "/preupload/") == [200]  # and sent nothing again
    assert statuses(loopback_hub, "/commit/main") == [200]


def test_a_concurrent_push_is_kept_in_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """Another run lands between our read of the repository and our commit: the Hub refuses our
    commit (stale parent) and the card is rebuilt so it lists both runs."""
    other = HfApi(endpoint=loopback_hub.url, token=DUMMY_TOKEN)
    original = HfApi.create_commit
    raced: list[bool] = []

    def create_commit(self: HfApi, repo_id: str, operations: Any, **options: Any) -> Any:
        if not raced:
            raced.append(True)
            other.upload_file(
                path_or_fileobj=b"PAR1",
                path_in_repo=f"{D0}/details_custom|other|0_{D0}.parquet",
                repo_id=repo_id,
                repo_type="dataset",
            )
        return original(self, repo_id, operations, **options)

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    assert [c.summary for c in data_commits(loopback_hub)][-1] == f"Upload evaluation run {D1} of {MODEL}"
    assert len(data_commits(loopback_hub)) == 2  # the other push and ours
    assert 412 in statuses(loopback_hub, "/commit/main")
    card = DatasetCard(loopback_hub.files(REPO)["README.md"].decode("utf-8"))
    configs = {c["config_name"] for c in card.data.to_dict()["configs"]}
    assert {"custom_other_0", "custom_plain_0", "lighteval_mmlu_anatomy_5", "results"} == configs


def test_a_push_error_says_what_was_committed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.fail_next(1, 400, method="POST", path_contains=f"/datasets/{REPO}/commit/main")
    report = evaluate(tmp_path, monkeypatch, results_repo_id=f"{ORG}/results")

    assert report.failed == ["hub"]
    [error] = report["hub"].errors
    assert f"The results were committed to {ORG}/results" in error
    assert f"the details repository {REPO} was not changed" in error
    [results_commit] = data_commits(loopback_hub, f"{ORG}/results")
    assert report["hub"].outputs == [f"{loopback_hub.url}/datasets/{ORG}/results/commit/{results_commit.oid}"]
    assert data_commits(loopback_hub) == []


def test_push_run_raises_a_clear_error_when_the_hub_is_down(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.stop()
    (tmp_path / f"results/{MODEL}").mkdir(parents=True)
    (tmp_path / f"results/{MODEL}/results_{D1}.json").write_text('{"results": {}}', encoding="utf-8")

    with pytest.raises(HubPushError, match="failed after 2 attempt") as raised:
        push_run(tmp_path, MODEL, hub_results_org=ORG, config={"retry_attempts": 2, "retry_backoff": 0})
    assert raised.value.outputs == []


def test_offline_mode_fails_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    report = evaluate(tmp_path, monkeypatch, retry_attempts=5)

    assert report.failed == ["hub"]
    assert "OfflineModeIsEnabled" in report["hub"].errors[0]
    assert "failed after" not in report["hub"].errors[0]  # not retried
    assert loopback_hub.requests == []


def test_pushing_a_run_again_commits_nothing_new(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch)
    [commit] = data_commits(loopback_hub)

    result = push_run(tmp_path, MODEL, D1, hub_results_org=ORG)

    assert data_commits(loopback_hub) == [commit]
    assert result.commit_url == report["hub"].outputs[1]


def test_a_lost_commit_that_lands_during_its_retry_is_recognised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """The worst timing: the first commit's answer is lost, the retry finds the head unchanged and
    commits again, and the first commit lands just before the retry does. The Hub refuses the
    retry (stale parent); the next round finds the first commit instead of committing a third time.

    huggingface_hub would skip the retry's unchanged files itself when the Hub reports their oids
    at pre-upload; that is switched off here, so the sink's own lookup is what is tested."""
    from huggingface_hub.errors import HfHubHTTPError

    original_preupload = HfApi.preupload_lfs_files

    def preupload_without_oids(self: HfApi, repo_id: str, additions: Any, **options: Any) -> Any:
        additions = list(additions)
        result = original_preupload(self, repo_id, additions, **options)
        for addition in additions:
            addition._remote_oid = None
        return result

    monkeypatch.setattr(HfApi, "preupload_lfs_files", preupload_without_oids)

    httplib = importlib.import_module(HfHubHTTPError.__mro__[1].__module__.split(".")[0])
    original = HfApi.create_commit
    pending: list[tuple[str, list[Any], dict[str, Any]]] = []

    def create_commit(self: HfApi, repo_id: str, operations: Any, **options: Any) -> Any:
        if not pending:
            pending.append((repo_id, list(operations), options))
            raise httplib.ReadTimeout("timed out")  # sent, but the answer is lost
        if len(pending) == 1:
            late_repo, late_operations, late_options = pending[0]
            pending.append((repo_id, [], {}))
            original(self, late_repo, late_operations, **late_options)  # the first one lands now
        return original(self, repo_id, operations, **options)

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    [commit] = data_commits(loopback_hub)
    assert report["hub"].outputs[1].endswith(commit.oid)
    assert statuses(loopback_hub, "/commit/main") == [200, 412]
