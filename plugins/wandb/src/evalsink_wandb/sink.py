"""``WandbSink``: the hooks, in the order the tracker calls them.

* construction — validate the options; on the main rank only, import wandb and check that it
  finds credentials without prompting (online mode). Every failure here happens before any
  evaluation time is spent.
* ``evalsink_run_started`` — create the W&B run (``reinit="create_new"``: a script's own
  ``wandb.run`` is never replaced or finished), or take the active ``wandb.run`` when attaching.
* ``evalsink_details_batch`` — stream rows into the per-task details tables (bounded memory).
* ``evalsink_results_saved`` — config, metrics, results table, summary, results-file artifact,
  then the last details rows; returns where the run is.
* ``evalsink_run_finished`` — always: finish a run the sink created, ``exit_code=1`` when the
  evaluation or this sink failed. An attached run is left open for its owner.

On any rank but 0 (``evalsink.current_rank()``) the sink does nothing at all: one evaluation is
one W&B run, not one per process.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

from evalsink import (
    DetailsBatch,
    EvaluationResults,
    Run,
    RunStatus,
    Sink,
    SinkConfig,
    TrackerSettings,
    current_rank,
    hookimpl,
    jsonsafe,
)
from evalsink.run import nanotron_run_and_step
from evalsink_wandb import backend
from evalsink_wandb.config import WandbSinkConfig
from evalsink_wandb.details import DetailsStream
from evalsink_wandb.naming import ARTIFACT_TYPE, RESULTS_KEY, artifact_name, renamed, scalars

logger = logging.getLogger("evalsink.wandb")

RESULTS_COLUMNS = ["task", "metric", "value", "stderr"]


class DetailsNotSentError(RuntimeError):
    """The details tables failed. Raised only once everything else of the run was logged;
    ``outputs`` lists what was (the tracker's report shows it beside the error)."""

    def __init__(self, message: str, outputs: list[str]) -> None:
        super().__init__(message)
        self.outputs = outputs


class WandbSink(Sink):
    """Logs an evaluation to one Weights & Biases run (see docs/sinks/wandb.md)."""

    config_model: ClassVar[type[SinkConfig]] = WandbSinkConfig
    remote: ClassVar[bool] = True  # talks to W&B: runs after the local sinks
    config: WandbSinkConfig

    def __init__(self, config: WandbSinkConfig, settings: TrackerSettings) -> None:
        super().__init__(config, settings)
        info_run, info_step = nanotron_run_and_step(settings.nanotron_run_info)
        self.step: int | None = info_step if info_step is not None else config.step
        """The step every value is logged at; None: the run's current step when it starts."""
        self.project: str | None = None if config.attach else config.resolved_project()
        """The project runs are created in (checked by the config: set unless attaching)."""
        self.run_name: str | None = config.run_name or info_run
        self.is_main: bool = current_rank().is_main
        self.mode: str | None = None
        """The wandb mode runs are created in (None on non-main ranks and when attaching)."""
        self.run_dir: str | None = None
        """Local folder of the W&B run (``wandb sync`` uploads it), once the run has started."""
        self._wandb: Any = None
        self._run: Any = None
        self._owns_run = False
        self._log_step: int | None = None
        self._details: DetailsStream | None = None
        self._failed = False
        self._details_error: Exception | None = None
        self._details_error_raised = False
        self._inactive: str | None = None
        """Why a started run logs nothing (disabled mode or run), if it does not."""
        self._told: set[str] = set()
        """Warnings already given (each renamed name is told once, from details or results)."""
        self._generated_name: str | None = None
        """The name W&B gave the run the sink created without one (None when it was given one)."""
        if not self.is_main:
            return
        # imported here, never at module import: `evalsink sinks` and trackers without this sink
        # do not pay for it, and a broken install fails the tracker's construction
        self._wandb = backend.import_wandb()
        if not config.attach:
            self.mode = config.mode or backend.configured_mode()
            if self.mode in backend.ONLINE_MODES and not backend.has_credentials():
                raise ValueError(
                    "wandb found no credentials and the sink never prompts for them: set WANDB_API_KEY, "
                    'run `wandb login` once, or log locally with WANDB_MODE=offline (or {"mode": "offline"})'
                )
            if self.mode == "offline" and self.step is None:
                self._check_offline_resume()

    @property
    def wandb_run(self) -> Any:
        """The W&B run being logged to (None before the run starts, after it finishes, off rank 0)."""
        return self._run

    # -- hooks ------------------------------------------------------------------------------
    @hookimpl
    def evalsink_run_started(self, run: Run) -> None:
        if not self.is_main:
            return
        if self.mode == "disabled":
            self._inactive = "wandb mode is disabled"
            return
        with self._failure_marked():
            if self.config.attach:
                wandb_run = self._wandb.run
                if wandb_run is None:
                    raise RuntimeError(
                        "attach=True but there is no active wandb.run: call wandb.init() before the "
                        "evaluation starts, or leave attach unset to let the sink create a run"
                    )
                if wandb_run.disabled:
                    self._inactive = "the attached wandb.run is disabled"
                    return
            else:
                wandb_run = self._init(run)
                if wandb_run.disabled:  # disabled by a wandb setting read only by wandb.init
                    wandb_run.finish()
                    self._inactive = "wandb.init returned a disabled run"
                    return
                self._owns_run = True
                atexit.register(self._finish_at_exit)
                if not (self.run_name or run.model_name):
                    self._generated_name = str(wandb_run.name or "")
            self._run = wandb_run
            self.run_dir = str(wandb_run.sync_dir)
            current = int(wandb_run.step)
            if self.step is not None:
                if self.step < current:
                    raise RuntimeError(self._behind_message(self.step, current))
                self._log_step = self.step
            elif self._owns_run:
                self._log_step = current  # 0 for a new run, the next step of a resumed one
            else:
                self._log_step = None  # the attached run's current row, whatever its step
            if self.config.attach:
                wandb_run.config.update(self._run_config(run), allow_val_change=True)
            if self.settings.save_details and self.config.max_rows != 0:
                self._details = DetailsStream(
                    new_table=self._new_table,
                    send=self._send_increment,
                    max_rows=self.config.max_rows,
                    rows_per_increment=self.config.rows_per_increment,
                    max_cell_chars=self.config.max_cell_chars,
                    wandb_run_id=str(wandb_run.id),
                )

    @hookimpl
    def evalsink_details_batch(self, batch: DetailsBatch) -> None:
        details = self._details
        if details is None or all(details.full(task) for task in batch.tasks):
            return
        for task in batch.tasks:
            self._tell(renamed(task, is_task=True))
        try:
            for record in batch.records():
                details.add(record["task_name"], record)
        except Exception as exc:
            self._stop_details(exc)

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        if not self.is_main:
            return []
        if self._inactive is not None:
            return [f"wandb: {self._inactive}; nothing logged"]
        with self._failure_marked():
            wandb_run = self._run
            if wandb_run is None:
                raise RuntimeError("the W&B run was not started")
            current = int(wandb_run.step)
            if self._log_step is not None and current > self._log_step:
                raise RuntimeError(self._behind_message(self._log_step, current))
            wandb_run.config.update(self._results_config(run, results), allow_val_change=True)
            values = scalars(results.results)
            for message in values.renamed:
                self._tell(message)
            if values.skipped:
                logger.warning(
                    "wandb: %d null (NaN/inf) value(s) not logged: %s",
                    len(values.skipped),
                    ", ".join(values.skipped),
                )
            table = self._wandb.Table(columns=RESULTS_COLUMNS, data=values.rows)
            self._log({**values.metrics, RESULTS_KEY: table})
            wandb_run.summary.update(
                {**values.metrics, "summary_general": results.summary_general.model_dump(mode="json")}
            )
            self._name_after_model(wandb_run, run)
            name = self._log_results_file(wandb_run, run, results)
            outputs = [self._where(wandb_run), f"wandb artifact: {name} ({ARTIFACT_TYPE})"]
            if self._details is not None:  # after the results: a details problem never costs them
                try:
                    self._details.flush()
                    self._report_capped(run)
                except Exception as exc:
                    self._stop_details(exc)
            self._raise_details_error(outputs)
            return outputs

    @hookimpl
    def evalsink_run_finished(self, status: RunStatus) -> None:
        """Finish the run the sink created (also after a failure); leave an attached run open."""
        wandb_run, details = self._run, self._details
        if wandb_run is None:
            self._details = None
            return
        atexit.unregister(self._finish_at_exit)
        try:
            if details is not None and not self._failed:
                try:
                    details.flush()  # rows of a failed evaluation are worth seeing too
                except Exception as exc:
                    self._stop_details(exc)
        finally:
            self._run, self._details = None, None
            if self._owns_run:
                failed = status is RunStatus.FAILED or self._failed or self._details_error is not None
                wandb_run.finish(exit_code=1 if failed else 0)
        self._raise_details_error([])

    # -- helpers ----------------------------------------------------------------------------
    def _check_offline_resume(self) -> None:
        """Refuse to resume a run offline at a step the sink cannot check.

        Offline, wandb does not know where the run it resumes stands: ``run.step`` is 0 until
        ``wandb sync`` reaches W&B, which then drops every value logged behind the run's current
        step (a second evaluation of the run at step 0, say). With no step given, the sink cannot
        pick a safe one, so it fails at construction with the reason and the fix rather than log
        values W&B would drop. A step that is given is trusted (it cannot be checked offline).
        """
        resume: str | None = self.config.resume
        run_id = self.config.run_id
        if resume is None or run_id is None:
            env_resume, env_run_id = backend.configured_resume()
            resume, run_id = resume or env_resume, run_id or env_run_id
        if resume == "auto" or (resume in ("allow", "must") and run_id is not None):
            raise ValueError(
                f"resume={resume!r} in offline mode needs a step: offline, wandb cannot tell the "
                "resumed run's current step (it reads 0), and on `wandb sync` W&B drops values "
                "logged behind it. Give the step of this evaluation (nanotron_run_info.step or the "
                "`step` option), later than any step already logged to the run, or log online"
            )

    def _tell(self, message: str | None) -> None:
        """Warn once (``save()``'s report) about a message; None is nothing to tell."""
        if message is not None and message not in self._told:
            self._told.add(message)
            self.warn(message)

    def _name_after_model(self, wandb_run: Any, run: Run) -> None:
        """Name the run after the model when it started before the model was known.

        ``run_name`` defaults to the model name, but with ``log_model_info`` called inside
        ``with tracker:`` (the README's pattern) the run starts before it, and would keep the
        name W&B gave it (none, offline). A name the user set on the run meanwhile is kept.
        """
        generated = self._generated_name
        self._generated_name = None
        if generated is not None and run.model_name and str(wandb_run.name or "") == generated:
            wandb_run.name = run.model_name

    def _stop_details(self, error: Exception) -> None:
        """Stop sending details after a failure, and keep the error to raise once the results are
        logged: the metrics, results table and file are worth more than the rest of the rows."""
        self._details = None
        self._details_error = error
        logger.warning(
            "wandb: details tables stopped (%s: %s); the results are still logged and the sink will "
            "be reported failed",
            type(error).__name__,
            error,
        )

    def _raise_details_error(self, outputs: list[str]) -> None:
        error = self._details_error
        if error is None or self._details_error_raised:
            return
        self._details_error_raised = True
        self._failed = True
        raise DetailsNotSentError(
            f"the details tables could not be sent ({type(error).__name__}: {error}); "
            "the W&B run is marked failed",
            outputs,
        ) from error

    @contextlib.contextmanager
    def _failure_marked(self) -> Iterator[None]:
        """Remember that this sink failed (the exception still propagates to the tracker), so the
        run is finished as failed and no further rows are sent to it."""
        try:
            yield
        except BaseException:
            self._failed = True
            raise

    def _init(self, run: Run) -> Any:
        options: dict[str, Any] = {
            "project": self.project,
            "entity": self.config.entity,
            "name": self.run_name or run.model_name,
            "id": self.config.run_id,
            "resume": self.config.resume,
            "tags": self.config.tags or None,
            "group": self.config.group,
            "job_type": self.config.job_type,
            "config": self._run_config(run),
            "reinit": "create_new",
            "settings": backend.lean_settings(self._wandb),
        }
        if self.config.mode is not None:
            options["mode"] = self.config.mode
        if self.config.dir is not None:
            Path(self.config.dir).mkdir(parents=True, exist_ok=True)
            options["dir"] = self.config.dir
        return self._wandb.init(**options)

    @staticmethod
    def _run_config(run: Run) -> dict[str, Any]:
        """The config known when the run starts (the model info logged so far)."""
        return {
            "config_general": jsonsafe.redact_secrets(run.config_general),
            "evalsink": {"run_id": run.run_id},
        }

    @staticmethod
    def _results_config(run: Run, results: EvaluationResults) -> dict[str, Any]:
        """lighteval's ``config_general`` (final: end time...) and ``config_tasks``, plus versions."""
        return {
            "config_general": jsonsafe.redact_secrets(results.config_general.model_dump(mode="json")),
            "config_tasks": {
                task: jsonsafe.redact_secrets(config.model_dump(mode="json"))
                for task, config in results.config_tasks.items()
            },
            "versions": dict(results.versions),
            "evalsink": {"run_id": run.run_id, "date_id": run.date_id},
        }

    def _log(self, data: dict[str, Any]) -> None:
        """Log at the run's evaluation step (merged into that step's row, committed at finish), or
        into the attached run's current row when no step was given."""
        if self._log_step is None:
            self._run.log(data, commit=False)
        else:
            self._run.log(data, step=self._log_step)

    def _new_table(self, columns: list[str]) -> Any:
        return backend.incremental_table(self._wandb, columns)

    def _send_increment(self, key: str, table: Any, rows: list[list[Any]]) -> None:
        backend.send_increment(self._log, key, table, rows)

    def _log_results_file(self, wandb_run: Any, run: Run, results: EvaluationResults) -> str:
        """The results JSON (as the local sink writes it) as a version of the model's artifact."""
        name = artifact_name(run.model_name)
        metadata: dict[str, Any] = {
            "model_name": run.model_name,
            "date_id": run.date_id,
            "evalsink_run_id": run.run_id,
        }
        if self._log_step is not None:
            metadata["step"] = self._log_step
        artifact = self._wandb.Artifact(name=name, type=ARTIFACT_TYPE, metadata=metadata)
        with artifact.new_file(f"results_{run.date_id}.json", mode="w", encoding="utf-8") as handle:
            handle.write(jsonsafe.dumps(results.model_dump(mode="json"), indent=True).decode())
        aliases = ["latest"] + ([f"step-{self._log_step}"] if self._log_step is not None else [])
        wandb_run.log_artifact(artifact, aliases=aliases)
        return name

    def _report_capped(self, run: Run) -> None:
        cap = self.config.max_rows
        if cap is None or self._details is None:
            return
        for task, sent in self._details.sent().items():
            total = run.details.count(task)
            if total > sent:
                logger.info("wandb: details of %s capped at %d of %d rows", task, sent, total)

    def _where(self, wandb_run: Any) -> str:
        owner = "" if self._owns_run else "attached "
        if wandb_run.offline:
            return (
                f"wandb: offline {owner}run {wandb_run.path} in {wandb_run.sync_dir} "
                f"(upload with `wandb sync {wandb_run.sync_dir}`)"
            )
        return f"wandb: {owner}run {wandb_run.url}"

    @staticmethod
    def _behind_message(step: int, current: int) -> str:
        return (
            f"the evaluation's step {step} is behind the W&B run's current step {current}: W&B drops "
            "values logged to an earlier step. Give a later step (nanotron_run_info.step or the "
            "`step` option)."
        )

    def _finish_at_exit(self) -> None:
        """The process is exiting with the run still open (it was never saved or finished): finish
        it as failed before wandb's own exit hook would finish it as a success."""
        wandb_run, self._run = self._run, None
        self._details = None
        if wandb_run is not None and self._owns_run:
            wandb_run.finish(exit_code=1)
