"""Regressions of `evalsink recover`, `evalsink push`, `evalsink new-sink` and environment configs.

Each test names what the command did before: a recovery to no sink that deleted the run's only
copy, a push that said ok without a task's details or ended in a pyarrow traceback, a malformed
JSON variable that became junk values, a "next:" command that broke on a folder with spaces.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from core_helpers import Calls, run_cli
from pydantic import Field, field_validator

from evalsink import EvaluationTracker
from evalsink.config import build_config
from evalsink.errors import EvalsinkError, SinkConfigError
from evalsink.recovery import RecoveryError, find_runs, recover_all, recover_run, recover_runs
from evalsink.replay import replay_run, saved_runs
from evalsink.sink import SinkConfig

TASKS = {"custom|alpha|0": 3, "custom|beta|0": 2}


def kill_run(output: Path, run_id: str) -> None:
    """A run whose evaluation raised: its spool, the only copy of its samples, stays for recover."""
    tracker = EvaluationTracker(output, sinks=["local"], run_id=run_id, flush_every=1)

    def evaluation() -> None:
        with tracker:
            tracker.general_config_logger.log_model_info(model_name="org/killed")
            for i in range(3):
                tracker.details_logger.log("custom|arith|0", {"query": f"q{i}"}, {"text": ["a"]}, {"em": 1.0})
                tracker.metrics_logger.log("custom|arith|0", {"em": 1.0})
            raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        evaluation()


def spools(output: Path) -> list[Path]:
    return sorted((output / ".evalsink" / "runs").glob("*/details-*.jsonl"))


def save_run(output: Path, *, save_details: bool = True) -> Path:
    """A run of TASKS saved by the local sink; the folder of its details files."""
    tracker = EvaluationTracker(output, sinks=["local"], save_details=save_details)
    tracker.general_config_logger.log_model_info(model_name="org/pushed")
    for task, count in TASKS.items():
        for i in range(count):
            tracker.details_logger.log(task, {"query": f"{task} q{i}"}, {"text": ["a"]}, {"acc": 1.0})
            tracker.metrics_logger.log(task, {"acc": 1.0})
    report = tracker.save()
    assert report.ok, str(report)
    return output / "details" / "org" / "pushed" / str(report.date_id)


def details_file(folder: Path, task: str) -> Path:
    [path] = folder.glob(f"details_{task}_*.parquet")
    return path


# -- 1. recover to no sink ------------------------------------------------------------------------
@pytest.mark.parametrize("to", ["", ",", " , "])
def test_recover_to_no_sink_is_a_usage_error_and_keeps_the_spool(tmp_path: Path, to: str) -> None:
    """`--to ''` said "ok", exited 0, wrote nothing and deleted the spool: the run was lost."""
    kill_run(tmp_path, "r1")
    before = spools(tmp_path)
    assert before

    done = run_cli("recover", str(tmp_path), "--to", to)

    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith("evalsink: error: Invalid value for '--to': no sink to recover to")
    assert done.stderr.count("\n") == 1
    assert done.stdout == ""
    assert spools(tmp_path) == before
    assert not (tmp_path / "results").exists()


def test_recover_to_an_unknown_sink_is_refused_before_any_run_is_touched(tmp_path: Path) -> None:
    kill_run(tmp_path, "r1")
    done = run_cli("recover", str(tmp_path), "--to", "local,no-such-sink")
    assert done.returncode == 2
    assert done.stderr.startswith("evalsink: error: sink 'no-such-sink' is not installed")
    assert [run.run_id for run in find_runs(tmp_path)] == ["r1"]
    listed = run_cli("recover", str(tmp_path), "--list", "--to", "")  # --list recovers nothing
    assert listed.returncode == 0, listed.stderr


def test_recovery_functions_refuse_no_sink(tmp_path: Path) -> None:
    kill_run(tmp_path, "r1")
    with pytest.raises(EvalsinkError, match="no sink to recover to"):
        recover_run(tmp_path, "r1", sinks=())
    with pytest.raises(EvalsinkError, match="no sink to recover to") as raised:
        recover_all(tmp_path, sinks=[])
    assert not isinstance(raised.value, RecoveryError)  # refused once, not as each run's failure
    with pytest.raises(EvalsinkError, match="no sink to recover to"):
        recover_runs(tmp_path, find_runs(tmp_path), sinks=[])
    assert [run.run_id for run in find_runs(tmp_path)] == ["r1"]
    assert recover_run(tmp_path, "r1", sinks=["local"]).ok  # still there to recover


# -- 6. "not recovered" names the run -------------------------------------------------------------
def test_a_run_not_recovered_is_named(tmp_path: Path) -> None:
    """The sink's error alone ("sink 'local': invalid config: ...") did not say which run failed."""
    kill_run(tmp_path, "r-bad-env")
    done = run_cli("recover", str(tmp_path), env={"EVALSINK_LOCAL__COMPRESSION": "bad"})
    assert done.returncode == 1
    assert "not recovered: run 'r-bad-env': sink 'local': invalid config: " in done.stdout


# -- 2. corrupt details parquet -------------------------------------------------------------------
def test_push_of_a_corrupt_details_file_is_one_line_naming_it(tmp_path: Path, calls: Calls) -> None:
    """pyarrow's traceback (exit code 1) was all the user got."""
    broken = details_file(save_run(tmp_path), "custom|beta|0")
    broken.write_bytes(b"garbage\n")

    for extra in ([], ["--quiet"]):  # the progress bar counts rows first; --quiet does not
        done = run_cli("push", str(tmp_path), "--to", "recorder-remote", *extra)
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith(f"evalsink: error: {broken}: not a readable details parquet file (")
        assert done.stderr.count("\n") == 1
        assert "Traceback" not in done.stderr

    [saved] = saved_runs(tmp_path)
    with pytest.raises(EvalsinkError, match="not a readable details parquet file"):
        saved.count_rows()
    with pytest.raises(EvalsinkError, match="not a readable details parquet file"):
        replay_run(saved, ["recorder"])
    assert calls.of("run_started") == []  # refused before the sinks heard of the run


def test_push_of_a_file_corrupt_past_its_footer_names_it(tmp_path: Path) -> None:
    """A readable footer but a broken page: the error comes while the rows are read."""
    broken = details_file(save_run(tmp_path), "custom|alpha|0")
    data = bytearray(broken.read_bytes())
    data[4:60] = b"\xff" * 56  # the first page header, after the magic bytes
    broken.write_bytes(bytes(data))

    done = run_cli("push", str(tmp_path), "--to", "recorder-remote", "--quiet")
    assert done.returncode == 2, done.stderr
    assert done.stderr.startswith(f"evalsink: error: {broken}: not a readable details parquet file (")
    assert done.stderr.count("\n") == 1


# -- 3. missing details parquet -------------------------------------------------------------------
def test_push_refuses_a_run_missing_a_tasks_details_file(tmp_path: Path, calls: Calls) -> None:
    """The task was dropped silently and the push said ok."""
    folder = save_run(tmp_path)
    details_file(folder, "custom|beta|0").unlink()

    done = run_cli("push", str(tmp_path), "--to", "recorder-remote", "--quiet")
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.startswith(f"evalsink: error: {folder}: no details file for task(s) 'custom|beta|0'")
    assert done.stdout == ""

    [saved] = saved_runs(tmp_path)
    with pytest.raises(EvalsinkError, match=r"no details file for task\(s\) 'custom\|beta\|0'"):
        replay_run(saved, ["recorder"])
    assert calls.all == []  # nothing pushed


def test_a_run_saved_without_details_still_pushes_its_results(tmp_path: Path, calls: Calls) -> None:
    save_run(tmp_path, save_details=False)
    assert not (tmp_path / "details").exists()
    [saved] = saved_runs(tmp_path)
    report = replay_run(saved, ["recorder"])
    assert report.ok, str(report)
    assert calls.of("details_batch") == []
    assert calls.of("results_saved")[0]["tasks"] == sorted([*TASKS, "all"])
    done = run_cli("push", str(tmp_path), "--to", "recorder-remote", "--quiet")
    assert done.returncode == 0, done.stderr
    assert "recorder-remote: ok" in done.stdout


# -- 4. malformed JSON in a list or dict variable -------------------------------------------------
class _Tagged(SinkConfig):
    tags: list[str] = Field(default_factory=list)
    headers: dict[str, str] = Field(default_factory=dict)
    title: str | list[str] = ""

    @field_validator("tags", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        """As the wandb sink's tags: ``a,b`` split on commas."""
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value


@pytest.mark.parametrize("text", ['["nightly", "7b",]', "['nightly', '7b']", "[nightly, 7b]"])
def test_a_list_variable_that_is_not_json_is_an_error_naming_it(text: str) -> None:
    """It became the tags ['["nightly"', '"7b"', ']'], without a word."""
    with pytest.raises(SinkConfigError) as raised:
        build_config("box", _Tagged, None, {"EVALSINK_BOX__TAGS": text})
    message = str(raised.value)
    assert message.startswith("sink 'box': invalid config: EVALSINK_BOX__TAGS: not valid JSON (")
    assert "nightly" not in message  # the text is never quoted: it may hold a credential


def test_a_dict_variable_that_is_not_json_is_an_error_and_text_stays_text() -> None:
    with pytest.raises(SinkConfigError, match="EVALSINK_BOX__HEADERS: not valid JSON"):
        build_config("box", _Tagged, None, {"EVALSINK_BOX__HEADERS": "{'a': 'b'}"})
    config = build_config(
        "box",
        _Tagged,
        None,
        {
            "EVALSINK_BOX__TAGS": "a, b",
            "EVALSINK_BOX__TITLE": "[draft",
            "EVALSINK_BOX__HEADERS": '{"a": "b"}',
        },
    )
    assert isinstance(config, _Tagged)
    assert (config.tags, config.title, config.headers) == (["a", "b"], "[draft", {"a": "b"})


# -- 8. new-sink's next command --------------------------------------------------------------------
def test_new_sinks_next_command_quotes_its_paths(tmp_path: Path) -> None:
    target = tmp_path / "my dir $HOME" / "evalsink-mysink"
    done = run_cli("new-sink", "mysink", "--dir", str(target))
    assert done.returncode == 0, done.stderr
    line = done.stdout.splitlines()[-1]
    assert line.startswith("next: ")
    words = shlex.split(line.removeprefix("next: "))
    assert words == ["pip", "install", "-e", f"{target}[test]", "&&", "pytest", str(target)]
