"""Crash recovery: a run killed with SIGKILL is rebuilt from its spool and manifest, marked partial.

Children are real interpreters killed with SIGKILL; the parent recovers with the same public
functions ``evalsink recover`` uses, and reads the saved files back with pyarrow.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from core_helpers import run_cli
from evalsink_recorder import CALLS, RecorderConfig
from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from evalsink import EvaluationTracker
from evalsink.errors import EvalsinkError, SinkConfigError
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest
from evalsink.recovery import find_runs, recover_all, recover_run
from evalsink.sink import SinkConfig

TASK = "lighteval|crash:test|0"

CHILD = textwrap.dedent(
    """
    import sys, time
    from evalsink import EvaluationTracker

    output, run_id, then = sys.argv[1], sys.argv[2], sys.argv[5]
    count, flush_every = int(sys.argv[3]), int(sys.argv[4])
    tracker = EvaluationTracker(output, sinks=["local"], run_id=run_id, flush_every=flush_every)
    tracker.general_config_logger.log_model_info({"model_name": "org/crashy", "api_token": "hf_secret_value"})
    tracker.versions_logger.log("TASK", 3)
    for i in range(count):
        doc = {"query": f"q{i}", "choices": ["A", "B"], "gold_index": 0}
        response = {"input": f"prompt {i}", "text": ["A"]}
        tracker.details_logger.log("TASK", doc, response, {"acc": float(i % 2), "index": i})
        tracker.metrics_logger.log("TASK", {"acc": float(i % 2), "index": i})
        if (i + 1) % flush_every == 0:
            print(i + 1, flush=True)  # log() returned after its flush: these samples are on disk
    if then == "save":
        tracker.save()
        print("saved", flush=True)
    time.sleep(600)
    """
).replace("TASK", TASK)


def start_child(tmp_path: Path, run_id: str, count: int, flush_every: int, then: str = "hang") -> Any:
    script = tmp_path / "child.py"
    script.write_text(CHILD, encoding="utf-8")
    return subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "out"), run_id, str(count), str(flush_every), then],
        stdout=subprocess.PIPE,
        text=True,
    )


def kill_after(child: Any, lines: int) -> list[str]:
    """Read ``lines`` lines of the child's output, then SIGKILL it; return what it printed."""
    seen = [child.stdout.readline().strip() for _ in range(lines)]
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    return seen


def details_rows(output: Path) -> list[dict[str, Any]]:
    [path] = output.glob("details/**/details_*.parquet")
    return pq.read_table(path).to_pylist()


def results_json(output: Path) -> dict[str, Any]:
    [path] = output.glob("results/**/results_*.json")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def test_a_killed_run_is_recovered_marked_partial(tmp_path: Path) -> None:
    child = start_child(tmp_path, "crash1", count=10_000, flush_every=10)
    printed = kill_after(child, 3)
    assert printed == ["10", "20", "30"]
    output = tmp_path / "out"
    [run] = find_runs(output)
    assert (run.run_id, run.recoverable) == ("crash1", True)

    report = recover_run(output, "crash1")

    assert report.ok, str(report)
    rows = details_rows(output)
    # everything flushed before the kill, in order, each sample once (the child may have flushed more)
    assert len(rows) >= 30
    assert len(rows) % 10 == 0
    assert [row["doc"]["query"] for row in rows] == [f"q{i}" for i in range(len(rows))]
    results = results_json(output)
    assert results["evalsink_recovery"]["partial"] is True
    assert results["evalsink_recovery"]["samples_recovered"] == len(rows)
    assert results["config_general"]["model_name"] == "org/crashy"
    assert results["versions"] == {TASK: 3}
    assert results["results"][TASK]["acc"] == pytest.approx(0.5)
    assert results["summary_tasks"][TASK]["hashes"]["hash_examples"]
    assert "hf_secret_value" not in json.dumps(results)
    assert find_runs(output) == []  # the spool is gone once the recovered run is saved


def test_a_resumed_run_continues_and_replays_flushed_samples_to_sinks(tmp_path: Path) -> None:
    child = start_child(tmp_path, "crash2", count=10_000, flush_every=5)
    kill_after(child, 2)
    output = tmp_path / "out"
    CALLS.clear()
    tracker = EvaluationTracker(
        output, sinks=["local", "recorder"], run_id="crash2", resume=True, flush_every=5
    )
    recovered = tracker.recovery["samples_recovered"] if tracker.recovery else 0
    assert recovered >= 10
    tracker.details_logger.log(
        "custom|after|0", {"query": "new"}, {"input": "new", "text": ["x"]}, {"acc": 1.0}
    )
    tracker.metrics_logger.log("custom|after|0", {"acc": 1.0})
    report = tracker.save()

    assert report.ok, str(report)
    batches = [info for label, hook, info in CALLS if hook == "details_batch"]
    assert sum(batch["size"] for batch in batches) == recovered + 1
    queries = [query for batch in batches for query in batch["queries"]]
    assert queries == [f"q{i}" for i in range(recovered)] + ["new"]
    results = results_json(output)
    assert sorted(results["results"]) == sorted([TASK, "custom|after|0", "all"])
    assert results["evalsink_recovery"].get("partial") is None


def test_the_manifest_follows_the_run_and_is_removed_with_the_spool(tmp_path: Path) -> None:
    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="m1", flush_every=2)
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(3):
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"input": "p"}, {"acc": 1.0})
    path = manifest_path(tracker.details_logger.spool.path)
    manifest = read_manifest(path)
    assert manifest is not None
    assert (manifest.run_id, manifest.state, manifest.pid) == ("m1", RunState.RUNNING, os.getpid())
    assert manifest.config_general["model_name"] == "org/m"
    tracker.save()
    assert not path.exists()
    assert not (tmp_path / ".evalsink").exists()


def test_a_failed_run_keeps_spool_and_manifest_for_recovery(tmp_path: Path) -> None:
    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="f1")

    def crashing_evaluation() -> None:
        with tracker:
            tracker.details_logger.log(TASK, {"query": "q"}, {"input": "p"}, {"acc": 1.0})
            raise RuntimeError("evaluation crashed")

    with pytest.raises(RuntimeError):
        crashing_evaluation()
    manifest = read_manifest(manifest_path(tracker.details_logger.spool.path))
    assert manifest is not None
    assert manifest.state is RunState.FAILED
    assert recover_all(tmp_path)["f1"].ok
    assert results_json(tmp_path)["evalsink_recovery"]["partial"] is True


def test_a_live_run_is_not_recovered(tmp_path: Path) -> None:
    child = start_child(tmp_path, "alive", count=20, flush_every=10, then="hang")
    try:
        assert child.stdout.readline().strip() == "10"
        assert child.stdout.readline().strip() == "20"
        with pytest.raises(EvalsinkError, match="still being written by process"):
            recover_run(tmp_path / "out", "alive")
        assert recover_all(tmp_path / "out") == {}
    finally:
        child.kill()
        child.wait(timeout=30)
    assert recover_run(tmp_path / "out", "alive").ok


def test_clear_errors_for_missing_or_ambiguous_runs(tmp_path: Path) -> None:
    with pytest.raises(EvalsinkError, match="no run 'nope' to resume"):
        EvaluationTracker(tmp_path, sinks=["local"], run_id="nope", resume=True)
    with pytest.raises(EvalsinkError, match="no run 'nope' to recover"):
        recover_run(tmp_path, "nope")
    folder = tmp_path / ".evalsink" / "runs" / "two"
    folder.mkdir(parents=True)
    for name in ("details-a.jsonl", "details-b.jsonl"):
        (folder / name).write_bytes(
            b'{"task_name": "t|x|0", "doc": {}, "model_response": {}, "metric": {}}\n'
        )
    with pytest.raises(EvalsinkError, match="has 2 spools"):
        EvaluationTracker(tmp_path, sinks=["local"], run_id="two", resume=True)


@pytest.mark.slow
def test_sigkill_at_random_moments_never_loses_flushed_samples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill a child that logs and saves at seeded random moments; check files and recovery each time.

    Row groups of 50 rows, so the local sink's streaming conversion writes staged files while the
    child logs: kills land in it too, and recovery must not mind what a dead process staged.
    """
    monkeypatch.setenv("EVALSINK_LOCAL__ROW_GROUP_SIZE", "50")
    rng = random.Random(20261127)
    for attempt in range(8):
        workdir = tmp_path / f"attempt{attempt}"
        workdir.mkdir()
        child = start_child(workdir, f"r{attempt}", count=400, flush_every=7, then="save")
        deadline = time.monotonic() + rng.uniform(0.3, 2.5)
        printed: list[str] = []
        while time.monotonic() < deadline:
            line = child.stdout.readline().strip()
            if not line:
                break
            printed.append(line)
            if line == "saved":
                break
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        output = workdir / "out"
        for path in output.rglob("*"):  # no torn file under a final name
            if path.suffix == ".parquet":
                pq.read_metadata(path)
            elif path.suffix == ".json" and ".evalsink" not in path.parts:
                json.loads(path.read_text(encoding="utf-8"))
        flushed = max((int(line) for line in printed if line.isdigit()), default=0)
        if "saved" in printed:
            assert len(details_rows(output)) == 400
            continue
        if not find_runs(output):
            continue  # killed before the first flush created the spool
        # a save cut short may have left results files: recovery writes its own date's files
        recover_all(output)
        newest = max(output.glob("details/**/details_*.parquet"), key=lambda p: p.stat().st_mtime)
        rows = pq.read_table(newest).to_pylist()
        assert len(rows) >= flushed
        assert [row["doc"]["query"] for row in rows] == [f"q{i}" for i in range(len(rows))]
        assert find_runs(output) == []
        assert not (output / ".evalsink").exists()  # spool and staged files of the dead child gone


def test_the_recover_command(tmp_path: Path) -> None:
    child = start_child(tmp_path, "cli1", count=10_000, flush_every=10)
    kill_after(child, 1)
    output = tmp_path / "out"

    listed = run_cli("recover", str(output), "--list", "--json")
    assert listed.returncode == 0, listed.stderr
    [run] = json.loads(listed.stdout)["runs"]
    assert (run["run_id"], run["state"], run["recoverable"]) == ("cli1", "running", True)
    as_text = run_cli("recover", str(output), "--list")
    assert as_text.stdout.strip() == "cli1: stopped before save() (its process is gone); recoverable"

    missing = run_cli("recover", str(output), "--run-id", "nope")
    assert missing.returncode == 2
    assert missing.stderr.strip() == (
        f"evalsink: error: no run 'nope' to recover in {output}/.evalsink/runs; a run leaves that folder "
        f"once saved or recovered: `evalsink show {output}` lists saved runs"
    )

    done = run_cli("recover", str(output), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)["recovered"]["cli1"]
    assert report["ok"]
    assert report["sinks"]["local"]["outputs"]
    assert results_json(output)["evalsink_recovery"]["partial"] is True

    again = run_cli("recover", str(output))
    assert (again.returncode, again.stdout.strip()) == (0, "no run to recover")

    a_file = tmp_path / "results.json"
    a_file.write_text("{}", encoding="utf-8")
    for path, why in [(a_file, "a file, not an output folder"), (tmp_path / "nowhere", "no such folder")]:
        wrong = run_cli("recover", str(path))
        assert (wrong.returncode, wrong.stderr) == (2, f"evalsink: error: {path}: {why}\n")


def test_the_recover_command_exits_1_when_a_sink_fails(tmp_path: Path) -> None:
    child = start_child(tmp_path, "cli2", count=10_000, flush_every=10)
    kill_after(child, 1)
    done = run_cli("recover", str(tmp_path / "out"), "--to", "local,flaky")
    assert done.returncode == 1
    assert "flaky: failed" in done.stdout
    assert "local: ok" in done.stdout


def save_blocked(
    tmp_path: Path, folder: str, run_id: str, samples: int = 3, acc: float = 1.0
) -> EvaluationTracker:
    """Log ``samples`` samples, then save with a file where the local sink's ``folder`` (results
    or details) should be: save() fails after choosing its date id. The caller removes the file."""
    (tmp_path / folder).write_text(f"a file where the {folder} folder should be", encoding="utf-8")
    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id=run_id)
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(samples):
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"input": "p"}, {"acc": 1.0})
        tracker.metrics_logger.log(TASK, {"acc": acc})
    with pytest.raises(EvalsinkError):  # local is required by default: its failure fails save()
        tracker.save()
    return tracker


def test_a_run_whose_local_files_failed_is_recovered_whole(tmp_path: Path) -> None:
    tracker = save_blocked(tmp_path, "results", "nolocal")
    manifest = read_manifest(manifest_path(tracker.details_logger.spool.path))
    assert manifest is not None
    assert manifest.state is RunState.FAILED  # not "saved": the local files were not written
    assert manifest.date_id is not None  # but save() began: every sample was flushed
    (tmp_path / "results").unlink()
    assert recover_all(tmp_path)["nolocal"].ok
    recovered = results_json(tmp_path)["evalsink_recovery"]
    assert (recovered["partial"], recovered["samples_recovered"]) == (False, 3)


def results_files(output: Path) -> list[Path]:
    return sorted(output.glob("results/**/results_*.json"))


def test_a_run_whose_details_failed_after_its_results_is_recovered_under_the_same_date(
    tmp_path: Path,
) -> None:
    """On local disk the results file is written before the details: recovering must not add a
    second results file for the run, nor replace the evaluation's aggregated results with means."""
    # acc 0.25 stands for a task's own aggregation, which recovery cannot recompute from the samples
    tracker = save_blocked(tmp_path, "details", "nodetails", acc=0.25)
    [published] = results_files(tmp_path)
    first_date = tracker.run.date_id
    assert published.name == f"results_{first_date}.json"
    (tmp_path / "details").unlink()

    report = recover_run(tmp_path, "nodetails")

    assert report.ok, str(report)
    assert report.date_id == first_date
    assert results_files(tmp_path) == [published]
    assert [row["doc"]["query"] for row in details_rows(tmp_path)] == ["q0", "q1", "q2"]
    results = results_json(tmp_path)
    assert results["results"][TASK]["acc"] == 0.25
    recovered = results["evalsink_recovery"]
    assert (recovered["partial"], recovered["samples_recovered"]) == (False, 3)
    assert find_runs(tmp_path) == []


KILLED_IN_SAVE = textwrap.dedent(
    """
    import os, signal, sys
    import evalsink_local
    from evalsink import EvaluationTracker

    tracker = EvaluationTracker(sys.argv[1], sinks=["local"], run_id="killed-in-save", flush_every=7)
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(20):
        tracker.details_logger.log("TASK", {"query": f"q{i}"}, {"input": "p"}, {"acc": float(i % 2)})
        tracker.metrics_logger.log("TASK", {"acc": float(i % 2)})
    if sys.argv[2] == "date-id-first":  # the order recovery needs: the date id on disk before any file
        results_saved = tracker._manager.results_saved

        def record_the_date_id_first(run, results):
            tracker._write_manifest()
            results_saved(run, results)

        tracker._manager.results_saved = record_the_date_id_first
    # killed once the results file is published, before any details file is
    evalsink_local.LocalSink._write_details = lambda *args: os.kill(os.getpid(), signal.SIGKILL)
    tracker.save()
    """
).replace("TASK", TASK)


def kill_in_save(tmp_path: Path, order: str) -> Path:
    script = tmp_path / "killed_in_save.py"
    script.write_text(KILLED_IN_SAVE, encoding="utf-8")
    output = tmp_path / "out"
    child = subprocess.run([sys.executable, str(script), str(output), order], check=False, timeout=120)
    assert child.returncode == -signal.SIGKILL
    return output


def test_a_run_killed_between_its_results_and_details_is_recovered_under_the_same_date(
    tmp_path: Path,
) -> None:
    output = kill_in_save(tmp_path, "date-id-first")
    [published] = results_files(output)
    assert list(output.glob("details/**/*.parquet")) == []
    [manifest] = find_runs(output)[0].manifests
    assert manifest is not None
    assert published.name == f"results_{manifest.date_id}.json"

    report = recover_run(output, "killed-in-save")

    assert report.ok, str(report)
    assert report.date_id == manifest.date_id
    assert results_files(output) == [published]
    assert [row["doc"]["query"] for row in details_rows(output)] == [f"q{i}" for i in range(20)]
    recovered = results_json(output)["evalsink_recovery"]
    assert (recovered["partial"], recovered["samples_recovered"]) == (False, 20)


def test_the_manifest_records_the_date_id_before_the_results_file_is_published(tmp_path: Path) -> None:
    output = kill_in_save(tmp_path, "as-is")
    [published] = results_files(output)
    [manifest] = find_runs(output)[0].manifests
    assert manifest is not None
    assert published.name == f"results_{manifest.date_id}.json"
    listed = run_cli("recover", str(output), "--list")  # not "before save()": a results file exists
    assert listed.stdout.strip() == "killed-in-save: stopped during save() (its process is gone); recoverable"


def test_a_published_results_file_that_is_not_json_is_named(tmp_path: Path) -> None:
    """Recovery republishes a run under the date id of its results file, which it reads: a file
    edited or damaged since fails with its name and what to do, not a bare decode error."""
    save_blocked(tmp_path, "details", "damaged", samples=1)
    [published] = results_files(tmp_path)
    published.write_text('{"results": {', encoding="utf-8")
    (tmp_path / "details").unlink()
    with pytest.raises(
        EvalsinkError, match=rf"published {published}, which is not valid JSON .*delete that file"
    ):
        recover_run(tmp_path, "damaged")


def test_a_run_is_recovered_with_its_own_sink_options(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manifest keeps the options the user set (never secrets): a run with its details in a
    folder of its own and zstd files was recovered to the default place, with snappy."""
    options = {"details_path_template": "{output_dir}/my-details/{model}", "compression": "zstd"}
    tracker = EvaluationTracker(tmp_path, sinks=["local"], run_id="opts", sink_config={"local": options})
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(10):
        tracker.details_logger.log(TASK, {"query": f"q{i}"}, {"input": "p"}, {"acc": 1.0})
        tracker.metrics_logger.log(TASK, {"acc": 1.0})
    tracker.close(RuntimeError("the evaluation crashed"))
    [manifest] = find_runs(tmp_path)[0].manifests
    assert manifest is not None
    assert manifest.sink_options == {"local": options}

    monkeypatch.setenv("EVALSINK_LOCAL__ROW_GROUP_SIZE", "7")  # the environment still has its say
    assert recover_run(tmp_path, "opts").ok
    [details] = (tmp_path / "my-details").glob("m/*/details_*.parquet")  # {model}: the part after org/
    metadata = pq.ParquetFile(details).metadata
    assert metadata.row_group(0).column(0).compression == "ZSTD"
    assert [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)] == [7, 3]
    assert not (tmp_path / "details").exists()


def test_an_option_the_sink_no_longer_has_is_left_out_of_the_recovery(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A sink upgraded between the run and its recovery may have dropped an option the manifest
    kept: that stored value is left out with a warning, not an "unknown option" that only editing
    the manifest could get past."""
    tracker = EvaluationTracker(
        tmp_path, sinks=["local"], run_id="upgraded", sink_config={"local": {"compression": "zstd"}}
    )
    tracker.details_logger.log(TASK, {"query": "q"}, {"input": "p"}, {"acc": 1.0})
    tracker.metrics_logger.log(TASK, {"acc": 1.0})
    tracker.close(RuntimeError("the evaluation crashed"))
    [spool] = find_runs(tmp_path)[0].spools
    path = manifest_path(spool)
    stored = json.loads(path.read_text(encoding="utf-8"))
    stored["sink_options"]["local"]["renamed_since"] = 3
    path.write_text(json.dumps(stored), encoding="utf-8")

    with caplog.at_level("WARNING", logger="evalsink"):
        assert recover_run(tmp_path, "upgraded").ok
    assert "no longer has the option(s) renamed_since" in caplog.text
    [details] = tmp_path.glob("details/**/*.parquet")
    assert pq.ParquetFile(details).metadata.row_group(0).column(0).compression == "ZSTD"


def test_an_infinite_option_is_stored_as_infinite() -> None:
    """JSON has no inf: stored as a number, ``hook_timeout: inf`` (wait forever on the sink's
    thread) came back from the manifest as null (call the sink inline)."""
    import orjson

    from evalsink.config import build_config, public_options
    from evalsink.sink import SinkConfig

    config = build_config("t", SinkConfig, {"hook_timeout": float("inf")}, environ={})
    stored = orjson.loads(orjson.dumps(public_options(config)))
    assert build_config("t", SinkConfig, stored, environ={}).hook_timeout == float("inf")


def test_a_secret_inside_a_dataclass_option_is_not_stored_masked() -> None:
    """The type checks do not look inside dataclasses: the option dumped as ``'**********'`` and a
    recovery handed the sink that text as its password."""
    import dataclasses

    from evalsink.config import build_config, public_options
    from evalsink.sink import SinkConfig

    @dataclasses.dataclass
    class Creds:
        user: str
        password: SecretStr

    class WithCreds(SinkConfig):
        auth: Creds | None = None
        project: str = "p"

    config = build_config("dc", WithCreds, {"auth": Creds("me", SecretStr("PW")), "project": "q"}, environ={})
    assert public_options(config) == {"project": "q"}


def test_secret_options_are_never_stored() -> None:

    from evalsink.config import build_config, public_options
    from evalsink.sink import SinkConfig

    class WithToken(SinkConfig):
        token: SecretStr | None = None
        project: str = "p"
        tags: list[str] = []  # noqa: RUF012 - pydantic copies defaults

    config = build_config("tok", WithToken, {"token": "hf_secret", "tags": ["a"]}, environ={})
    assert public_options(config) == {"tags": ["a"]}  # set, not secret; defaults left to the sink


def test_options_without_a_json_form_are_not_stored_and_do_not_stop_the_tracker() -> None:
    from pydantic import ConfigDict

    from evalsink.config import build_config, public_options
    from evalsink.sink import SinkConfig

    class Client:
        pass

    class WithClient(SinkConfig):
        model_config = ConfigDict(arbitrary_types_allowed=True)
        client: Client | None = None
        name: str = "x"

    config = build_config("cl", WithClient, {"client": Client(), "name": "y"}, environ={})
    assert public_options(config) == {"name": "y"}


class _Auth(BaseModel):
    model_config = ConfigDict(extra="forbid")
    user: str
    password: SecretStr


class _AuditedRecorderConfig(RecorderConfig):
    """The recorder's config with a nested secret, a URL option and a list; every instance built
    is kept in ``BUILT``, so a test sees the config a recovered sink got."""

    auth: _Auth | None = None
    endpoint: str | None = None
    tags: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _keep(self) -> _AuditedRecorderConfig:
        BUILT.append(self)
        return self


BUILT: list[_AuditedRecorderConfig] = []


@pytest.fixture
def audited_recorder(monkeypatch: pytest.MonkeyPatch) -> list[_AuditedRecorderConfig]:
    import evalsink_recorder

    monkeypatch.setattr(evalsink_recorder.RecorderSink, "config_model", _AuditedRecorderConfig)
    BUILT.clear()
    return BUILT


def killed_run(output: Path, run_id: str, recorder: dict[str, Any]) -> RunManifest:
    """A run of the local and recorder sinks that crashed after one flushed sample; its manifest."""
    tracker = EvaluationTracker(
        output, sinks=["local", "recorder"], run_id=run_id, sink_config={"recorder": recorder}
    )
    tracker.details_logger.log(TASK, {"query": "q"}, {"input": "p"}, {"acc": 1.0})
    tracker.metrics_logger.log(TASK, {"acc": 1.0})
    tracker.close(RuntimeError("the evaluation crashed"))
    [manifest] = find_runs(output)[0].manifests
    assert manifest is not None
    return manifest


def test_options_holding_a_secret_anywhere_are_never_stored(caplog: pytest.LogCaptureFixture) -> None:
    """A nested secret was stored as '**********', which the recovery then gave the sink as its password."""
    from evalsink.config import build_config, public_options

    class Pair(BaseModel):
        name: str
        key: SecretStr | None = None

    class Deep(SinkConfig):
        pairs: list[Pair] = Field(default_factory=list)
        anything: dict[str, Any] = Field(default_factory=dict)
        label: str = "x"

    options = {
        "pairs": [{"name": "a"}],  # no secret given, but its type holds one: the env gives it again
        "anything": {"inner": SecretStr("ANY_PW")},
        "label": "y",
    }
    with caplog.at_level("INFO", logger="evalsink"):
        assert public_options(build_config("deep", Deep, options, environ={})) == {"label": "y"}
    assert "option 'anything' is not kept for recovery: it holds a secret" in caplog.text
    assert "option 'pairs' is not kept" in caplog.text


def test_options_with_a_credential_in_their_value_are_not_stored(caplog: pytest.LogCaptureFixture) -> None:
    """A URL's password in a plain ``str`` option was written to the manifest in clear text."""
    from evalsink.config import build_config, public_options

    class Remote(SinkConfig):
        endpoint: str | None = None
        model_args: str = ""
        headers: dict[str, str] = Field(default_factory=dict)
        mirror: str | None = None
        api_key: str | None = None  # should be a SecretStr; its name says what it holds

    options = {
        "api_key": "NAMED_PW",
        "endpoint": "http://alice:URL_PW@host/api",
        "model_args": "pretrained=m,api_key=ARGS_PW",
        "headers": {"Authorization": "Bearer HEADER_PW"},
        "mirror": "https://alice@host/api",  # a user without a password is no credential
    }
    with caplog.at_level("INFO", logger="evalsink"):
        assert public_options(build_config("remote", Remote, options, environ={})) == {
            "mirror": "https://alice@host/api"
        }
    assert "option 'endpoint' is not kept for recovery: its value holds a credential" in caplog.text
    assert "_PW" not in caplog.text


def test_secrets_left_out_of_the_manifest_come_from_the_environment_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audited_recorder: list[_AuditedRecorderConfig]
) -> None:
    auth = {"user": "me", "password": "NESTED_PW"}
    url = "http://alice:URL_PW@host/api"
    manifest = killed_run(tmp_path, "secrets", {"auth": auth, "endpoint": url, "label": "mine"})
    assert manifest.sink_options["recorder"] == {"label": "mine"}
    [meta] = (tmp_path / ".evalsink").glob("runs/secrets/*.meta.json")
    stored = meta.read_text(encoding="utf-8")
    assert "NESTED_PW" not in stored
    assert "URL_PW" not in stored
    assert "**********" not in stored

    monkeypatch.setenv("EVALSINK_RECORDER__AUTH", json.dumps(auth))
    monkeypatch.setenv("EVALSINK_RECORDER__ENDPOINT", url)
    audited_recorder.clear()
    assert recover_run(tmp_path, "secrets", sinks=("local", "recorder")).ok
    [config] = audited_recorder
    assert config.auth is not None
    assert config.auth.password.get_secret_value() == "NESTED_PW"
    assert (config.endpoint, config.label) == (url, "mine")


def test_the_recovery_reads_the_environment_as_a_run_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, audited_recorder: list[_AuditedRecorderConfig]
) -> None:
    """The recovery merged the raw ``EVALSINK_<SINK>__*`` strings into the config itself: a JSON
    list was refused, and a bad value was named as an option, not as the variable that set it."""
    killed_run(tmp_path, "envrun", {"tags": ["stored"], "label": "stored"})
    monkeypatch.setenv("EVALSINK_RECORDER__TAGS", '["x", "y"]')
    monkeypatch.setenv("EVALSINK_RECORDER__LABEL", "from-env")
    monkeypatch.setenv("EVALSINK_LOCAL__ROW_GROUP_SIZE", "abc")
    with pytest.raises(SinkConfigError, match=r"EVALSINK_LOCAL__ROW_GROUP_SIZE='abc': Input should be"):
        recover_run(tmp_path, "envrun", sinks=("local", "recorder"))

    monkeypatch.delenv("EVALSINK_LOCAL__ROW_GROUP_SIZE")
    audited_recorder.clear()
    given = {"recorder": {"label": "given"}}
    assert recover_run(tmp_path, "envrun", sinks=("local", "recorder"), sink_config=given).ok
    [config] = audited_recorder
    assert (config.tags, config.label) == (["x", "y"], "given")  # stored < environment < given
