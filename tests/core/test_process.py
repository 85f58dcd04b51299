"""Whole-process behaviour, in child interpreters: what the core imports, what happens at exit."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

HEAVY = ("torch", "lighteval", "datasets", "pyarrow", "wandb", "tensorboardX", "trackio", "huggingface_hub")

FLOW = """
import json, sys
from dataclasses import dataclass, field
from evalsink import EvaluationTracker

@dataclass
class Doc:
    query: str
    choices: list = field(default_factory=lambda: ["A", "B"])
    gold_index: int = 0

@dataclass
class Response:
    input: str
    text: list
    input_tokens: list
    output_tokens: list

output, sinks = sys.argv[1], sys.argv[2].split(",")
tracker = EvaluationTracker(output, sinks=sinks, flush_every=3)
tracker.general_config_logger.log_model_info({"model_name": "org/model", "hf_token": "x"})
tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=None, job_id=0)
tracker.task_config_logger.log({"lighteval|t|0": {"name": "t"}})
for i in range(7):
    doc = Doc(query=f"q{i}")
    response = Response(input=f"p{i}", text=["A"], input_tokens=[1, i], output_tokens=[[2]])
    tracker.details_logger.log("lighteval|t|0", doc, response, {"acc": float(i % 2)})
    tracker.metrics_logger.log("lighteval|t|0", {"acc": float(i % 2)})
tracker.metrics_logger.aggregate()
report = tracker.save()
assert report.ok, str(report)
tracker.generate_final_dict()
tracker.close()
heavy = sys.argv[3].split(",")
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def _run(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=cwd,
        check=False,
    )


def test_the_core_imports_no_heavy_module(tmp_path: Path) -> None:
    done = _run(FLOW, str(tmp_path / "out"), "recorder", ",".join(HEAVY), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_pyarrow_is_imported_once_the_local_sink_is_enabled(tmp_path: Path) -> None:
    """The counterpart of the test above: the same check does see a heavy module when one is used."""
    done = _run(FLOW, str(tmp_path / "out"), "local", ",".join(HEAVY), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "pyarrow" in json.loads(done.stdout.strip().splitlines()[-1])
    assert list((tmp_path / "out" / "details" / "org" / "model").glob("*/details_lighteval|t|0_*.parquet"))


def _recorded(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_a_run_never_saved_is_finished_as_failed_at_exit(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(
            sys.argv[1], sinks=["recorder"], sink_config={"recorder": {"path": sys.argv[2]}}, run_id="lost"
        )
        for i in range(3):
            tracker.details_logger.log("lighteval|t|0", {"query": f"q{i}"}, {}, {"acc": 1.0})
        tracker.start()
        # the script ends without save(), as a crashed or forgetful evaluation would
        """
    )
    done = _run(script, str(tmp_path / "out"), str(log), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    calls = _recorded(log)
    assert [c["hook"] for c in calls] == ["run_started", "details_batch", "run_finished"]
    assert calls[1]["queries"] == ["q0", "q1", "q2"]  # the buffered samples still reach the sinks
    assert calls[2]["status"] == "failed"
    assert "exited before the run was saved" in calls[2]["error"]
    (spool,) = (tmp_path / "out" / ".evalsink" / "runs" / "lost").glob("details-*.jsonl")  # kept to recover
    assert [json.loads(line)["doc"]["query"] for line in spool.read_text(encoding="utf-8").splitlines()] == [
        "q0",
        "q1",
        "q2",
    ]


def test_a_run_saved_outside_a_with_block_drops_its_spool_at_save(tmp_path: Path) -> None:
    log = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        """
        import sys
        from pathlib import Path
        from evalsink import EvaluationTracker
        from evalsink import tracker as tracker_module
        output = Path(sys.argv[1])
        tracker = EvaluationTracker(
            output, sinks=["local", "recorder"], run_id="saved",
            sink_config={"recorder": {"path": sys.argv[2]}},
        )
        tracker.details_logger.log("lighteval|t|0", {"query": "q"}, {}, {"acc": 1.0})
        tracker.details_logger.flush()
        assert list((output / ".evalsink" / "runs" / "saved").glob("details-*.jsonl"))
        tracker.save()
        # the local details file holds the samples: the spool goes now, not at exit
        assert not (output / ".evalsink").exists(), list(output.rglob("*"))
        assert tracker not in tracker_module._OPEN  # nothing left for the exit handler
        print("saved")
        """
    )
    done = _run(script, str(tmp_path / "out"), str(log), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "saved"
    hooks = [c["hook"] for c in _recorded(log)]
    assert hooks == ["run_started", "details_batch", "results_saved", "run_finished"]  # no second finish
    assert not (tmp_path / "out" / ".evalsink").exists()


def test_samples_of_a_run_that_never_started_are_kept_at_exit(tmp_path: Path) -> None:
    """Fewer samples than a flush, no ``with`` block and a crash before save(): the run had not
    started (no flush yet), so the exit handler did not know it, and the samples were lost. They
    are now kept for `evalsink recover`, without calling any sink at exit (a remote sink's library
    may have shut down by then)."""
    log = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(
            sys.argv[1], sinks=["recorder"], sink_config={"recorder": {"path": sys.argv[2]}}, run_id="early"
        )
        unused = EvaluationTracker(sys.argv[1], sinks=["recorder"], run_id="unused")  # nothing logged
        tracker.general_config_logger.log_model_info(model_name="org/m")
        for i in range(3):
            tracker.details_logger.log("lighteval|t|0", {"query": f"q{i}"}, {}, {"acc": 1.0})
        raise RuntimeError("the evaluation crashed")
        """
    )
    done = _run(script, str(tmp_path / "out"), str(log), cwd=tmp_path)
    assert done.returncode == 1
    assert "the evaluation crashed" in done.stderr
    assert not log.exists()  # no sink was called
    runs = tmp_path / "out" / ".evalsink" / "runs"
    assert [path.name for path in runs.iterdir()] == ["early"]  # the unused tracker opened no run
    (spool,) = (runs / "early").glob("details-*.jsonl")
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 3
    from evalsink.manifest import RunState, manifest_path, read_manifest
    from evalsink.recovery import recover_run

    manifest = read_manifest(manifest_path(spool))
    assert manifest is not None
    assert (manifest.state, manifest.config_general["model_name"]) == (RunState.FAILED, "org/m")
    report = recover_run(tmp_path / "out", "early")
    assert report.ok, str(report)
    assert [path.name for path in (tmp_path / "out" / "results" / "org" / "m").iterdir()] == [
        f"results_{report.date_id}.json"
    ]


def test_a_resumed_run_left_unused_is_left_as_it_was_at_exit(tmp_path: Path) -> None:
    """A tracker rebuilt from a crashed run (``resume=True``, as recover_run builds one) holds that
    run's samples: at exit it must not be started, replayed to the sinks, or have its manifest
    rewritten (which dropped the date id of a results file already published)."""
    from evalsink.manifest import RunState, manifest_path, read_manifest, write_manifest

    output = tmp_path / "out"
    crashed = textwrap.dedent(
        """
        import os, sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(sys.argv[1], sinks=["local"], run_id="crashed", flush_every=2)
        for i in range(4):
            tracker.details_logger.log("lighteval|t|0", {"query": f"q{i}"}, {}, {"acc": 1.0})
        os._exit(9)
        """
    )
    assert _run(crashed, str(output), cwd=tmp_path).returncode == 9
    (spool,) = (output / ".evalsink" / "runs" / "crashed").glob("details-*.jsonl")
    manifest = read_manifest(manifest_path(spool))
    assert manifest is not None
    manifest.date_id = "2026-01-02T03-04-05.000006"  # as if its save had begun
    write_manifest(manifest_path(spool), manifest)
    log = tmp_path / "calls.jsonl"
    resumed = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(
            sys.argv[1], sinks=["recorder"], sink_config={"recorder": {"path": sys.argv[2]}},
            run_id="crashed", resume=True,
        )
        raise RuntimeError("the recovery stopped before saving")
        """
    )
    assert _run(resumed, str(output), str(log), cwd=tmp_path).returncode == 1
    assert not log.exists()
    after = read_manifest(manifest_path(spool))
    assert after is not None
    assert (after.state, after.date_id) == (RunState.RUNNING, "2026-01-02T03-04-05.000006")
    assert len(spool.read_text(encoding="utf-8").splitlines()) == 4


def test_a_forked_child_leaves_its_parents_runs_alone_at_exit(tmp_path: Path) -> None:
    """A child made with os.fork() inherits the parent's trackers: at its exit it started the
    parent's run and wrote the parent's buffered samples into the parent's spool (twice in all)."""
    log = tmp_path / "calls.jsonl"
    script = textwrap.dedent(
        """
        import os, sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(
            sys.argv[1], sinks=["recorder"], sink_config={"recorder": {"path": sys.argv[2]}}, run_id="parent"
        )
        for i in range(3):
            tracker.details_logger.log("lighteval|t|0", {"query": f"q{i}"}, {}, {"acc": 1.0})
        child = os.fork()
        if child == 0:
            sys.exit(0)  # a normal exit: the exit handlers run in the child
        os.waitpid(child, 0)
        tracker.save()
        """
    )
    done = _run(script, str(tmp_path / "out"), str(log), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    calls = _recorded(log)
    assert [c["hook"] for c in calls] == ["run_started", "details_batch", "results_saved", "run_finished"]
    assert calls[1]["queries"] == ["q0", "q1", "q2"]
    assert calls[-1]["status"] == "ok"


def test_the_local_sinks_last_flush_at_exit_is_quiet_and_recoverable(tmp_path: Path) -> None:
    """Streaming had started; at exit the executors take no more work, and the last flush logged a
    warning with a traceback ("cannot schedule new futures after shutdown")."""
    script = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(sys.argv[1], sinks=["local"], flush_every=4, run_id="crashed")
        for i in range(10):
            tracker.details_logger.log("lighteval|t|0", {"query": f"q{i}"}, {"text": ["x"]}, {"acc": 1.0})
        raise RuntimeError("the evaluation crashed")
        """
    )
    done = _run(script, str(tmp_path / "out"), cwd=tmp_path)
    assert done.returncode == 1
    assert "cannot schedule" not in done.stderr
    assert "converting details while the run goes on failed" not in done.stderr
    from evalsink.recovery import recover_run

    assert recover_run(tmp_path / "out", "crashed").ok
    (details,) = (tmp_path / "out" / "details").glob("**/*.parquet")
    import pyarrow.parquet as pq

    assert pq.read_table(details).num_rows == 10
