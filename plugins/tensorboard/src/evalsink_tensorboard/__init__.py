"""evalsink's TensorBoard sink: a run's metrics as TensorBoard scalars, with lighteval's tag names.

Replaces lighteval's ``push_to_tensorboard``: enabled by ``sinks=[..., "tensorboard"]`` or
``push_to_tensorboard=True``. Every run writes one event file (tensorboardX, no tensorflow, no
torch) into ``{output_dir}/tb/{run}``, where ``run`` is ``{nanotron_run_info.run}_{prefix}`` or
just ``prefix``, at the checkpoint's step. Tag names are in :mod:`evalsink_tensorboard.naming`;
docs/sinks/tensorboard.md has the full description.

Why the file is written aside and then moved: TensorBoard reads the event files of a run folder in
file-name order and treats a step lower than the previous one as a restart, dropping the later
steps. tensorboardX names files after the wall clock (to the second), so checkpoints evaluated out
of order (3000, then 1000) would be read out of order, and two runs finishing in the same second
would even share a file name. The sink therefore lets tensorboardX write into a private staging
folder and, once the writer is closed, moves the finished file into the run folder under a name
that sorts by step (then by time). Files written by earlier runs are never touched, and the
run folder only ever holds complete files.

When an org is known (the tracker's ``hub_results_org`` or the ``org`` option), the run folder is
then pushed to the Hub repository ``{org}/tensorboard_logs`` as lighteval did, in one commit with
the Hub sink's retry rules (:mod:`evalsink_tensorboard.push`; needs the ``hub`` extra). A failed
push leaves the event files on disk; :func:`push_logs` pushes them again later.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import time
import uuid
from pathlib import Path
from typing import Any, ClassVar

from evalsink import EvaluationResults, Run, Sink, SinkConfig, TrackerSettings, current_rank, hookimpl
from evalsink_tensorboard.config import TensorBoardSinkConfig
from evalsink_tensorboard.layout import STAGING_FOLDER, local_path, run_folder
from evalsink_tensorboard.markdown import to_markdown
from evalsink_tensorboard.naming import ScalarPoint, TagPlan, plan_scalars
from evalsink_tensorboard.push import (
    TensorBoardPusher,
    TensorBoardPushError,
    TensorBoardPushResult,
    push_logs,
    push_repo_id,
    require_hub_extra,
)

__all__ = [
    "TensorBoardPushError",
    "TensorBoardPushResult",
    "TensorBoardSink",
    "TensorBoardSinkConfig",
    "push_logs",
]


def _run_info(info: Any) -> tuple[str | None, int | None]:
    """(run, step) of a nanotron_run_info-like object (anything with ``.run`` and ``.step``)."""
    if info is None:
        return None, None
    missing = [name for name in ("run", "step") if not hasattr(info, name)]
    if missing:
        raise ValueError(
            f"nanotron_run_info ({type(info).__name__}) has no {' or '.join(missing)} attribute; "
            "the tensorboard sink needs .run (the run name) and .step (the checkpoint's step)"
        )
    step = info.step
    if step is not None and (isinstance(step, bool) or not isinstance(step, int)):
        raise ValueError(f"nanotron_run_info.step must be an int, not {type(step).__name__}")
    return str(info.run), step


class TensorBoardSink(Sink):
    """Writes lighteval's TensorBoard scalars and text summaries for each saved run."""

    config_model: ClassVar[type[SinkConfig]] = TensorBoardSinkConfig
    remote: ClassVar[bool] = False  # local event files: written before anything is uploaded
    config: TensorBoardSinkConfig

    def __init__(self, config: TensorBoardSinkConfig, settings: TrackerSettings) -> None:
        super().__init__(config, settings)
        # imported here, not at module import: only a tracker that enables the sink pays for it,
        # and a broken install fails the tracker's construction, before any evaluation time
        from tensorboardX import SummaryWriter

        self._writer_class: Any = SummaryWriter
        self.prefix = config.prefix or settings.tensorboard_metric_prefix or "eval"
        info_run, info_step = _run_info(settings.nanotron_run_info)
        if info_step is not None:
            self.step = info_step
        else:
            self.step = config.step if config.step is not None else 0
        if self.step < 0:
            raise ValueError(f"the global step must be >= 0 (got {self.step}): files are ordered by step")
        self.run_name = config.run_name or (
            f"{info_run}_{self.prefix}" if info_run is not None else self.prefix
        )

        if config.logdir is not None:
            root = local_path(config.logdir)
            if root is None:
                raise ValueError(f"logdir {config.logdir!r} is a URL; tensorboardX writes local folders only")
        else:
            output = local_path(settings.output_dir)
            if output is None:
                raise ValueError(
                    f"output_dir {settings.output_dir!r} is not a local folder and tensorboardX writes "
                    "local files only: give the sink a local folder, e.g. "
                    'sink_config={"tensorboard": {"logdir": "/path/to/tb"}}'
                )
            root = output / "tb"
        self.root = root
        self.run_dir = run_folder(root, self.run_name)
        self._writer: Any = None
        self._staging: Path | None = None

        # the Hub push: checked here, so a tracker that cannot push fails before the evaluation
        self.push_repo_id = push_repo_id(config, settings.hub_results_org)
        self._pusher: TensorBoardPusher | None = None
        if self.push_repo_id is not None:
            require_hub_extra()  # on every rank: the same install everywhere, the same answer
            if current_rank().is_main:
                # imports huggingface_hub and checks a token; other ranks never push, need none
                self._pusher = TensorBoardPusher(config, self.push_repo_id)

    @hookimpl
    def evalsink_run_started(self) -> None:
        # fails here (isolated, reported) rather than after the evaluation when the root is unusable
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        plan = plan_scalars(results.results, self.prefix)
        self._warn(plan)
        self._staging = self.root / STAGING_FOLDER / f"{run.run_id}-{uuid.uuid4().hex[:8]}"
        self._writer = self._writer_class(logdir=str(self._staging))
        self._write(plan.scalars, results)
        self._close_writer()
        published = str(self._publish())
        if self._pusher is None or not current_rank().is_main:
            return [published]
        try:
            pushed = self._pusher.push(
                self.root,
                [self.run_name],
                message=f"Upload TensorBoard logs of {self.run_name} at step {self.step}",
            )
        except TensorBoardPushError as error:
            error.outputs = [published, *error.outputs]  # the report still lists the local file
            raise
        return [published, *pushed.outputs()]

    @hookimpl
    def evalsink_run_finished(self) -> None:
        """Close what a failed run left open and drop its half-written staging folder."""
        try:
            self._close_writer()
        finally:
            self._drop_staging()

    # -- steps of results_saved ------------------------------------------------------------
    def _warn(self, plan: TagPlan) -> None:
        """Say every value of the results that is not in the file as it is in the results.

        Through :meth:`Sink.warn`: ``save()``'s report lists them (and the core logs them), so a
        report that shows the sink ok does not hide a metric missing from TensorBoard.
        """
        if plan.skipped_null:
            listed = ", ".join(f"{task}/{metric}" for task, metric in plan.skipped_null)
            self.warn(f"{len(plan.skipped_null)} null (NaN/inf) value(s) not written: {listed}")
        if plan.out_of_range:
            listed = ", ".join(f"{task}/{metric} = {value:.6g}" for task, metric, value in plan.out_of_range)
            self.warn(
                f"{len(plan.out_of_range)} value(s) beyond float32's range (about ±3.4e38, what "
                f"TensorBoard stores) not written, as they would read back as ±inf: {listed}"
            )
        if plan.flushed_to_zero:
            listed = ", ".join(
                f"{task}/{metric} = {value:.6g}" for task, metric, value in plan.flushed_to_zero
            )
            self.warn(
                f"{len(plan.flushed_to_zero)} non-zero value(s) smaller than float32 can hold "
                f"(about 1.4e-45) written as 0: {listed}"
            )
        for task, metric, tag in plan.duplicates:
            self.warn(f"{task}/{metric} not written: tag {tag!r} is already used")

    def _write(self, scalars: list[ScalarPoint], results: EvaluationResults) -> None:
        writer, step = self._writer, self.step
        for point in scalars:
            writer.add_scalar(point.tag, point.value, global_step=step)
        general = results.config_general.model_dump(mode="json", by_alias=True)
        writer.add_text("eval_config", to_markdown(general), global_step=step)
        for task, summary in results.summary_tasks.items():
            details = summary.model_dump(mode="json", by_alias=True)
            writer.add_text(f"eval_details_{task}", to_markdown(details), global_step=step)

    def _close_writer(self) -> None:
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()  # flushes every pending event; tensorboardX ignores a second close

    def _publish(self) -> Path:
        """Move the closed event file into the run folder under a name that sorts by step."""
        assert self._staging is not None
        [written] = [p for p in self._staging.iterdir() if p.is_file()]
        with open(written, "rb") as handle:
            os.fsync(handle.fileno())
        # "tfevents" in the name is what TensorBoard looks for; step, then time, orders the files
        final = self.run_dir / (
            f"events.out.tfevents.{self.step:020d}.{time.time_ns():020d}.{socket.gethostname()}.evalsink"
        )
        self.run_dir.mkdir(parents=True, exist_ok=True)
        os.replace(written, final)
        self._drop_staging()
        return final

    def _drop_staging(self) -> None:
        staging, self._staging = self._staging, None
        if staging is None:
            return
        shutil.rmtree(staging, ignore_errors=True)
        with contextlib.suppress(OSError):
            staging.parent.rmdir()  # only when no other run is staging there
