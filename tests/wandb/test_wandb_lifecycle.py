"""When the run starts and finishes, what a failure costs, ranks, attaching, secrets, processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from wandb_helpers import (
    PLAIN,
    log_evaluation,
    new_project,
    run_of,
    table_at,
    wandb_core_processes,
    wandb_tracker,
)
from wandb_runfile import read_run

from evalsink import EvaluationTracker, SinkConfigError


def offline_runs(wandb_dirs: Path) -> set[Path]:
    return set((wandb_dirs / "wandb_dir" / "wandb").glob("offline-run-*"))


# -- construction -----------------------------------------------------------------------------
def test_a_missing_project_fails_at_construction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SinkConfigError, match=r"needs a project: .*EVALSINK_WANDB__PROJECT.*WANDB_PROJECT"):
        EvaluationTracker(tmp_path, sinks=["wandb"])
    with pytest.raises(SinkConfigError, match="needs a project"):
        EvaluationTracker(tmp_path, use_wandb=True)  # lighteval's flag enables this sink
    monkeypatch.setenv("WANDB_PROJECT", "from-env")
    tracker = EvaluationTracker(tmp_path, use_wandb=True)
    assert tracker.sink("wandb").project == "from-env"


def test_the_run_starts_with_the_evaluation_not_at_construction(tmp_path: Path, wandb_dirs: Path) -> None:
    before = offline_runs(wandb_dirs)
    tracker = wandb_tracker(tmp_path)
    assert offline_runs(wandb_dirs) == before
    assert tracker.sink("wandb").wandb_run is None
    with tracker:
        assert tracker.sink("wandb").wandb_run is not None
        assert len(offline_runs(wandb_dirs) - before) == 1
        report = tracker.save()
    assert report.ok, str(report)


def test_online_mode_without_credentials_fails_at_construction(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(SinkConfigError, match="no credentials and the sink never prompts"):
        wandb_tracker(tmp_path, mode="online")
    # with a key in the environment the sink constructs (it is not started: nothing goes online)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    tracker = wandb_tracker(tmp_path, mode="online")
    assert tracker.sink("wandb").mode == "online"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_rows": -1}, "max_rows"),
        ({"rows_per_increment": 0}, "rows_per_increment"),
        ({"run_id": "a/b"}, "run_id"),
        ({"mode": "sometimes"}, "mode"),
        ({"api_key": "secret"}, "unknown option"),
        ({"attach": True, "project": "p"}, "project cannot be combined with attach=True"),
    ],
)
def test_invalid_options_are_rejected(tmp_path: Path, options: dict[str, Any], message: str) -> None:
    with pytest.raises(SinkConfigError, match=message):
        EvaluationTracker(tmp_path, sinks=["wandb"], sink_config={"wandb": {"project": "p", **options}})


@pytest.mark.parametrize(
    "options",
    [
        {"run_id": "resumed-1", "resume": "allow"},
        {"run_id": "resumed-1", "resume": "must"},
        {"resume": "auto"},
    ],
)
def test_resuming_offline_without_a_step_fails_at_construction(
    tmp_path: Path, wandb_dirs: Path, options: dict[str, Any]
) -> None:
    """Offline, a resumed run's step reads 0: both evaluations of a run logged at step 0, and
    `wandb sync` would have W&B drop the second's values while the report said ok."""
    before = offline_runs(wandb_dirs)
    with pytest.raises(SinkConfigError, match=r"offline mode needs a step: .*`step` option"):
        wandb_tracker(tmp_path, **options)
    assert offline_runs(wandb_dirs) == before


def test_resuming_offline_from_wandbs_own_variables_without_a_step_fails_too(tmp_path: Path) -> None:
    """WANDB_RESUME / WANDB_RUN_ID are read once per process by wandb: checked in a fresh one."""
    code = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker, SinkConfigError
        try:
            EvaluationTracker(sys.argv[1], sinks=["wandb"], sink_config={"wandb": {"project": "p"}})
        except SinkConfigError as error:
            sys.exit(0 if "resume='allow' in offline mode needs a step" in str(error) else str(error))
        sys.exit("constructed")
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    env.update(WANDB_RESUME="allow", WANDB_RUN_ID="resumed-from-env")
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


def test_resuming_offline_logs_each_evaluation_at_the_step_given(tmp_path: Path) -> None:
    run_id = f"resumed-{new_project()[-10:]}"
    project = new_project()
    folders = []
    for step, info_step in ((100, None), (None, 200)):
        tracker = EvaluationTracker(
            tmp_path / f"eval-{step}-{info_step}",
            sinks=["wandb"],
            nanotron_run_info=SimpleNamespace(run="exp", step=info_step) if info_step else None,
            sink_config={"wandb": {"project": project, "run_id": run_id, "resume": "allow", "step": step}},
        )
        log_evaluation(tracker, {PLAIN: [0.5]})
        report = tracker.save()
        assert report.ok, str(report)
        folders.append(tracker.sink("wandb").run_dir)
    runs = [read_run(folder) for folder in folders]
    assert [run.run.run_id for run in runs] == [run_id, run_id]
    assert all(run.run.resume for run in runs)
    assert [run.step_of(f"{PLAIN}/acc") for run in runs] == [[100], [200]]


def test_disabled_mode_logs_nothing(tmp_path: Path, wandb_dirs: Path) -> None:
    before = offline_runs(wandb_dirs)
    tracker = wandb_tracker(tmp_path, mode="disabled")
    log_evaluation(tracker)
    report = tracker.save()
    assert report.ok, str(report)
    assert report["wandb"].outputs == ["wandb: wandb mode is disabled; nothing logged"]
    assert tracker.sink("wandb").run_dir is None
    assert offline_runs(wandb_dirs) == before


def test_wandb_is_not_imported_by_the_sink_module() -> None:
    code = "import sys, evalsink_wandb; sys.exit('wandb' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


# -- finishing --------------------------------------------------------------------------------
def test_a_failed_evaluation_finishes_the_run_as_failed(tmp_path: Path) -> None:
    tracker = wandb_tracker(tmp_path)
    with pytest.raises(RuntimeError, match="evaluation broke"), tracker:  # noqa: PT012
        log_evaluation(tracker, {PLAIN: [0.5, 1.0]})
        raise RuntimeError("evaluation broke")
    assert tracker.sink_outcomes["wandb"].ok
    run = run_of(tracker)
    assert run.exit_code == 1
    # the details logged before the failure were still sent
    assert [r["metric.acc"] for r in table_at(run, f"details/{PLAIN}")] == [0.5, 1.0]


def test_a_wandb_error_fails_only_the_wandb_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import wandb

    def broken_log(self: Any, data: dict[str, Any], step: int | None = None, commit: Any = None) -> None:
        raise ConnectionError("W&B is down")

    monkeypatch.setattr(wandb.Run, "log", broken_log)
    tracker = wandb_tracker(tmp_path, sinks=("local", "wandb"))
    log_evaluation(tracker)
    report = tracker.save()

    assert report.failed == ["wandb"]
    assert report["wandb"].failed_hooks == ["evalsink_results_saved"]
    assert "W&B is down" in report["wandb"].errors[0]
    assert report["local"].ok
    assert report["local"].outputs
    assert all(Path(path).is_file() for path in report["local"].outputs)
    assert run_of(tracker).exit_code == 1  # finished all the same, marked failed


def test_finishing_twice_is_harmless(tmp_path: Path) -> None:
    tracker = wandb_tracker(tmp_path)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    sink = tracker.sink("wandb")
    from evalsink import RunStatus

    sink.evalsink_run_finished(status=RunStatus.FAILED)
    assert run_of(tracker).exit_code == 0


def test_a_process_that_exits_without_saving_finishes_the_run_as_failed(
    tmp_path: Path, wandb_dirs: Path
) -> None:
    """wandb's own exit hook would finish the open run as a success; the sink's runs first."""
    code = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(sys.argv[1], sinks=["wandb"], sink_config={"wandb": {"project": "p"}})
        tracker.details_logger.log("custom|plain|0", {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
        tracker.start()
        print(tracker.sink("wandb").run_dir)
        """
    )
    env = {key: value for key, value in os.environ.items() if key != "WANDB_SERVICE"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    run = read_run(done.stdout.strip().splitlines()[-1])
    assert run.exit_code == 1


# -- ranks ------------------------------------------------------------------------------------
def test_a_non_main_rank_does_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wandb_dirs: Path
) -> None:
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("EVALSINK_RUN_ID", "shared")
    before = offline_runs(wandb_dirs)
    tracker = wandb_tracker(tmp_path, sinks=("local", "wandb"))  # config checked on every rank
    log_evaluation(tracker)
    report = tracker.save()

    assert report.ok, str(report)
    assert "wandb" not in report.sinks  # rank 0 writes the run and opens the W&B run (docs/ranks.md)
    assert offline_runs(wandb_dirs) == before


def test_a_non_main_rank_never_imports_wandb(tmp_path: Path) -> None:
    code = textwrap.dedent(
        """
        import sys
        from evalsink import EvaluationTracker
        tracker = EvaluationTracker(sys.argv[1], sinks=["wandb"], sink_config={"wandb": {"project": "p"}})
        tracker.details_logger.log("custom|plain|0", {"query": "q"}, {"text": ["a"]}, {"acc": 1.0})
        tracker.metrics_logger.log("custom|plain|0", {"acc": 1.0})
        assert tracker.save().ok
        sys.exit(3 if "wandb" in sys.modules else 0)
        """
    )
    env = {**os.environ, "RANK": "1", "WORLD_SIZE": "2", "EVALSINK_RUN_ID": "shared"}
    done = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path)], env=env, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr


# -- attaching --------------------------------------------------------------------------------
@pytest.fixture
def training_run() -> Any:
    """A training script's own run, as ``wandb.init()`` makes it (the global ``wandb.run``)."""
    import wandb

    run = wandb.init(project=new_project(), config={"lr": 0.1}, settings=wandb.Settings(console="off"))
    yield run
    run.finish()


def test_attach_logs_into_the_active_run_and_leaves_it_open(tmp_path: Path, training_run: Any) -> None:
    import wandb

    training_run.log({"train/loss": 1.0}, step=100)
    tracker = EvaluationTracker(
        tmp_path,
        sinks=["wandb"],
        nanotron_run_info=SimpleNamespace(run="exp", step=100),
        sink_config={"wandb": {"attach": True}},
    )
    log_evaluation(tracker, {PLAIN: [0.5, 1.0]})
    report = tracker.save()

    assert report.ok, str(report)
    assert report["wandb"].outputs[0].startswith("wandb: offline attached run")
    assert wandb.run is training_run
    training_run.log({"train/loss": 0.5}, step=101)  # still open: the sink did not finish it
    training_run.finish()

    run = read_run(training_run.sync_dir)
    assert run.exit_code == 0
    rows = {row["_step"]: row for row in run.history}
    assert rows[100]["train/loss"] == 1
    assert rows[100][f"{PLAIN}/acc"] == pytest.approx(0.75)  # the evaluation lines up with step 100
    assert rows[101]["train/loss"] == 0.5
    assert run.config["lr"] == 0.1
    assert run.config["config_general"]["model_name"] == "org/tiny-model"
    assert len(table_at(run, f"details/{PLAIN}")) == 2
    assert "step-100" in run.artifact(type="evaluation-results").aliases


def test_attach_without_a_step_uses_the_current_row(tmp_path: Path, training_run: Any) -> None:
    training_run.log({"train/loss": 1.0}, step=5, commit=False)
    tracker = EvaluationTracker(tmp_path, sinks=["wandb"], sink_config={"wandb": {"attach": True}})
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    training_run.finish()
    [row] = read_run(training_run.sync_dir).history
    assert row["_step"] == 5
    assert row["train/loss"] == 1
    assert row[f"{PLAIN}/acc"] == 0.5


def test_a_step_behind_the_attached_run_fails_the_sink_before_the_evaluation(
    tmp_path: Path, training_run: Any
) -> None:
    training_run.log({"train/loss": 1.0}, step=200)
    training_run.log({"train/loss": 0.9}, step=201)
    tracker = EvaluationTracker(
        tmp_path, sinks=["wandb"], sink_config={"wandb": {"attach": True, "step": 100}}
    )
    with tracker:
        assert tracker.sink_outcomes["wandb"].failed_hooks == ["evalsink_run_started"]
        log_evaluation(tracker, {PLAIN: [0.5]})
        report = tracker.save()
    assert report.failed == ["wandb"]
    assert "step 100 is behind the W&B run's current step 201" in report["wandb"].errors[0]


def test_attach_without_an_active_run_fails_the_sink(tmp_path: Path) -> None:
    import wandb

    assert wandb.run is None
    tracker = EvaluationTracker(tmp_path, sinks=["local", "wandb"], sink_config={"wandb": {"attach": True}})
    log_evaluation(tracker)
    report = tracker.save()
    assert report.failed == ["wandb"]
    assert "no active wandb.run" in report["wandb"].errors[0]
    assert report["local"].ok


def test_a_run_the_sink_creates_leaves_the_scripts_run_alone(tmp_path: Path, training_run: Any) -> None:
    import wandb

    tracker = wandb_tracker(tmp_path)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert wandb.run is training_run
    assert run_of(tracker).run.run_id != training_run.id
    training_run.log({"train/loss": 0.5})  # not finished by the sink
    training_run.finish()
    assert read_run(training_run.sync_dir).history[0]["train/loss"] == 0.5


# -- secrets and processes --------------------------------------------------------------------
def test_the_api_key_is_never_written(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capfd: Any,
    wandb_dirs: Path,
) -> None:
    secret = "evalsinkSECRET" + "0" * 40
    monkeypatch.setenv("WANDB_API_KEY", secret)
    tracker = wandb_tracker(tmp_path / "out", sinks=("local", "wandb"))
    tracker.general_config_logger.log_model_info(
        model_config={"model_name": "m", "api_key": secret, "hub": {"hf_token": secret}}
    )
    log_evaluation(tracker)
    report = tracker.save()
    assert report.ok, str(report)

    run = run_of(tracker)
    assert run.config["config_general"]["model_config"]["api_key"] == "**********"
    # the results and details files, and every file wandb wrote (runs, staged artifacts, logs)
    written = [path for path in (tmp_path / "out").rglob("*") if path.is_file()]
    written += [path for path in wandb_dirs.rglob("*") if path.is_file()]
    assert {Path(entry.local_path) for a in run.artifacts for entry in a.manifest.contents} <= set(written)
    assert run.folder / f"run-{run.run.run_id}.wandb" in written
    leaks = [path for path in written if secret.encode() in path.read_bytes()]
    assert leaks == []
    output = capfd.readouterr()
    assert secret not in caplog.text + output.out + output.err + str(report)


def test_no_wandb_core_process_is_left_after_teardown(tmp_path: Path) -> None:
    import wandb

    tracker = wandb_tracker(tmp_path)
    log_evaluation(tracker, {PLAIN: [0.5]})
    assert tracker.save().ok
    assert wandb_core_processes(), "the check cannot see wandb-core while it runs"
    wandb.teardown()
    assert wandb_core_processes() == []
