"""lighteval's three Hub methods on EvaluationTracker: push_results_to_hub, push_details_to_hub and
recreate_metadata_card, delegated to evalsink-hub (lighteval's own versions are broken)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import DatasetCard, HfApi
from loopback_hub import DUMMY_TOKEN, LoopbackHub
from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker, SinkNotInstalledError
from evalsink.discovery import install_hint

ORG = "evalsink-org"
MODEL = "org/tiny-model"
D1 = "2025-11-05T14-43-47.148527"
D2 = "2025-11-06T09-00-00.000001"
PLAIN = "custom|plain|0"
ANATOMY = "lighteval|mmlu:anatomy|5"
SAMPLES = {ANATOMY: [1.0, 0.0], PLAIN: [0.5]}


def saved_tracker(
    output: Path, monkeypatch: pytest.MonkeyPatch, date_id: str = D1, **options: Any
) -> EvaluationTracker:
    """A tracker (local sink only, as lighteval users call these methods) whose run is saved."""
    monkeypatch.setattr("evalsink.tracker.new_date_id", lambda: date_id)
    monkeypatch.setenv("EVALSINK_HUB__RETRY_BACKOFF", "0")
    tracker = EvaluationTracker(output, **options)
    log_accuracy_samples(tracker, SAMPLES)
    assert tracker.save().ok
    return tracker


def configs_of(card_text: str) -> dict[str, list[str]]:
    data = DatasetCard(card_text).data.to_dict()
    return {c["config_name"]: [e["split"] for e in c["data_files"]] for c in data["configs"]}


def test_push_results_to_hub_uploads_the_results_json_in_one_commit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(tmp_path, monkeypatch)
    repo = f"{ORG}/results"

    url = tracker.push_results_to_hub(repo, "org/tiny-model/results.json")

    [_, commit] = loopback_hub.commits(repo)
    assert url == f"{loopback_hub.url}/datasets/{repo}/commit/{commit.oid}"
    assert commit.added == ["org/tiny-model/results.json"]
    pushed = json.loads(loopback_hub.files(repo)["org/tiny-model/results.json"])
    assert pushed == tracker.results
    saved = json.loads((tmp_path / f"results/{MODEL}/results_{D1}.json").read_bytes())
    assert pushed["results"] == saved["results"]
    assert loopback_hub.repo(repo).private  # lighteval's private=None: private unless public


def test_push_results_to_hub_honours_private_false(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(tmp_path, monkeypatch)
    tracker.push_results_to_hub(f"{ORG}/open-results", "results.json", private=False)
    assert not loopback_hub.repo(f"{ORG}/open-results").private


def test_the_methods_name_their_repository_so_an_unused_org_is_not_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """push_results_to_hub(repo_id, ...) never uses hub_results_org: a value the Hub would refuse
    as a namespace refused the push all the same."""
    tracker = saved_tracker(tmp_path, monkeypatch, hub_results_org="My Org")
    tracker.push_results_to_hub(f"{ORG}/results", "results.json")
    assert "results.json" in loopback_hub.files(f"{ORG}/results")


def test_push_details_to_hub_uploads_a_runs_folder_with_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(tmp_path, monkeypatch)
    folder = tmp_path / f"details/{MODEL}/{D1}"
    repo = f"{ORG}/details"

    url = tracker.push_details_to_hub(repo, folder)

    [_, commit] = loopback_hub.commits(repo)
    assert url is not None
    assert url.endswith(commit.oid)
    files = loopback_hub.files(repo)
    for path in folder.iterdir():
        assert files[f"{D1}/{path.name}"] == path.read_bytes()
    assert sorted(commit.added) == sorted([*(f"{D1}/{p.name}" for p in folder.iterdir()), "README.md"])
    assert configs_of(files["README.md"].decode("utf-8")) == {
        "custom_plain_0": ["2025_11_05T14_43_47.148527", "latest"],
        "lighteval_mmlu_anatomy_5": ["2025_11_05T14_43_47.148527", "latest"],
    }


def test_push_details_to_hub_takes_a_models_folder_of_several_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    saved_tracker(tmp_path, monkeypatch, D1)
    tracker = saved_tracker(tmp_path, monkeypatch, D2)
    repo = f"{ORG}/details"

    tracker.push_details_to_hub(repo, tmp_path / f"details/{MODEL}")

    [_, commit] = loopback_hub.commits(repo)
    assert len([p for p in commit.added if p.endswith(".parquet")]) == 4
    configs = configs_of(loopback_hub.files(repo)["README.md"].decode("utf-8"))
    assert configs["custom_plain_0"] == ["2025_11_05T14_43_47.148527", "2025_11_06T09_00_00.000001", "latest"]


def test_push_details_to_hub_refuses_a_folder_without_details(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(tmp_path, monkeypatch)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no details_"):
        tracker.push_details_to_hub(f"{ORG}/details", tmp_path / "empty")
    assert not loopback_hub.repo(f"{ORG}/details").exists


def test_recreate_metadata_card_rebuilds_the_card_of_a_lighteval_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    """A repository filled without a card (as lighteval's one-file-per-commit pushes leave it)."""
    saved_tracker(tmp_path, monkeypatch, D1)
    tracker = saved_tracker(tmp_path, monkeypatch, D2)
    repo = f"{ORG}/details_org__tiny-model_private"
    api = HfApi(endpoint=loopback_hub.url, token=DUMMY_TOKEN)
    api.create_repo(repo, repo_type="dataset", private=True)
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=tmp_path / f"details/{MODEL}")
    api.upload_folder(repo_id=repo, repo_type="dataset", folder_path=tmp_path / f"results/{MODEL}")
    requests_before = len(loopback_hub.requests)

    url = tracker.recreate_metadata_card(repo)

    commit = loopback_hub.commits(repo)[-1]
    assert url is not None
    assert url.endswith(commit.oid)
    assert commit.added == ["README.md"]
    card = loopback_hub.files(repo)["README.md"].decode("utf-8")
    assert configs_of(card)["lighteval_mmlu_anatomy_5"] == [
        "2025_11_05T14_43_47.148527",
        "2025_11_06T09_00_00.000001",
        "latest",
    ]
    assert "# Evaluation run of org/tiny-model" in card  # the model named in the newest results
    assert f"latest results from run {D2}" in card
    # the newest results file was downloaded (there is no results parquet: no results config)
    assert "results" not in configs_of(card)
    downloads = [r for r in loopback_hub.requests[requests_before:] if "/resolve/" in r.path]
    assert {r.path.rsplit("/", 1)[-1] for r in downloads} == {f"results_{D2}.json"}


def test_the_methods_use_the_enabled_hub_sinks_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(
        tmp_path,
        monkeypatch,
        sinks=["local", "hub"],
        hub_results_org=ORG,
        sink_config={"hub": {"token": "hf_sinkToken"}},
    )
    tracker.push_results_to_hub(f"{ORG}/results", "results.json")
    tokens = {r.token for r in loopback_hub.requests if "/results/" in r.path}
    assert tokens == {"hf_sinkToken"}


def test_other_ranks_do_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    tracker = saved_tracker(tmp_path, monkeypatch)
    monkeypatch.setenv("RANK", "3")
    assert tracker.push_results_to_hub(f"{ORG}/results", "results.json") is None
    assert tracker.push_details_to_hub(f"{ORG}/details", tmp_path / f"details/{MODEL}/{D1}") is None
    assert tracker.recreate_metadata_card(f"{ORG}/details") is None
    assert loopback_hub.requests == []


@pytest.mark.parametrize(
    ("method", "arguments"),
    [
        ("push_results_to_hub", ("o/r", "results.json")),
        ("push_details_to_hub", ("o/r", "details")),
        ("recreate_metadata_card", ("o/r",)),
    ],
)
def test_without_evalsink_hub_the_methods_say_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, method: str, arguments: tuple[str, ...]
) -> None:
    tracker = EvaluationTracker(tmp_path)
    for name in [m for m in sys.modules if m.split(".")[0] == "evalsink_hub"]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "evalsink_hub", None)  # what an uninstalled package looks like

    with pytest.raises(SinkNotInstalledError) as raised:
        getattr(tracker, method)(*arguments)
    assert str(raised.value) == f"{method} needs the hub sink: {install_hint('hub')}"
