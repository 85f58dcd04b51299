"""The TensorBoard sink's push to the Hub, end to end against the loopback Hub.

Each test runs a real tracker (lighteval's ``push_to_tensorboard=True`` with ``hub_results_org``,
so the local and tensorboard sinks) on a tiny evaluation, then reads the model repository back from
the loopback server: its commits, its files (compared byte for byte with the local event files),
and downloaded copies read by TensorBoard's own EventAccumulator. Faults are injected by the server
(``fail_next``, ``hang_next``, ``stop``); retry backoffs are zero (or small and bounded).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import re
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from huggingface_hub import HfApi
from loopback_hub import DUMMY_TOKEN, LoopbackHub
from tb_helpers import ANATOMY, PLAIN, log_evaluation, read_events

import evalsink_tensorboard
from evalsink import EvaluationTracker, SaveReport, SinkConfigError
from evalsink_hub import HubSinkConfig
from evalsink_tensorboard import TensorBoardPushError, TensorBoardSinkConfig, push_logs

# the HTTP library huggingface_hub raises the errors of: httpx2 from its 2.x releases, httpx before
httpx = importlib.import_module("httpx2" if importlib.util.find_spec("httpx2") else "httpx")

pytestmark = pytest.mark.usefixtures("hub_env")

ORG = "evalsink-org"
REPO = f"{ORG}/tensorboard_logs"
RUN = "exp_eval"  # nanotron run "exp", prefix "eval"
FAST = {"retry_backoff": 0.0, "timeout": 10.0}


def evaluate(
    output: Path, step: int = 1000, *, tensorboard: dict[str, Any] | None = None, **tracker_options: Any
) -> SaveReport:
    """One evaluation of checkpoint ``step`` of nanotron run "exp", saved the lighteval way."""
    tracker_options.setdefault("push_to_tensorboard", True)
    tracker_options.setdefault("hub_results_org", ORG)
    tracker = EvaluationTracker(
        output,
        nanotron_run_info=SimpleNamespace(run="exp", step=step),
        sink_config={"tensorboard": {**FAST, **(tensorboard or {})}},
        **tracker_options,
    )
    log_evaluation(tracker, {PLAIN: [step / 10_000], ANATOMY: [1.0, 0.0]})
    return tracker.save()


def data_commits(hub: LoopbackHub, repo_id: str = REPO) -> list[Any]:
    """The repository's commits after the Hub's own initial commit."""
    return [commit for commit in hub.commits(repo_id, "model") if commit.summary != "initial commit"]


def event_files(run_dir: Path) -> dict[str, bytes]:
    """The run folder's event files, by name."""
    return {path.name: path.read_bytes() for path in sorted(run_dir.iterdir())}


def statuses(hub: LoopbackHub, fragment: str) -> list[int]:
    return [request.status for request in hub.requests if fragment in request.path]


@pytest.fixture
def without_client_skip(monkeypatch: pytest.MonkeyPatch) -> None:
    """huggingface_hub drops from a commit the files whose bytes the Hub already has (it learns
    their ids at pre-upload); switched off, so what a commit adds is what the sink chose to send."""
    original = HfApi.preupload_lfs_files

    def preupload_without_oids(self: HfApi, repo_id: str, additions: Any, **options: Any) -> Any:
        additions = list(additions)
        result = original(self, repo_id, additions, **options)
        for addition in additions:
            addition._remote_oid = None
        return result

    monkeypatch.setattr(HfApi, "preupload_lfs_files", preupload_without_oids)


def test_a_save_with_an_org_pushes_its_event_file_in_one_commit(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path / "out", step=1000)

    assert report.ok, str(report)
    run_dir = tmp_path / "out" / "tb" / RUN
    [(name, data)] = event_files(run_dir).items()
    path = f"tb/{RUN}/{name}"  # lighteval's layout: tb/{run}/ in {org}/tensorboard_logs
    initial, commit = loopback_hub.commits(REPO, "model")
    assert initial.summary == "initial commit"
    assert commit.added == [path]
    assert commit.summary == f"Upload TensorBoard logs of {RUN} at step 1000"
    assert set(loopback_hub.files(REPO, "model")) == {".gitattributes", path}
    assert loopback_hub.repo(REPO, "model").private  # lighteval created it private
    assert not loopback_hub.repo(REPO, "dataset").exists
    repo_url = f"{loopback_hub.url}/{REPO}"
    assert report["tensorboard"].outputs == [str(run_dir / name), repo_url, f"{repo_url}/commit/{commit.oid}"]
    assert report["local"].ok

    api = HfApi(endpoint=loopback_hub.url, token=DUMMY_TOKEN)
    downloaded = Path(api.hf_hub_download(REPO, path, local_dir=tmp_path / "download"))
    assert downloaded.read_bytes() == data
    events = read_events(downloaded.parent)
    [point] = events.Scalars("eval/plain/acc")
    assert (point.step, point.value) == (1000, pytest.approx(0.1))
    assert [event.step for event in events.Tensors("eval_config/text_summary")] == [1000]


@pytest.mark.parametrize(
    ("tracker_options", "tensorboard"),
    [
        ({"hub_results_org": ""}, {}),  # lighteval's default
        ({"hub_results_org": None}, {}),
        ({"hub_results_org": ORG}, {"push": False}),
        ({"hub_results_org": "", "sinks": ["local", "tensorboard"], "push_to_tensorboard": False}, {}),
    ],
)
def test_without_an_org_or_with_push_off_no_request_is_made(
    tmp_path: Path, loopback_hub: LoopbackHub, tracker_options: dict[str, Any], tensorboard: dict[str, Any]
) -> None:
    report = evaluate(tmp_path, tensorboard=tensorboard, **tracker_options)

    assert report.ok, str(report)
    [name] = event_files(tmp_path / "tb" / RUN)
    assert report["tensorboard"].outputs == [str(tmp_path / "tb" / RUN / name)]
    assert loopback_hub.requests == []


@pytest.mark.parametrize("fragment", ["/api/repos/create", "/commit/main"])
def test_503_twice_then_success_makes_exactly_one_commit(
    tmp_path: Path, loopback_hub: LoopbackHub, fragment: str
) -> None:
    loopback_hub.fail_next(2, 503, method="POST", path_contains=fragment)
    report = evaluate(tmp_path)

    assert report.ok, str(report)
    assert statuses(loopback_hub, fragment) == [503, 503, 200]
    [commit] = data_commits(loopback_hub)
    [name] = event_files(tmp_path / "tb" / RUN)
    assert commit.added == [f"tb/{RUN}/{name}"]


def test_a_hub_that_is_down_fails_the_sink_alone_and_push_logs_pushes_later(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.stop()
    started = time.monotonic()
    report = evaluate(tmp_path, tensorboard={"retry_attempts": 2})

    assert time.monotonic() - started < 10
    assert report.failed == ["tensorboard"]
    assert report["local"].ok
    assert all(Path(path).exists() for path in report["local"].outputs)
    run_dir = tmp_path / "tb" / RUN
    [name] = saved = event_files(run_dir)
    assert report["tensorboard"].outputs == [str(run_dir / name)]  # the local file is still reported
    [error] = report["tensorboard"].errors
    assert error.startswith(
        f"evalsink_results_saved: TensorBoardPushError: push of the TensorBoard logs of run {RUN!r}"
    )
    assert f"create the model repository {REPO} failed after 2 attempt(s)" in error
    assert "ConnectError" in error
    assert f"Nothing was committed to {REPO}" in error
    [point] = read_events(run_dir).Scalars("eval/plain/acc")  # the local events are intact
    assert point.step == 1000

    loopback_hub.start()
    call = re.search(r"(evalsink_tensorboard\.push_logs\(.*?\)) and the same", error)
    assert call is not None
    assert (
        call.group(1)
        == f"evalsink_tensorboard.push_logs({str(tmp_path / 'tb')!r}, {REPO!r}, run_name={RUN!r})"
    )
    result = eval(call.group(1), {"evalsink_tensorboard": evalsink_tensorboard})  # as a user pastes it

    assert event_files(run_dir) == saved  # the push changed nothing locally
    [commit] = data_commits(loopback_hub)
    assert result.commit_url == f"{loopback_hub.url}/{REPO}/commit/{commit.oid}"
    assert result.uploaded == (f"tb/{RUN}/{name}",)
    assert loopback_hub.files(REPO, "model")[f"tb/{RUN}/{name}"] == saved[name]


@pytest.mark.usefixtures("without_client_skip")
def test_a_second_checkpoint_commits_only_its_new_file(tmp_path: Path, loopback_hub: LoopbackHub) -> None:
    first = evaluate(tmp_path, step=2000)
    [first_name] = event_files(tmp_path / "tb" / RUN)
    second = evaluate(tmp_path, step=1000)  # evaluated out of order

    assert first.ok, str(first)
    assert second.ok, str(second)
    local = event_files(tmp_path / "tb" / RUN)
    [second_name] = set(local) - {first_name}
    commit_1, commit_2 = data_commits(loopback_hub)
    assert commit_1.added == [f"tb/{RUN}/{first_name}"]
    assert commit_2.added == [f"tb/{RUN}/{second_name}"]  # the first file is not uploaded again
    assert commit_2.summary == f"Upload TensorBoard logs of {RUN} at step 1000"
    assert second["tensorboard"].outputs[-1].endswith(commit_2.oid)
    files = loopback_hub.files(REPO, "model")
    assert {name: files[f"tb/{RUN}/{name}"] for name in local} == local

    copy = tmp_path / "copy"  # the repository's run folder, read by TensorBoard in name order
    copy.mkdir()
    for name in local:
        (copy / name).write_bytes(files[f"tb/{RUN}/{name}"])
    assert [point.step for point in read_events(copy).Scalars("eval/plain/acc")] == [1000, 2000]


def test_the_token_is_used_and_never_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    secret = "hf_evalsinkTensorBoardSecret0123456789"
    monkeypatch.delenv("HF_TOKEN")
    tracker = EvaluationTracker(
        tmp_path / "out",
        push_to_tensorboard=True,
        hub_results_org=ORG,
        sink_config={"tensorboard": {**FAST, "token": secret}},
    )
    log_evaluation(tracker, {PLAIN: [0.5]})
    report = tracker.save()

    assert report.ok, str(report)
    assert loopback_hub.requests
    assert {request.token for request in loopback_hub.requests} == {secret}
    assert secret not in str(report)
    assert secret not in repr(tracker.sink("tensorboard").config)
    for commit in loopback_hub.commits(REPO, "model"):
        assert secret not in commit.summary
        assert secret not in commit.description
    for content in loopback_hub.files(REPO, "model").values():
        assert secret.encode() not in content
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any("tfevents" in path.name for path in written)
    for path in written:
        assert secret.encode() not in path.read_bytes(), path


def test_other_ranks_push_nothing_and_need_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("EVALSINK_RUN_ID", "shared")
    monkeypatch.delenv("HF_TOKEN")
    report = evaluate(tmp_path)  # the sink is built (its config checked) without a token

    assert report.ok, str(report)
    assert "tensorboard" not in report.sinks  # rank 0 writes the run (docs/ranks.md)
    assert not (tmp_path / "tb").exists()
    assert loopback_hub.requests == []


def test_without_a_token_the_tracker_fails_before_the_evaluation(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SinkConfigError, match="no Hugging Face token to push the TensorBoard logs"):
        EvaluationTracker(tmp_path, push_to_tensorboard=True, hub_results_org=ORG)
    assert loopback_hub.requests == []


def test_without_evalsink_hub_the_push_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    for module in ("evalsink_hub", "evalsink_hub.retry"):
        monkeypatch.setitem(sys.modules, module, None)  # import evalsink_hub now fails

    with pytest.raises(SinkConfigError, match=re.escape('pip install "evalsink-tensorboard[hub]"')):
        EvaluationTracker(tmp_path, push_to_tensorboard=True, hub_results_org=ORG)
    with pytest.raises(SinkConfigError, match=re.escape('(or "evalsink[hub]")')):
        EvaluationTracker(
            tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": {"push": True, "org": ORG}}
        )
    # without a push, the sink needs no extra
    report = evaluate(tmp_path, hub_results_org="")
    assert report.ok, str(report)
    assert loopback_hub.requests == []


@pytest.mark.parametrize(
    ("hub_results_org", "tensorboard", "repo_id", "path"),
    [
        (None, {"repo_id": f"{ORG}/my-logs", "path_in_repo": "", "public": True}, f"{ORG}/my-logs", RUN),
        (
            ORG,
            {"org": "team-org", "path_in_repo": "/logs/tb/"},
            "team-org/tensorboard_logs",
            f"logs/tb/{RUN}",
        ),
        (ORG, {"run_name": "a/b"}, REPO, "tb/a/b"),
    ],
)
def test_repository_folder_and_visibility_options(
    tmp_path: Path,
    loopback_hub: LoopbackHub,
    hub_results_org: str | None,
    tensorboard: dict[str, Any],
    repo_id: str,
    path: str,
) -> None:
    report = evaluate(tmp_path, tensorboard=tensorboard, hub_results_org=hub_results_org)

    assert report.ok, str(report)
    local_folder = tmp_path / "tb" / tensorboard.get("run_name", RUN)
    [name] = event_files(local_folder)
    [commit] = data_commits(loopback_hub, repo_id)
    assert commit.added == [f"{path}/{name}"]
    assert loopback_hub.repo(repo_id, "model").private == (not tensorboard.get("public", False))


@pytest.mark.usefixtures("without_client_skip")
def test_push_logs_uploads_only_what_the_repository_lacks_or_holds_otherwise(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    for run, step in (("exp", 1000), ("exp", 2000), ("other", 1000)):
        tracker = EvaluationTracker(
            tmp_path, sinks=["tensorboard"], nanotron_run_info=SimpleNamespace(run=run, step=step)
        )
        log_evaluation(tracker, {PLAIN: [0.5]})
        assert tracker.save().ok
    assert loopback_hub.requests == []  # no org: the sink pushed nothing
    local = {
        f"tb/{path.parent.name}/{path.name}": path.read_bytes()
        for path in sorted((tmp_path / "tb").glob("*/*"))
    }
    assert len(local) == 3

    first = push_logs(tmp_path / "tb", hub_results_org=ORG, config=FAST)  # every run below the root
    [commit] = data_commits(loopback_hub)
    assert sorted(commit.added) == sorted(local) == list(first.uploaded)
    assert commit.summary == "Upload TensorBoard logs of exp_eval, other_eval"
    assert {path: loopback_hub.files(REPO, "model")[path] for path in local} == local

    again = push_logs(tmp_path / "tb", REPO, run_name="exp_eval", config=FAST)
    assert again.commit_url is None
    assert again.uploaded == ()
    assert len(again.unchanged) == 2
    assert len(data_commits(loopback_hub)) == 1  # nothing new: no commit

    changed = sorted((tmp_path / "tb" / "exp_eval").iterdir())[0]
    changed.write_bytes(changed.read_bytes() + b"\0")
    third = push_logs(tmp_path / "tb", REPO, config=FAST)
    assert third.uploaded == (f"tb/exp_eval/{changed.name}",)
    assert data_commits(loopback_hub)[-1].added == [f"tb/exp_eval/{changed.name}"]


def test_push_logs_errors(tmp_path: Path, loopback_hub: LoopbackHub) -> None:
    with pytest.raises(FileNotFoundError, match="no TensorBoard run folder with event files"):
        push_logs(tmp_path / "tb", REPO)
    with pytest.raises(ValueError, match="needs to know where to push"):
        push_logs(tmp_path / "tb")
    with pytest.raises(ValueError, match="not a repository id"):
        push_logs(tmp_path / "tb", "no-namespace")
    (tmp_path / "tb" / "empty").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no TensorBoard event files in"):
        push_logs(tmp_path / "tb", REPO, run_name="empty")
    assert loopback_hub.requests == []


def test_push_logs_raises_a_clear_error_when_the_hub_is_down(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, hub_results_org="")  # written, not pushed
    assert report.ok, str(report)
    loopback_hub.stop()

    with pytest.raises(TensorBoardPushError, match="failed after 2 attempt") as raised:
        push_logs(tmp_path / "tb", REPO, run_name=RUN, config={"retry_attempts": 2, "retry_backoff": 0})
    assert raised.value.outputs == []
    assert f"Nothing was committed to {REPO}" in str(raised.value)
    assert len(event_files(tmp_path / "tb" / RUN)) == 1


def test_a_refused_commit_is_not_retried_and_says_nothing_landed(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    loopback_hub.fail_next(1, 403, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path)

    assert report.failed == ["tensorboard"]
    [error] = report["tensorboard"].errors
    assert "403" in error
    assert f"Nothing was committed to {REPO}" in error
    assert statuses(loopback_hub, "/commit/main") == [403]
    assert data_commits(loopback_hub) == []


def test_a_commit_the_hub_answers_with_an_error_says_nothing_landed(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    """A 503 is the Hub's answer that the commit was not made: the message must not say it may have
    landed (it said so after any 5xx)."""
    loopback_hub.fail_next(100, 503, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, tensorboard={"retry_attempts": 2})

    assert report.failed == ["tensorboard"]
    [error] = report["tensorboard"].errors
    assert "503" in error
    assert f"Nothing was committed to {REPO}" in error
    assert "may have landed" not in error
    assert statuses(loopback_hub, "/commit/main") == [503, 503]
    assert data_commits(loopback_hub) == []


def test_a_commit_whose_answer_never_comes_says_it_may_have_landed(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    # both commits are held 1 s, past the client's 0.3 s: the first lands late, the second is then
    # refused (stale parent); the client saw neither answer
    loopback_hub.hang_next(2, 1.0, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, tensorboard={"timeout": 0.3, "retry_attempts": 2})
    time.sleep(1.5)  # let the held requests finish on the server

    assert report.failed == ["tensorboard"]
    [error] = report["tensorboard"].errors
    assert "A commit was sent and its answer was lost, so it may have landed" in error
    assert f"Nothing was committed to {REPO}" not in error
    [commit] = data_commits(loopback_hub)  # it had landed: pushing again finds nothing to upload
    again = push_logs(tmp_path / "tb", REPO, run_name=RUN, config=FAST)
    assert again.commit_url is None
    assert again.uploaded == ()
    assert data_commits(loopback_hub) == [commit]


def test_a_commit_whose_answer_is_lost_is_not_committed_twice(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    # the server applies the commit after 1 s, when the client gave up (0.3 s) and retried at once:
    # the retry lands first, the late original is refused (stale parent)
    loopback_hub.hang_next(1, 1.0, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, tensorboard={"timeout": 0.3})
    time.sleep(1.2)  # let the held request finish on the server

    assert report.ok, str(report)
    [commit] = data_commits(loopback_hub)
    assert report["tensorboard"].outputs[-1].endswith(commit.oid)
    assert sorted(statuses(loopback_hub, "/commit/main")) == [200, 412]


def test_a_commit_that_landed_before_its_retry_is_recognised(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    # the original commit lands (after 0.4 s) before the retry (after >= 0.75 s of backoff) looks
    loopback_hub.hang_next(1, 0.4, method="POST", path_contains="/commit/main")
    report = evaluate(tmp_path, tensorboard={"timeout": 0.2, "retry_backoff": 1.5})

    assert report.ok, str(report)
    [commit] = data_commits(loopback_hub)
    assert report["tensorboard"].outputs[-1].endswith(commit.oid)  # the commit that landed
    assert statuses(loopback_hub, "/commit/main") == [200]  # nothing sent again
    assert statuses(loopback_hub, "/commits/") == [200]  # found through its push id


def test_a_concurrent_commit_is_kept_and_ours_rebuilt_on_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """Another push lands between our read of the head and our commit: the Hub refuses ours (412),
    and the push compares and commits again on the new head."""
    other = HfApi(endpoint=loopback_hub.url, token=DUMMY_TOKEN)
    original = HfApi.create_commit
    raced: list[bool] = []

    def create_commit(self: HfApi, repo_id: str, operations: Any, **options: Any) -> Any:
        if not raced:
            raced.append(True)
            other.upload_file(
                path_or_fileobj=b"other", path_in_repo="tb/other/events.out.tfevents.1", repo_id=repo_id
            )
        return original(self, repo_id, operations, **options)

    monkeypatch.setattr(HfApi, "create_commit", create_commit)
    report = evaluate(tmp_path)

    assert report.ok, str(report)
    other_commit, ours = data_commits(loopback_hub)
    assert other_commit.added == ["tb/other/events.out.tfevents.1"]
    assert ours.parent == other_commit.oid
    assert 412 in statuses(loopback_hub, "/commit/main")
    assert "tb/other/events.out.tfevents.1" in loopback_hub.files(REPO, "model")


# -- options -------------------------------------------------------------------------------------

SHARED_WITH_THE_HUB_SINK = (
    "org",
    "repo_id",
    "token",
    "endpoint",
    "retry_attempts",
    "retry_backoff",
    "retry_max_backoff",
    "timeout",
)


@pytest.mark.parametrize("name", SHARED_WITH_THE_HUB_SINK)
def test_push_options_have_the_hub_sinks_defaults_and_bounds(name: str) -> None:
    ours, hubs = TensorBoardSinkConfig.model_fields[name], HubSinkConfig.model_fields[name]
    assert (ours.annotation, ours.default, ours.metadata) == (hubs.annotation, hubs.default, hubs.metadata)


def test_the_retry_policy_is_the_hub_sinks() -> None:
    numbers = {"retry_attempts": 3, "retry_backoff": 0.5, "retry_max_backoff": 4.0, "timeout": 9.0}
    assert TensorBoardSinkConfig(**numbers).retry_policy() == HubSinkConfig(**numbers).retry_policy()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"push": True}, "needs to know where to push"),
        ({"repo_id": "no-namespace"}, "not a repository id"),
        ({"path_in_repo": "tb/../x"}, "not a folder of the repository"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"hub_token": "x"}, "unknown option"),
    ],
)
def test_invalid_push_options_fail_the_tracker_at_construction(
    tmp_path: Path, loopback_hub: LoopbackHub, options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SinkConfigError, match=message):
        EvaluationTracker(tmp_path, sinks=["tensorboard"], sink_config={"tensorboard": options})
    assert loopback_hub.requests == []


def test_push_options_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    monkeypatch.setenv("EVALSINK_TENSORBOARD__ORG", "env-org")
    monkeypatch.setenv("EVALSINK_TENSORBOARD__RETRY_BACKOFF", "0")
    report = evaluate(tmp_path, hub_results_org="")

    assert report.ok, str(report)
    assert len(data_commits(loopback_hub, "env-org/tensorboard_logs")) == 1


def test_files_are_compared_by_git_blob_id_or_by_sha256_when_stored_in_lfs() -> None:
    from huggingface_hub import RepoFile

    from evalsink_tensorboard.push import git_blob_id, repo_file_matches

    assert git_blob_id(b"") == "e69de29bb2d1d6434b8b29ae775ad8c2e48c5391"  # `git hash-object`
    assert git_blob_id(b"hello\n") == "ce013625030ba8dba906f756967f9e9ca394464a"
    data = b"event bytes"
    regular = RepoFile(path="tb/r/f", size=len(data), oid=git_blob_id(data))
    assert repo_file_matches(regular, data)
    assert not repo_file_matches(regular, data + b"!")
    assert not repo_file_matches(None, data)
    sha256 = hashlib.sha256(data).hexdigest()
    lfs = {"size": len(data), "oid": sha256, "pointerSize": 134}
    stored = RepoFile(path="tb/r/f", size=len(data), oid="0" * 40, lfs=lfs)  # oid: the pointer's
    assert repo_file_matches(stored, data)
    assert not repo_file_matches(stored, b"other bytes")


class _AnsweredError(Exception):
    """An HTTP error as huggingface_hub raises it: the answer's status on ``.response``."""

    def __init__(self, status: int) -> None:
        super().__init__(f"HTTP {status}")
        self.response = SimpleNamespace(status_code=status)


@pytest.mark.parametrize(
    ("error", "lost"),
    [
        (_AnsweredError(502), True),  # a gateway: the Hub's answer is unknown
        (_AnsweredError(504), True),
        (_AnsweredError(500), False),  # the Hub's own answer: not committed
        (_AnsweredError(503), False),
        (_AnsweredError(403), False),
        (httpx.ReadTimeout("timed out"), True),
        (httpx.RemoteProtocolError("Server disconnected without sending a response"), True),
        (TimeoutError(), True),
        (httpx.ConnectError("[Errno 111] Connection refused"), False),  # never sent
        (httpx.ConnectTimeout("timed out"), False),
        (ValueError("a bug before the request"), False),
    ],
    ids=repr,
)
def test_only_an_answer_that_never_came_leaves_a_commit_open(error: BaseException, lost: bool) -> None:
    from evalsink_tensorboard.push import answer_lost

    assert answer_lost(error) is lost


def test_a_repository_the_hub_refuses_fails_when_the_tracker_is_built(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    """Not at the push after the evaluation: ``my org/tensorboard_logs`` is no repository id."""
    with pytest.raises(SinkConfigError, match="its namespace 'my org' holds ' '"):
        evaluate(tmp_path, hub_results_org="my org")
    with pytest.raises(ValueError, match="cannot be a Hub repository id"):
        push_logs(tmp_path / "tb", "org/logs--x", run_name=RUN)
    assert loopback_hub.requests == []
