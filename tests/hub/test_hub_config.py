"""The hub sink's options and its checks at construction: before any evaluation time is spent.

Also: the token is a secret (never in a file, a commit, the card, the report or the logs), and
huggingface_hub is imported only by trackers that enable the sink.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from loopback_hub import LoopbackHub
from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker, SinkConfigError
from evalsink_hub import HubSink, HubSinkConfig

ORG = "evalsink-org"
REPO = f"{ORG}/details_org__tiny-model_private"
SECRET = "hf_secretSentinelToken0123456789"


def tracker(tmp_path: Path, hub: dict[str, Any] | None = None, **options: Any) -> EvaluationTracker:
    return EvaluationTracker(tmp_path, sinks=["local", "hub"], sink_config={"hub": hub or {}}, **options)


def test_no_org_and_no_repo_id_fails_at_construction_with_the_fix(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    with pytest.raises(SinkConfigError) as raised:
        tracker(tmp_path)
    message = str(raised.value)
    assert message.startswith("sink 'hub' could not start: ValueError: the hub sink needs to know where")
    assert "hub_results_org='my-org'" in message
    assert "EVALSINK_HUB__ORG=my-org" in message
    assert "'repo_id': 'my-org/my-details'" in message
    assert loopback_hub.requests == []  # nothing was sent


@pytest.mark.parametrize(
    ("hub", "options"),
    [({}, {"hub_results_org": ORG}), ({"org": ORG}, {}), ({"repo_id": f"{ORG}/evals"}, {})],
    ids=["hub_results_org", "org", "repo_id"],
)
def test_any_one_of_org_hub_results_org_or_repo_id_is_enough(
    tmp_path: Path, hub: dict[str, Any], options: dict[str, Any]
) -> None:
    assert tracker(tmp_path, hub, **options).sink_names == ["local", "hub"]


def test_the_org_can_come_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EVALSINK_HUB__ORG", ORG)
    sink = tracker(tmp_path)._manager.sinks["hub"]
    assert isinstance(sink, HubSink)
    assert sink.pusher is not None
    assert sink.pusher.details_repo_id("org/tiny-model") == REPO


def test_a_missing_token_fails_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HF_TOKEN")
    with pytest.raises(SinkConfigError, match="no Hugging Face token: set HF_TOKEN, log in once"):
        tracker(tmp_path, hub_results_org=ORG)


def test_the_stored_login_is_used_when_hf_token_is_unset(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    import huggingface_hub.constants

    monkeypatch.delenv("HF_TOKEN")
    token_file = Path(huggingface_hub.constants.HF_TOKEN_PATH)
    token_file.parent.mkdir(parents=True, exist_ok=True)
    token_file.write_text("hf_storedLoginToken", encoding="utf-8")
    evaluation = tracker(tmp_path, {"retry_backoff": 0}, hub_results_org=ORG)
    log_accuracy_samples(evaluation, {"custom|plain|0": [1.0]})
    report = evaluation.save()

    assert report.ok, str(report)
    assert {r.token for r in loopback_hub.requests if "/api/repos/create" in r.path} == {
        "hf_storedLoginToken"
    }


@pytest.mark.parametrize(
    ("hub", "complaint"),
    [
        ({"repo_id": "no-namespace"}, "it is not of the form 'org/name'"),
        ({"results_repo_id": "a/b/c"}, "it is not of the form 'org/name'"),
        ({"repo_id": "org/details_模型"}, "its name 'details_模型' holds '型模'"),
        ({"repo_id": "org/models--x"}, "its name 'models--x' holds '--' or '..'"),
        ({"results_repo_id": "my org/results"}, "its namespace 'my org' holds ' '"),
        ({"org": "my-org-"}, "'my-org-' is not a valid Hub namespace: it starts or ends with '-' or '.'"),
        ({"commit_message": "run {run_id}"}, "unknown placeholder(s) run_id"),
        ({"gated": "yes"}, "gated"),
        ({"retry_attempts": 0}, "retry_attempts"),
        ({"retry_backoff": -1}, "retry_backoff"),
        ({"timeout": 0}, "timeout"),
        ({"private": True}, "unknown option(s) 'private'"),
    ],
    ids=str,
)
def test_invalid_options_are_refused_at_construction(
    tmp_path: Path, hub: dict[str, Any], complaint: str
) -> None:
    with pytest.raises(SinkConfigError) as raised:
        tracker(tmp_path, {"org": ORG, **hub})
    assert complaint in str(raised.value)


def test_the_commit_message_takes_the_model_and_the_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    evaluation = tracker(
        tmp_path, {"org": ORG, "retry_backoff": 0, "commit_message": "eval {model_name} @ {date_id}"}
    )
    log_accuracy_samples(evaluation, {"custom|plain|0": [1.0]})
    report = evaluation.save()

    assert loopback_hub.commits(REPO)[-1].summary == f"eval org/tiny-model @ {report.date_id}"


def test_the_token_is_a_secret_in_the_config() -> None:
    config = HubSinkConfig(org=ORG, token=SECRET)
    assert SECRET not in repr(config)
    assert SECRET not in str(config)
    assert SECRET not in config.model_dump_json()
    assert config.token is not None
    assert config.token.get_secret_value() == SECRET


def test_the_token_is_sent_but_never_written_anywhere(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loopback_hub: LoopbackHub,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.delenv("HF_TOKEN")
    caplog.set_level(logging.DEBUG)
    loopback_hub.fail_next(1, 503, method="POST")  # a retry logs a warning: it must not hold the token
    evaluation = tracker(tmp_path / "out", {"token": SECRET, "retry_backoff": 0}, hub_results_org=ORG)
    log_accuracy_samples(evaluation, {"custom|plain|0": [1.0]})
    report = evaluation.save()

    assert report.ok, str(report)
    assert {r.token for r in loopback_hub.requests if r.path.startswith("/api/datasets")} == {SECRET}
    secret = SECRET.encode()
    for path, data in loopback_hub.files(REPO).items():
        assert secret not in data, path
    for commit in loopback_hub.commits(REPO):
        assert SECRET not in commit.summary + commit.description
    for path in (tmp_path / "out").rglob("*"):
        if path.is_file():
            assert secret not in path.read_bytes(), path
    assert SECRET not in str(report)
    assert SECRET not in caplog.text
    assert "retrying" in caplog.text


def test_huggingface_hub_is_imported_only_by_trackers_that_enable_the_sink(tmp_path: Path) -> None:
    code = f"""
import json, sys
from evalsink import EvaluationTracker
EvaluationTracker({str(tmp_path)!r}, sinks=["local"])
loaded = lambda: sorted(m for m in sys.modules if m.split(".")[0] in ("evalsink_hub", "huggingface_hub"))
print(json.dumps(loaded()))
import evalsink_hub
print(json.dumps([m for m in loaded() if m.startswith("huggingface_hub")]))
EvaluationTracker({str(tmp_path)!r}, sinks=["local", "hub"], hub_results_org="org")
print(json.dumps("huggingface_hub" in sys.modules))
"""
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=dict(os.environ), check=True
    )
    without_hub, after_import, with_hub = (json.loads(line) for line in out.stdout.splitlines())
    assert without_hub == []  # a tracker without the hub sink never imports the plugin
    assert after_import == []  # importing the plugin does not import huggingface_hub
    assert with_hub is True
