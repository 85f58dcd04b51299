"""The hub sink end to end against the loopback Hub: what one save() commits, read back from the server.

Each test runs a real tracker (local + hub sinks) on a tiny lighteval-shaped evaluation, then
reads the repository back from the loopback server: its commits, its files (compared byte for
byte with the local sink's, parquet read with pyarrow) and its card (parsed by huggingface_hub's
DatasetCard, loaded by datasets).
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from huggingface_hub import DatasetCard
from loopback_hub import LoopbackHub
from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker, SaveReport
from evalsink.paths import task_file_part

ORG = "evalsink-org"
MODEL = "org/tiny-model"  # what log_accuracy_samples logs
PRIVATE_REPO = f"{ORG}/details_org__tiny-model_private"
PUBLIC_REPO = f"{ORG}/details_org__tiny-model"
D1 = "2025-11-05T14-43-47.148527"
D2 = "2025-11-06T09-00-00.000001"
S1, S2 = "2025_11_05T14_43_47.148527", "2025_11_06T09_00_00.000001"
ANATOMY = "lighteval|mmlu:anatomy|5"
ARC = "leaderboard|arc:challenge|25"
PLAIN = "custom|plain|0"
SAMPLES = {ANATOMY: [1.0, 0.0], ARC: [1.0, 1.0, 0.0], PLAIN: [0.25, 0.75]}
FAST = {"retry_backoff": 0.0, "timeout": 10.0}


def evaluate(
    output: Path,
    monkeypatch: pytest.MonkeyPatch,
    date_id: str = D1,
    samples: dict[str, list[float]] | None = None,
    *,
    hub: dict[str, Any] | None = None,
    local: dict[str, Any] | None = None,
    **tracker_options: Any,
) -> SaveReport:
    """One evaluation saved on ``date_id`` with the local and hub sinks."""
    monkeypatch.setattr("evalsink.tracker.new_date_id", lambda: date_id)
    tracker_options.setdefault("sinks", ["local", "hub"])
    tracker_options.setdefault("hub_results_org", ORG)
    sink_config = {"hub": {**FAST, **(hub or {})}, **({"local": local} if local else {})}
    tracker = EvaluationTracker(output, sink_config=sink_config, **tracker_options)
    log_accuracy_samples(tracker, samples or SAMPLES)
    return tracker.save()


def local_files(output: Path, date_id: str, tasks: list[str]) -> dict[str, bytes]:
    """The local sink's files of a run, keyed by their path in the details repository."""
    files = {f"results_{date_id}.json": (output / f"results/{MODEL}/results_{date_id}.json").read_bytes()}
    for task in tasks:
        name = f"details_{task_file_part(task)}_{date_id}.parquet"
        files[f"{date_id}/{name}"] = (output / f"details/{MODEL}/{date_id}/{name}").read_bytes()
    return files


def configs_of(card_text: str) -> dict[str, dict[str, list[str]]]:
    data = DatasetCard(card_text).data.to_dict()
    return {c["config_name"]: {e["split"]: e["path"] for e in c["data_files"]} for c in data["configs"]}


def test_one_save_is_one_commit_with_every_file_and_the_card(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch)

    assert report.ok, str(report)
    initial, commit = loopback_hub.commits(PRIVATE_REPO)
    assert initial.summary == "initial commit"
    assert commit.summary == f"Upload evaluation run {D1} of {MODEL}"
    expected = local_files(tmp_path, D1, list(SAMPLES))
    assert sorted(commit.added) == sorted([*expected, f"results_{D1}.parquet", "README.md"])
    assert report["hub"].outputs == [
        f"{loopback_hub.url}/datasets/{PRIVATE_REPO}",
        f"{loopback_hub.url}/datasets/{PRIVATE_REPO}/commit/{commit.oid}",
    ]
    state = loopback_hub.repo(PRIVATE_REPO)
    assert state.private
    assert not state.gated

    files = loopback_hub.files(PRIVATE_REPO)
    for path, data in expected.items():  # byte for byte what the local sink wrote
        assert files[path] == data, path
    for task, values in SAMPLES.items():
        name = f"{D1}/details_{task_file_part(task)}_{D1}.parquet"
        table = pq.read_table(io.BytesIO(files[name]))
        assert table.num_rows == len(values)
        assert [row["acc"] for row in table.column("metric").to_pylist()] == values


def test_the_results_parquet_is_one_row_of_json_columns_like_lightevals(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    evaluate(tmp_path, monkeypatch)

    results = json.loads((tmp_path / f"results/{MODEL}/results_{D1}.json").read_bytes())
    table = pq.read_table(io.BytesIO(loopback_hub.files(PRIVATE_REPO)[f"results_{D1}.parquet"]))
    assert table.num_rows == 1
    assert table.column_names == list(results)
    row = table.to_pylist()[0]
    assert {key: json.loads(value) for key, value in row.items()} == results
    assert results["results"][ANATOMY]["acc"] == 0.5


def test_the_card_parses_and_datasets_loads_each_task_from_the_pushed_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    datasets = pytest.importorskip("datasets")
    evaluate(tmp_path / "out", monkeypatch)

    files = loopback_hub.files(PRIVATE_REPO)
    card = files["README.md"].decode("utf-8")
    configs = configs_of(card)
    assert list(configs) == [
        "results",
        "custom_plain_0",
        "leaderboard_arc_challenge_25",
        "lighteval_mmlu_anatomy_5",
    ]
    for config in configs.values():
        assert list(config) == [S1, "latest"]
    assert f'load_dataset("{PRIVATE_REPO}", "custom_plain_0", split="latest")' in card
    latest_block = card.split("## Latest results")[1].split("```python\n")[1].split("\n```")[0]
    assert json.loads(latest_block)[ANATOMY] == {"acc": 0.5, "acc_stderr": 0.5}

    clone = tmp_path / "clone"  # the repository as datasets would see it
    for path, data in files.items():
        (clone / path).parent.mkdir(parents=True, exist_ok=True)
        (clone / path).write_bytes(data)
    cache = str(tmp_path / "datasets-cache")
    rows = datasets.load_dataset(str(clone), "leaderboard_arc_challenge_25", split="latest", cache_dir=cache)
    assert [row["metric"]["acc"] for row in rows] == SAMPLES[ARC]
    results = datasets.load_dataset(str(clone), "results", split=S1, cache_dir=cache)
    assert json.loads(results[0]["results"])[PLAIN]["acc"] == 0.5


def test_a_second_run_adds_a_split_and_moves_latest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    evaluate(tmp_path, monkeypatch, D1, {ANATOMY: [1.0, 0.0], PLAIN: [0.5]})
    report = evaluate(tmp_path, monkeypatch, D2, {ANATOMY: [1.0, 1.0], ARC: [0.0]})

    assert report.ok, str(report)
    _initial, _first, second = loopback_hub.commits(PRIVATE_REPO)
    assert "README.md" in second.added
    assert not any(path.startswith(D1) for path in second.added)  # earlier runs are not re-sent
    files = loopback_hub.files(PRIVATE_REPO)
    assert {f"results_{D1}.json", f"results_{D2}.json"} <= set(files)

    configs = configs_of(files["README.md"].decode("utf-8"))
    anatomy = f"details_{ANATOMY}"
    assert configs["lighteval_mmlu_anatomy_5"] == {
        S1: [f"{D1}/{anatomy}_{D1}.parquet"],
        S2: [f"{D2}/{anatomy}_{D2}.parquet"],
        "latest": [f"{D2}/{anatomy}_{D2}.parquet"],
    }
    # a task only in the first run keeps it as its latest; a task only in the second has one run
    assert configs["custom_plain_0"] == {
        S1: [f"{D1}/details_{PLAIN}_{D1}.parquet"],
        "latest": [f"{D1}/details_{PLAIN}_{D1}.parquet"],
    }
    assert list(configs["leaderboard_arc_challenge_25"]) == [S2, "latest"]
    assert configs["results"]["latest"] == [f"results_{D2}.parquet"]
    card = files["README.md"].decode("utf-8")
    assert f"latest results from run {D2}" in card
    assert json.loads(card.split("```python\n")[-1].split("\n```")[0])[ANATOMY]["acc"] == 1.0


def test_public_runs_go_to_a_public_repository_without_the_suffix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, public=True)

    assert report.ok, str(report)
    assert loopback_hub.repo(PUBLIC_REPO).exists
    assert not loopback_hub.repo(PUBLIC_REPO).private
    assert not loopback_hub.repo(PRIVATE_REPO).exists


def test_lightevals_push_to_hub_flag_enables_the_sink(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    monkeypatch.setenv("EVALSINK_HUB__RETRY_BACKOFF", "0")
    tracker = EvaluationTracker(tmp_path, push_to_hub=True, hub_results_org=ORG)
    assert tracker.sink_names == ["local", "hub"]
    log_accuracy_samples(tracker, {PLAIN: [1.0]})
    report = tracker.save()

    assert report.ok, str(report)
    added = loopback_hub.commits(PRIVATE_REPO)[-1].added
    assert f"results_{report.date_id}.json" in added
    assert f"{report.date_id}/details_{PLAIN}_{report.date_id}.parquet" in added


def test_the_sinks_own_org_repo_id_and_visibility_win(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(
        tmp_path / "a", monkeypatch, hub_results_org="", hub={"org": "evalsink-tester", "public": True}
    )
    assert report.ok, str(report)
    assert not loopback_hub.repo("evalsink-tester/details_org__tiny-model").private

    report = evaluate(tmp_path / "b", monkeypatch, hub={"repo_id": f"{ORG}/my-evals"})
    assert report.ok, str(report)
    assert loopback_hub.repo(f"{ORG}/my-evals").private
    assert f"results_{D1}.json" in loopback_hub.files(f"{ORG}/my-evals")


def test_without_details_only_the_results_and_card_are_pushed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, save_details=False)

    assert report.ok, str(report)
    added = loopback_hub.commits(PRIVATE_REPO)[-1].added
    assert sorted(added) == sorted([f"results_{D1}.json", f"results_{D1}.parquet", "README.md"])
    card = loopback_hub.files(PRIVATE_REPO)["README.md"].decode("utf-8")
    assert list(configs_of(card)) == ["results"]
    assert 'load_dataset("evalsink-org/details_org__tiny-model_private", "results", split="latest")' in card


def test_a_gated_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, hub={"gated": "manual"})

    assert report.ok, str(report)
    assert loopback_hub.repo(PRIVATE_REPO).gated == "manual"


def test_results_can_go_to_a_separate_repository(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, hub={"results_repo_id": f"{ORG}/results"})

    assert report.ok, str(report)
    results_commit = loopback_hub.commits(f"{ORG}/results")[-1]
    assert sorted(results_commit.added) == [f"{MODEL}/results_{D1}.json", f"{MODEL}/results_{D1}.parquet"]
    assert (
        loopback_hub.files(f"{ORG}/results")[f"{MODEL}/results_{D1}.json"]
        == (tmp_path / f"results/{MODEL}/results_{D1}.json").read_bytes()
    )
    details = loopback_hub.files(PRIVATE_REPO)
    assert not any(path.startswith("results_") for path in details)
    card = details["README.md"].decode("utf-8")
    assert "results" not in configs_of(card)
    assert f"{ORG}/results/blob/main/{MODEL}/results_{D1}.json" in card  # the latest results link there
    assert len(report["hub"].outputs) == 3  # repository, details commit, results commit


def test_a_task_whose_details_the_local_sink_could_not_write_is_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    import evalsink_local.parquet

    original = evalsink_local.parquet.write_details

    def write_details(records: Any, open_file: Any, **options: Any) -> Any:
        if next(iter(records()), {}).get("task_name") == PLAIN:
            raise OSError("disk full")
        return original(records, open_file, **options)

    monkeypatch.setattr(evalsink_local.parquet, "write_details", write_details)
    # the failure is injected into the conversion at save(), so nothing is streamed before it
    report = evaluate(tmp_path, monkeypatch, local={"required": False, "stream_details": False})

    assert report.failed == ["local", "hub"]
    [error] = report["hub"].errors
    assert "details of 1 task(s) were not on disk and were not pushed: custom|plain|0" in error
    commit = loopback_hub.commits(PRIVATE_REPO)[-1]  # everything else was pushed
    assert f"{D1}/details_{ANATOMY}_{D1}.parquet" in commit.added
    assert not any(PLAIN in path for path in commit.added)
    assert report["hub"].outputs[-1].endswith(commit.oid)


def test_without_the_local_sink_there_is_nothing_to_push(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    report = evaluate(tmp_path, monkeypatch, sinks=["hub"])

    assert report.failed == ["hub"]
    assert "enable it too (sinks=['local', 'hub'])" in report["hub"].errors[0]
    assert not loopback_hub.repo(PRIVATE_REPO).exists


def test_other_ranks_push_nothing_and_need_no_token(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, loopback_hub: LoopbackHub
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("EVALSINK_RUN_ID", "shared")
    monkeypatch.delenv("HF_TOKEN")
    report = evaluate(tmp_path, monkeypatch)  # the sink is built (its config checked) without a token

    assert report.ok, str(report)
    assert "hub" not in report.sinks  # rank 0 writes and pushes the merged run (docs/ranks.md)
    assert loopback_hub.requests == []
    assert not (tmp_path / "results").exists()
