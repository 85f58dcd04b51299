"""evalsink's local sink: lighteval's results JSON and details parquet files, written safely.

Results are written first, then each task's details are converted from the run's spool, so a
details problem never costs the results. Every file is published atomically (see
:mod:`evalsink.storage`). pyarrow is imported only when this sink is enabled.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Literal

from pydantic import Field

from evalsink import Sink, SinkConfig, hookimpl
from evalsink.models import EvaluationResults
from evalsink.run import Run

if TYPE_CHECKING:
    from evalsink_local.layout import Layout

__all__ = ["LocalSink", "LocalSinkConfig"]


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
    details_path_template: str | None = Field(
        default=None,
        description="Folder holding the {date_id}/ details folders; "
        "placeholders {output_dir}, {org}, {model}.",
    )


class LocalSink(Sink):
    """Writes ``results/{model}/results_{date}.json`` and ``details/{model}/{date}/*.parquet``."""

    config_model = LocalSinkConfig
    remote = False
    config: LocalSinkConfig

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        from evalsink import jsonsafe
        from evalsink_local.layout import layout_for

        assert run.date_id is not None
        layout = layout_for(
            run.output, run.model_name, run.settings.results_path_template, self.config.details_path_template
        )
        written = [
            layout.results.write_bytes(
                layout.results_file(run.date_id), jsonsafe.dumps(results.model_dump(mode="json"), indent=True)
            )
        ]
        if run.settings.save_details:
            try:
                written.extend(self._write_details(run, layout))
            except DetailsWriteError as exc:
                exc.outputs = written + exc.outputs
                raise
        return written

    def _write_details(self, run: Run, layout: Layout) -> list[str]:
        """One parquet file per task; a task that fails does not stop the others being published."""
        from evalsink_local.parquet import write_details

        assert run.date_id is not None
        batch = layout.details.batch()
        tasks = run.details.tasks()

        def write_one(task_name: str) -> str | None:
            """The task's failure as a message, or None once its file is staged."""
            try:
                write_details(
                    functools.partial(run.details.iter_records, task_name),
                    functools.partial(batch.open, layout.details_file(task_name, run.date_id or "")),
                    row_group_size=self.config.row_group_size,
                    compression=self.config.compression,
                )
            except Exception as exc:
                return f"{task_name!r}: {type(exc).__name__}: {exc}"
            return None

        try:
            # Many small tasks are dominated by per-file costs that Arrow pays without the GIL:
            # write two at a time. Large tasks stay one at a time, to keep save()'s memory bounded.
            small = len(run.details) <= len(tasks) * self.config.row_group_size
            if len(tasks) > 1 and small:
                from concurrent.futures import ThreadPoolExecutor

                with ThreadPoolExecutor(max_workers=2, thread_name_prefix="evalsink-details") as pool:
                    errors = list(pool.map(write_one, tasks))
            else:
                errors = [write_one(task) for task in tasks]
            batch.commit()
        except BaseException:
            batch.discard()
            raise
        failures = [error for error in errors if error is not None]
        written = [
            layout.details.display(layout.details_file(task, run.date_id))
            for task, error in zip(tasks, errors, strict=True)
            if error is None
        ]
        if failures:
            raise DetailsWriteError(
                f"details of {len(failures)} task(s) could not be written (the others were): "
                + "; ".join(failures),
                outputs=written,
            )
        return written


class DetailsWriteError(RuntimeError):
    """Some tasks' details failed to convert; the results and the other tasks were written.

    ``outputs`` lists what was written, so save()'s report still shows it.
    """

    def __init__(self, message: str, outputs: list[str]) -> None:
        super().__init__(message)
        self.outputs = outputs
