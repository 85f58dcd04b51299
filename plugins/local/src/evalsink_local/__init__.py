"""evalsink's local sink: lighteval's results JSON and details parquet files, written safely.

Every file is published atomically (see :mod:`evalsink.storage`); the order of the files differs
with where they go:

* on local disk, results are written first, then each task's details file — converted while the
  run went on (:mod:`evalsink_local.streaming`), or now from the run's spool — is published with
  the others, by renames, so a details problem never costs the results;
* anywhere else (an object store has no rename, so each file is published on its own), the
  details go first and the results file last: it is the run's commit marker — a reader that finds
  ``results_<date_id>.json`` finds every details file of the run that could be written. It is
  written after a task whose data failed to convert (a re-push would fail the same way), never
  after a failure of the store: the run is then left unmarked, and the spool the core keeps
  re-saves it whole (:mod:`evalsink.recovery`).

pyarrow is imported only when this sink is enabled.
"""

from __future__ import annotations

import functools
import logging
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import Field, field_validator

from evalsink import Sink, SinkConfig, hookimpl
from evalsink.models import EvaluationResults
from evalsink.run import Run, TrackerSettings
from evalsink_local.failures import pools_shut_down

if TYPE_CHECKING:
    from evalsink import DetailsBatch
    from evalsink_local.layout import Layout
    from evalsink_local.streaming import StreamingDetails

__all__ = ["DetailsWriteError", "LocalSink", "LocalSinkConfig", "RunNotPublishedError"]

logger = logging.getLogger("evalsink")


class LocalSinkConfig(SinkConfig):
    """Options of the local sink (``sink_config={"local": {...}}`` or ``EVALSINK_LOCAL__<FIELD>``)."""

    required: bool = True
    row_group_size: int = Field(
        default=500,
        ge=1,
        description="Rows per parquet row group (and per decoding batch: bounds save()'s memory).",
    )
    compression: Literal["snappy", "zstd", "gzip", "none"] = "snappy"
    """Parquet compression codec of the details files."""
    stream_details: bool = Field(
        default=True,
        description="Convert details to parquet while the evaluation runs, so save() only renames "
        "(local folders) or uploads (other outputs) finished files; off: everything is converted at save().",
    )
    details_path_template: str | None = Field(
        default=None,
        description="Folder holding the {date_id}/ details folders; "
        "placeholders {output_dir}, {org}, {model}.",
    )

    @field_validator("details_path_template")
    @classmethod
    def _fillable(cls, value: str | None) -> str | None:
        """Refuse a template that could not be filled at save(), after the whole evaluation.

        A validator, not a check in the sink's constructor: config validation is all that
        ``evalsink sinks --check`` runs, and it said ok for ``{nope}/x``, which then failed the run.
        """
        if value:
            from evalsink.errors import SinkConfigError
            from evalsink_local.layout import check_template

            try:
                check_template(value, "local sink's details_path_template")
            except SinkConfigError as exc:  # pydantic reports a ValueError, naming the option
                raise ValueError(str(exc)) from None
        return value


class LocalSink(Sink):
    """Writes ``results/{model}/results_{date}.json`` and ``details/{model}/{date}/*.parquet``.

    The details are converted while the evaluation runs (:mod:`evalsink_local.streaming`), so
    ``save()`` mostly renames finished files into place, or uploads them to an object store.
    """

    config_model = LocalSinkConfig
    remote = False
    config: LocalSinkConfig
    _streaming: StreamingDetails | None = None
    _streaming_off = False

    def __init__(self, config: LocalSinkConfig, settings: TrackerSettings) -> None:
        """Check the tracker's results path template now: it is used only at save(), after the
        evaluation (the config's ``details_path_template`` was checked when it was validated)."""
        super().__init__(config, settings)
        from evalsink_local.layout import check_template

        if settings.results_path_template:
            check_template(settings.results_path_template, "results_path_template")

    @hookimpl
    def evalsink_details_batch(self, run: Run, batch: DetailsBatch) -> None:
        """Hand the batch to the streaming conversion. It is only a head start: if it cannot go
        on, it is stopped with a warning and save() converts every task from the spool."""
        if not threading.main_thread().is_alive():
            # the interpreter is exiting (the exit handler's last flush of a run never saved):
            # executors take no work now, and the spool holds the batch for save() or a recovery
            self._stop_streaming(None)
            return
        try:
            if self._streaming is None and not self._streaming_off:
                self._streaming = self._start_streaming(run)
                self._streaming_off = self._streaming is None
            if self._streaming is not None:
                self._streaming.add(batch.task_names, batch.lines())
        except Exception as exc:
            self._stop_streaming(None if pools_shut_down(exc) else exc)

    def _stop_streaming(self, error: Exception | None) -> None:
        if error is not None:
            logger.warning(
                "local sink: converting details while the run goes on failed (%s: %s); every task "
                "will be converted at save() instead",
                type(error).__name__,
                error,
                exc_info=error,
            )
        streaming, self._streaming, self._streaming_off = self._streaming, None, True
        if streaming is not None:
            streaming.discard()

    def _start_streaming(self, run: Run) -> StreamingDetails | None:
        """Stage files beside the spool (on local disk whatever the output): save() renames them
        into a local output folder, or uploads them as they are to any other."""
        if not self.config.stream_details or not run.settings.save_details:
            return None
        import os
        import secrets
        import socket

        from evalsink_local.streaming import STAGING_PREFIX, StreamingDetails, remove_stale_staging

        folder = run.details.path.parent
        remove_stale_staging(folder)
        return StreamingDetails(
            folder / f"{STAGING_PREFIX}{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(4)}",
            row_group_size=self.config.row_group_size,
            compression=self.config.compression,
        )

    @hookimpl
    def evalsink_run_finished(self) -> None:
        if self._streaming is not None:
            streaming, self._streaming = self._streaming, None
            streaming.discard()

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        from evalsink import jsonsafe
        from evalsink_local.layout import layout_for

        assert run.date_id is not None
        layout = layout_for(
            run.output, run.model_name, run.settings.results_path_template, self.config.details_path_template
        )
        data = jsonsafe.dumps(results.model_dump(mode="json"), indent=True)
        if not (layout.results.is_local and layout.details.is_local):
            return self._publish_results_last(run, layout, data)
        written = [layout.results.write_bytes(layout.results_file(run.date_id), data)]
        if run.settings.save_details:
            try:
                written.extend(self._write_details(run, layout))
            except DetailsWriteError as exc:
                exc.outputs = written + exc.outputs
                raise
        return written

    def _publish_results_last(self, run: Run, layout: Layout, data: bytes) -> list[str]:
        """Details, then the results file as the run's commit marker (see the module docstring).

        The paths are returned results first, as on local disk.
        """
        from evalsink.storage import OutputWriteError

        assert run.date_id is not None
        results_file = layout.results_file(run.date_id)
        details: list[str] = []
        details_error: DetailsWriteError | None = None
        if run.settings.save_details:
            try:
                details = self._write_details(run, layout)
            except DetailsWriteError as exc:
                details, details_error = exc.outputs, exc
        if details_error is not None and details_error.store_failed:
            raise RunNotPublishedError(
                f"{details_error}; the results file {layout.results.display(results_file)} was not "
                "written, so the run is not marked complete: save it again from its spool "
                "(evalsink.recovery.recover_run)",
                outputs=details,
            ) from details_error
        try:
            written = [layout.results.write_bytes(results_file, data), *details]
        except OutputWriteError as exc:
            raise RunNotPublishedError(
                f"{exc}; the run is not marked complete: save it again from its spool "
                "(evalsink.recovery.recover_run)"
                + (f"; besides, {details_error}" if details_error is not None else ""),
                outputs=details,
            ) from exc
        if details_error is not None:
            details_error.outputs = written
            raise details_error
        return written

    def _write_details(self, run: Run, layout: Layout) -> list[str]:
        """One parquet file per task; a task whose data fails does not stop the others being published.

        A failure of the store does: once a file could not be uploaded the run cannot be marked
        complete in this save (see the module docstring), and each further upload to a store that
        is down would only wait out its own timeouts. The tasks not attempted are reported.
        """
        import threading

        from evalsink.storage import OutputWriteError
        from evalsink_local.parquet import write_details

        assert run.date_id is not None
        batch = layout.details.batch()
        tasks = run.details.tasks()
        store_failed = threading.Event()
        tasks_left: set[str] = set()

        def write_one(task_name: str) -> Exception | None:
            """The task's failure, or None once its file is staged."""
            if task_name not in tasks_left:
                return None  # streamed while the evaluation ran, adopted above
            if store_failed.is_set():
                return NotAttemptedError("not attempted: the output store failed on an earlier file")
            target = layout.details_file(task_name, run.date_id or "")
            try:
                if task_name in streamed:  # converted already; an object store gets the file as it is
                    with open(streamed[task_name], "rb") as staged, batch.open(target) as handle:
                        shutil.copyfileobj(staged, handle, 1 << 20)
                else:
                    write_details(
                        functools.partial(run.details.iter_records, task_name),
                        functools.partial(batch.open, target),
                        row_group_size=self.config.row_group_size,
                        row_bytes=functools.partial(run.details.lengths, task_name),
                        compression=self.config.compression,
                        on_json_text=functools.partial(json_text.__setitem__, task_name),
                    )
            except OutputWriteError as exc:
                store_failed.set()
                return exc
            except Exception as exc:
                return exc
            return None

        streamed: dict[str, Path] = {}
        json_text: dict[str, list[str]] = {}
        try:
            if self._streaming is not None:
                try:
                    streamed = self._streaming.finish(run.details.count)
                except Exception as exc:
                    self._stop_streaming(exc)
            tasks_left.update(
                task
                for task in tasks
                if not (
                    task in streamed and batch.adopt(streamed[task], layout.details_file(task, run.date_id))
                )
            )
            # Many small tasks are dominated by per-file costs that Arrow pays without the GIL:
            # write two at a time. Large tasks stay one at a time, to keep save()'s memory bounded.
            small = sum(map(run.details.count, tasks_left)) <= len(tasks_left) * self.config.row_group_size
            if len(tasks_left) > 1 and small:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="evalsink-details") as pool:
                    errors = list(pool.map(write_one, tasks))
            else:
                errors = [write_one(task) for task in tasks]
            batch.commit()
        except BaseException:
            batch.discard()
            raise
        self._warn_json_text({task: paths for task, paths in json_text.items() if paths})
        failures = [(task, error) for task, error in zip(tasks, errors, strict=True) if error is not None]
        written = [
            layout.details.display(layout.details_file(task, run.date_id))
            for task, error in zip(tasks, errors, strict=True)
            if error is None
        ]
        if failures:
            raise DetailsWriteError(
                f"details of {len(failures)} task(s) could not be written (the others were): "
                + "; ".join(f"{task!r}: {type(error).__name__}: {error}" for task, error in failures),
                outputs=written,
                store_failed=store_failed.is_set(),
            )
        return written

    def _warn_json_text(self, fields: dict[str, list[str]], shown: int = 10) -> None:
        """Say which fields were written as JSON text: a reader gets strings there, not the values'
        own types (``evalsink_local.reader`` decodes them)."""
        for task_name, paths in list(fields.items())[:shown]:
            self.warn(
                f"details of {task_name!r}: {', '.join(paths)} written as JSON text (values of several "
                "types, empty objects, or nesting too deep for parquet; field metadata "
                "evalsink.encoding=json)"
            )
        if len(fields) > shown:
            self.warn(f"details of {len(fields) - shown} more task(s) have fields written as JSON text")


class NotAttemptedError(Exception):
    """A task whose details were not written because the store had already failed."""


class DetailsWriteError(RuntimeError):
    """Some tasks' details could not be written; the other tasks were.

    ``outputs`` lists what was written, so save()'s report still shows it. ``store_failed`` says
    whether a failure was the output store's (:class:`evalsink.storage.OutputWriteError`) rather
    than the data's.
    """

    def __init__(self, message: str, outputs: list[str], *, store_failed: bool = False) -> None:
        super().__init__(message)
        self.outputs = outputs
        self.store_failed = store_failed


class RunNotPublishedError(RuntimeError):
    """The output store failed, so the run's results file — its commit marker — was not written.

    Raised for outputs that are not on local disk (see the module docstring). ``outputs`` lists
    the details files that were published; the run's spool is kept for a re-save.
    """

    def __init__(self, message: str, outputs: list[str]) -> None:
        super().__init__(message)
        self.outputs = outputs
