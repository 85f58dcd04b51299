"""Model names the Hub refuses as repository names, end to end against the loopback Hub.

lighteval names the details repository ``details_{model with / -> __}``; a model name with a
space, a non-ASCII letter, ``--``, ``..`` or a trailing ``-`` gave a name huggingface_hub refuses,
so the push failed at save(), after the whole evaluation, and the ``push_run`` the error advised
failed the same way. Here such a run is pushed (to a valid name with the model's hash), and a
namespace the Hub refuses fails when the tracker is built.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from huggingface_hub.utils import validate_repo_id
from loopback_hub import LoopbackHub

from evalsink import EvaluationTracker, SaveReport, SinkConfigError
from evalsink_hub import push_run

ORG = "evalsink-org"
D1 = "2025-11-05T14-43-47.148527"
TASK = "custom|plain|0"
FAST = {"retry_backoff": 0.0, "timeout": 10.0}


def evaluate(
    output: Path, monkeypatch: pytest.MonkeyPatch, model: str, *, hub: bool = True, public: bool = False
) -> SaveReport:
    """One two-sample evaluation of ``model``, saved with the local sink and (``hub``) the hub sink."""
    monkeypatch.setattr("evalsink.tracker.new_date_id", lambda: D1)
    tracker = EvaluationTracker(
        output,
        sinks=["local", "hub"] if hub else ["local"],
        hub_results_org=ORG,
        public=public,
        sink_config={"hub": FAST} if hub else None,
    )
    tracker.general_config_logger.log_model_info(model_name=model)
    for index, value in enumerate([1.0, 0.0]):
        doc = {"query": f"question {index}", "choices": ["a", "b"], "gold_index": 0}
        tracker.details_logger.log(TASK, doc, {"input": f"question {index}", "text": ["a"]}, {"acc": value})
        tracker.metrics_logger.log(TASK, {"acc": value})
    return tracker.save()


def digest(model: str) -> str:
    return hashlib.sha1(model.encode("utf-8")).hexdigest()[:8]


@pytest.mark.parametrize(
    ("model", "public", "name"),
    [
        ("org/sub/model ü", False, "details_org__sub__model_u_{}_private"),
        ("models--org--name", False, "details_models-org-name_{}_private"),
        ("org/model-", True, "details_org__model-_{}"),
    ],
)
def test_a_model_name_the_hub_refuses_is_pushed_at_save_and_said(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    loopback_hub: LoopbackHub,
    model: str,
    public: bool,
    name: str,
) -> None:
    repo_id = f"{ORG}/{name.format(digest(model))}"
    report = evaluate(tmp_path, monkeypatch, model, public=public)

    assert report.ok, str(report)
    validate_repo_id(repo_id)
    [_, commit] = loopback_hub.commits(repo_id)
    assert f"results_{D1}.json" in commit.added
    assert loopback_hub.repo(repo_id).private is not public
    assert report["hub"].outputs[0] == f"{loopback_hub.url}/datasets/{repo_id}"
    [note] = [warning for warning in report.warnings if warning.startswith("hub: ")]
    assert f"model name {model!r} gives lighteval's repository name" in note
    assert f"the details go to {repo_id} instead" in note


def test_push_run_pushes_a_refused_model_name_to_the_same_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """The push the error message advises (push_run) names the repository the same way."""
    model = "org/模型"
    report = evaluate(tmp_path, monkeypatch, model, hub=False)
    assert report.ok, str(report)

    result = push_run(tmp_path, model, D1, hub_results_org=ORG, config=FAST)

    assert result.repo_id == f"{ORG}/details_org____{digest(model)}_private"
    assert f"results_{D1}.json" in loopback_hub.files(result.repo_id)


def test_an_ordinary_model_name_keeps_lightevals_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, "meta-llama/Llama-3.1-8B")

    assert report.ok, str(report)
    assert loopback_hub.files(f"{ORG}/details_meta-llama__Llama-3.1-8B_private")
    assert not [warning for warning in report.warnings if warning.startswith("hub: ")]


@pytest.mark.parametrize("org", ["my org", "org-", "ü-labs", "a" * 97])
def test_a_namespace_the_hub_refuses_fails_when_the_tracker_is_built(
    tmp_path: Path, loopback_hub: LoopbackHub, org: str
) -> None:
    with pytest.raises(SinkConfigError, match="cannot be a Hub namespace"):
        EvaluationTracker(tmp_path, sinks=["local", "hub"], hub_results_org=org)
    with pytest.raises(SinkConfigError, match="is not a valid Hub namespace"):
        EvaluationTracker(tmp_path, sinks=["local", "hub"], sink_config={"hub": {"org": org}})
    with pytest.raises(ValueError, match="cannot be a Hub namespace"):
        push_run(tmp_path, "org/model", hub_results_org=org)
    assert not loopback_hub.requests  # refused before any request


def test_a_namespace_is_not_checked_when_a_repo_id_names_the_repository(
    tmp_path: Path, loopback_hub: LoopbackHub
) -> None:
    """hub_results_org may serve other sinks; with a repo_id the hub sink does not use it."""
    tracker = EvaluationTracker(
        tmp_path,
        sinks=["local", "hub"],
        hub_results_org="not an org",
        sink_config={"hub": {"repo_id": f"{ORG}/details"}},
    )
    assert tracker.sink_names == ["local", "hub"]
