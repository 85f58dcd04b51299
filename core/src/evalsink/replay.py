"""Re-publishing a saved run (evalsink's or lighteval's files) to other sinks: ``evalsink push``.

A run evaluated offline on a cluster, or whose push failed, is on disk as a results JSON and one
details parquet per task. Replaying it builds a tracker with the chosen sinks, logs every saved
sample into it (so streaming sinks receive batches as during the evaluation) and hands them the
saved results unchanged — re-aggregating would lose a task's own aggregation. The run keeps its
``date_id``, so sinks name what they write as the first save did.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from evalsink.errors import EvalsinkError
from evalsink.paths import model_path, task_file_part

if TYPE_CHECKING:
    from evalsink.report import SaveReport
    from evalsink.results_files import LoadedResults
    from evalsink.storage import OutputDir


class SavedRun:
    """Where a saved run's files are: the tracker arguments that would write them there again."""

    def __init__(self, loaded: LoadedResults) -> None:
        if loaded.file.date_id is None:
            raise EvalsinkError(
                f"{loaded.file.path}: not named results_<date_id>.json, so its details cannot be found"
            )
        self.loaded = loaded
        self.date_id: str = loaded.file.date_id
        self.model_name = loaded.results.config_general.model_name
        folder = loaded.file.path.parent.absolute()
        parts = tuple(model_path(self.model_name).split("/"))
        self.results_path_template: str | None
        if folder.parts[-len(parts) :] == parts and folder.parents[len(parts) - 1].name == "results":
            self.output_dir = folder.parents[len(parts)]  # lighteval's layout: {output_dir}/results/{model}
            self.results_path_template = None
        else:  # written with a results_path_template: details are in {results folder}/details
            self.output_dir = folder
            self.results_path_template = str(folder)

    def details_files(self) -> dict[str, str]:
        """Task name -> details file of the run ({} when the run saved no details)."""
        from evalsink.storage import OutputDir
        from evalsink_local.reader import saved_tasks

        try:
            _, files = saved_tasks(
                OutputDir(self.output_dir), self.model_name, self.date_id, self.results_path_template
            )
        except FileNotFoundError:
            return {}
        results = self.loaded.results
        names = {task_file_part(task): task for task in [*results.summary_tasks, *results.results] if task}
        return {names.get(part, unquote(part)): path for part, path in sorted(files.items())}

    def count_rows(self) -> int:
        return sum(_parquet_rows(path) for path in self.details_files().values())

    def checked_details_files(self) -> dict[str, str]:
        """:meth:`details_files`, once the run is known to push whole: every task has its file
        and every file reads as parquet (its footer). Raises :class:`EvalsinkError` otherwise.

        A task whose file was missing was pushed without its details and the push said ok; a
        corrupt file ended it in a pyarrow traceback, after the sinks had received the tasks
        before it. A run with no details file at all was saved with ``save_details=False``: its
        results alone are pushed.
        """
        details = self.details_files()
        if details:
            missing = [task for task in self.loaded.results.summary_tasks if task and task not in details]
            if missing:
                folder = Path(next(iter(details.values()))).parent
                raise EvalsinkError(
                    f"{folder}: no details file for task(s) {', '.join(map(repr, missing))} of "
                    f"{self.loaded.file.path.name} (its other tasks have one); nothing was pushed: "
                    "restore the missing files (or move that folder away to push the results alone)"
                )
        for path in details.values():
            _parquet_rows(path)
        return details


def _parquet_rows(path: str) -> int:
    """The row count in a details file's footer; an :class:`EvalsinkError` naming the file when it
    is not a readable parquet file (pyarrow's own error is a traceback for the user)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return int(pq.read_metadata(path).num_rows)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise _unreadable(path, exc) from exc


def _unreadable(path: str, exc: BaseException) -> EvalsinkError:
    """One line naming the file (pyarrow's thrift errors span several)."""
    why = " ".join(str(exc).split())
    return EvalsinkError(f"{path}: not a readable details parquet file ({type(exc).__name__}: {why})")


def _records(output: OutputDir, path: str) -> Iterator[dict[str, Any]]:
    """The records of one details file (:func:`evalsink_local.reader.iter_details`); a file that
    turns out corrupt past its footer is an :class:`EvalsinkError` naming it, like one refused by
    :meth:`SavedRun.checked_details_files`. Only reading is guarded: an error of the tracker the
    records are logged into passes through unchanged."""
    import pyarrow as pa

    from evalsink_local.reader import iter_details

    try:
        yield from iter_details(output, path)
    except (pa.ArrowException, OSError, ValueError) as exc:  # and JSON-text columns that do not decode
        raise _unreadable(path, exc) from exc


def check_targets(sinks: Sequence[str]) -> None:
    """Refuse sinks that would fail every push, before any run is read (or a progress bar drawn)."""
    from evalsink.discovery import find_sinks

    if "local" in sinks:
        raise EvalsinkError("the local sink is where a pushed run is read from; push to the other sinks")
    if not sinks:
        raise EvalsinkError("no sink to push to")
    find_sinks(list(sinks))  # not installed, or claimed twice


def replay_run(
    saved: SavedRun,
    sinks: Sequence[str],
    *,
    sink_config: dict[str, Any] | None = None,
    tracker_options: dict[str, Any] | None = None,
    on_sample: Callable[[], None] | None = None,
) -> SaveReport:
    """Send a saved run to ``sinks`` (never ``local``: the files are where the run is read from)."""
    from evalsink.storage import OutputDir
    from evalsink.tracker import EvaluationTracker

    check_targets(sinks)
    details = saved.checked_details_files()  # before the sinks hear of the run
    tracker = EvaluationTracker(
        saved.output_dir,
        results_path_template=saved.results_path_template,
        save_details=bool(details),
        sinks=list(sinks),
        sink_config=sink_config,
        run_id=f"push-{uuid.uuid4().hex[:12]}",
        **(tracker_options or {}),
    )
    spool_folder = tracker.details_logger.spool.path.parent
    try:
        config = saved.loaded.results.config_general.model_dump(mode="json", by_alias=True)
        tracker.general_config_logger.restore(config)
        tracker.general_config_logger.end_time = config.get("end_time")
        output = OutputDir(saved.output_dir)
        for task, path in details.items():
            for record in _records(output, path):
                metric = record.get("metric") or {}
                tracker.details_logger.log(task, record.get("doc"), record.get("model_response"), metric)
                if on_sample is not None:
                    on_sample()
        return tracker.publish(saved.loaded.results, saved.date_id)
    finally:
        tracker.close()
        # the spool duplicates files that stay on disk: never leave it for `evalsink recover`
        shutil.rmtree(spool_folder, ignore_errors=True)
        for folder in (spool_folder.parent, spool_folder.parent.parent):
            if folder.name in {"runs", ".evalsink"} and folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()


def saved_runs(
    path: str | Path, *, model: str | None = None, date: str | None = None, every: bool = False
) -> list[SavedRun]:
    """The runs under ``path`` to push: the newest of each model unless ``every``."""
    from evalsink.results_files import find_results_files, load_results, select_runs

    files = select_runs(find_results_files(path), model=model, date=date, every=every)
    return [SavedRun(load_results(file)) for file in files]
