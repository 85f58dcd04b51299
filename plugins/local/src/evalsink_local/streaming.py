"""Details converted to parquet while the evaluation runs, so that ``save()`` only publishes them.

Converting at ``save()`` meant reading every sample back from the spool and decoding its JSON
into Python objects, which for lighteval-shaped rows cost more than the logging, all after the
evaluation had finished. Instead the sink takes each batch as it is delivered and a converter
thread turns it into row groups while the evaluation goes on: a task's first row group is decoded
and converted in Python (which fixes the file's schema), every later one goes from the JSON lines
to Arrow in Arrow's JSON reader, which runs without the GIL (:class:`JsonLinesConverter`). Writer
threads encode, compress and write the row groups (also without the GIL) into staged files in the
run's spool folder. ``save()`` renames each complete staged file into place.

Only the fast path of :mod:`evalsink_local.parquet` runs here, with the same row groups, so a
staged file is the file ``save()`` would have written. A task is dropped from streaming, and
converted from the spool at ``save()`` as before, when its rows stop fitting the first row group's
schema, when rows arrive after its file was closed, or when a write fails; the outcome is the same
file either way, only later.

Memory stays bounded, by rows and by bytes: row groups are cut as the save-time path cuts them
(``row_group_size`` rows, or fewer once they reach :data:`~evalsink_local.parquet.MAX_GROUP_BYTES`
of JSON), so a task holds less than one row group pending; a task that no longer appears in the
batches, or the least recently fed one once more than :data:`MAX_PENDING_GROUPS` row groups' worth
of rows or bytes are pending or :data:`MAX_OPEN` tasks are open, has its file finished (and is
dropped if it receives rows again); at most :data:`MAX_QUEUED_BATCHES` batches wait for the
converter thread, and :data:`MAX_IN_FLIGHT_GROUPS` row groups' worth of converted rows or bytes
for the writer threads.
"""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from evalsink import jsonsafe
from evalsink_local.failures import pools_shut_down
from evalsink_local.parquet import (
    MAX_GROUP_BYTES,
    FastConverter,
    JsonLinesConverter,
    SchemaChangedError,
    group_ends_before,
    open_writer,
)

logger = logging.getLogger("evalsink")

MAX_OPEN = 8
"""Tasks with pending rows or an open file at once."""
MAX_PENDING_GROUPS = 4
"""Pending rows of all tasks together, in row groups (so up to four interleaved tasks stream)."""
MAX_IN_FLIGHT_GROUPS = 2
"""Converted rows waiting for the writer threads before the converter waits, in row groups (a
single larger row group still goes through)."""
MAX_QUEUED_BATCHES = 1
"""Delivered batches waiting for the converter before the sink's hook waits. One is enough to keep
the converter busy: with two, 1 x 50,000 peaked 14 MB higher (296 vs 282 MB) and was no faster
(8.71 vs 8.45 s, medians of 5)."""
WRITER_THREADS = 2
"""Files are spread over this many writer threads (Arrow writes without the GIL: two cores)."""


STAGING_PREFIX = "local-staged-"
"""Staging folders are named ``local-staged-{host}-{pid}-{random}`` inside the run's spool folder."""


def remove_stale_staging(run_folder: Path) -> None:
    """Delete the staging folders that processes of this host left when they died (a crash).

    The run's spool is what a crashed run is recovered from; its half-written staged files are
    only clutter that would keep the run's folder from being removed once it is saved.
    """
    host = socket.gethostname()
    for folder in run_folder.glob(f"{STAGING_PREFIX}*"):
        owner, _, rest = folder.name[len(STAGING_PREFIX) :].rpartition("-")[0].rpartition("-")
        if owner != host or not rest.isdigit() or _alive(int(rest)):
            continue
        shutil.rmtree(folder, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


class _TaskFile:
    __slots__ = (
        "closed",
        "converter",
        "dropped",
        "json_converter",
        "path",
        "pending",
        "pending_bytes",
        "rows",
        "scanned",
        "scanned_bytes",
        "writer",
        "writer_thread",
    )

    def __init__(self, path: Path, writer_thread: ThreadPoolExecutor) -> None:
        self.path = path
        self.writer_thread = writer_thread  # every write of one file goes through one thread, in order
        self.converter = FastConverter()
        self.json_converter: JsonLinesConverter | None = None  # once the first row group set the schema
        self.pending: list[bytes] = []
        self.pending_bytes = 0
        self.scanned = 0  # leading pending lines known not to complete a row group yet
        self.scanned_bytes = 0  # and their size
        self.rows = 0  # rows converted and handed to the writer thread
        self.writer: pq.ParquetWriter | None = None  # touched by the writer thread only
        self.closed = False
        self.dropped: str | None = None  # why the task is left to save()

    def complete_group(self, row_group_size: int) -> int:
        """How many of the first pending lines make a complete row group (0: not yet), cut by
        :func:`~evalsink_local.parquet.group_ends_before` as at ``save()``, so a streamed file
        keeps the row groups of the file ``save()`` would write.

        Lines already looked at are not looked at again (a group of 20,000 rows fed one line a
        batch would otherwise cost a quadratic scan on the converter thread, which the logging
        waits on); converting a group resets the scan.
        """
        held = self.scanned_bytes
        for index in range(self.scanned, len(self.pending)):
            weight = len(self.pending[index])
            if group_ends_before(index, held, weight, row_group_size):
                return index
            held += weight
        self.scanned, self.scanned_bytes = len(self.pending), held
        return row_group_size if len(self.pending) >= row_group_size else 0  # full: no need to wait


class StreamingDetails:
    """One run's staged details files: fed batch by batch, finished by :meth:`finish`.

    :meth:`add` returns at once: a converter thread takes the batch (the evaluation goes on
    logging meanwhile) and hands row groups to writer threads. Everything about tasks and their
    pending rows is touched by the converter thread only, then by :meth:`finish` once it is idle.
    """

    def __init__(self, folder: Path, *, row_group_size: int, compression: str) -> None:
        self.folder = folder
        self.row_group_size = row_group_size
        self.compression = compression
        self._tasks: dict[str, _TaskFile] = {}
        self._open: dict[str, _TaskFile] = {}  # least recently fed first
        self._pending_rows = 0
        self._pending_bytes = 0
        self._converter: ThreadPoolExecutor | None = None
        self._writers: list[ThreadPoolExecutor] = []
        self._queued_batches = threading.BoundedSemaphore(MAX_QUEUED_BATCHES)
        self._in_flight = (0, 0)  # converted rows, and their JSON bytes, not written yet
        self._written = threading.Condition()
        self._broken: BaseException | None = None
        self._discarding = False

    # -- the sink's thread -----------------------------------------------------------------
    def add(self, task_names: Sequence[str], lines: Sequence[bytes]) -> None:
        """Queue one delivered batch: its samples' task names and spool lines, in logging order."""
        rows = list(zip(task_names, lines, strict=True))
        if self._converter is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self._converter = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalsink-local-convert")
            self._writers = [
                ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"evalsink-local-write{index}")
                for index in range(WRITER_THREADS)
            ]
        self._queued_batches.acquire()
        try:
            if self._discarding or self._converter is None:
                # discarded while this waited for room (the run ended under it: Ctrl-C at exit)
                self._queued_batches.release()
                return
            future = self._converter.submit(self._add_now, rows)
        except BaseException:
            self._queued_batches.release()
            raise
        future.add_done_callback(lambda _: self._queued_batches.release())

    def finish(self, expected_rows: Callable[[str], int]) -> dict[str, Path]:
        """Finish every file; return the complete ones (``expected_rows(task)`` rows each) by task."""
        if self._converter is not None:
            self._converter.shutdown(wait=True)
            self._converter = None
        if self._broken is None:
            for task_name in list(self._open):
                self._close(task_name)
        self._wait_for_writers()
        if self._broken is not None:
            return {}
        complete: dict[str, Path] = {}
        for task_name, task in self._tasks.items():
            if task.dropped:
                logger.debug("details of %r converted at save(): %s", task_name, task.dropped)
            elif task.rows == expected_rows(task_name):
                complete[task_name] = task.path
            else:
                logger.debug("details of %r converted at save(): the spool holds other rows", task_name)
        return complete

    def discard(self) -> None:
        """Stop the threads and delete what is still staged (after save(), or a failed run).

        Queued batches are dropped and queued writes skipped: after a failure (or Ctrl-C) there is
        no point converting what is about to be deleted.
        """
        self._discarding = True
        if self._converter is not None:
            self._converter.shutdown(wait=True, cancel_futures=True)
            self._converter = None
        self._wait_for_writers()
        for task in self._tasks.values():
            self._end(task)
        self._tasks.clear()
        self._open.clear()
        shutil.rmtree(self.folder, ignore_errors=True)

    def _wait_for_writers(self) -> None:
        for writer_thread in self._writers:
            writer_thread.shutdown(wait=True)
        self._writers = []

    # -- the converter thread --------------------------------------------------------------
    def _add_now(self, records: list[tuple[str, bytes]]) -> None:
        if self._broken is not None or self._discarding:
            return
        try:
            self._add_batch(records)
        except BaseException as exc:  # a bug here must not cost the details: save() converts them
            self._broken = exc
            if pools_shut_down(exc):  # Ctrl-C: the spool has the details, nothing broke
                logger.debug("streaming the details stopped: the run is ending")
                return
            logger.error(
                "streaming the details failed; every task will be converted at save() instead: %s: %s",
                type(exc).__name__,
                exc,
                exc_info=exc,
            )

    def _add_batch(self, records: list[tuple[str, bytes]]) -> None:
        groups: dict[str, list[bytes]] = {}
        for task_name, line in records:
            groups.setdefault(task_name, []).append(line)
        for task_name in [name for name in self._open if name not in groups]:
            self._close(task_name)  # not in this batch: its samples have most likely all come
        for task_name, rows in groups.items():
            task = self._tasks.get(task_name)
            if task is None:
                writer_thread = self._writers[len(self._tasks) % len(self._writers)]
                path = self.folder / f"{secrets.token_hex(8)}.parquet.part"  # not a .parquet until adopted
                task = self._tasks[task_name] = _TaskFile(path, writer_thread)
            if task.dropped:
                continue
            if task.closed:
                self._drop(task_name, task, "more samples arrived after its file was finished")
                continue
            if task.converter.schema is None and any(map(jsonsafe.has_bytes, rows)):
                # a binary column never takes the fast path: no point holding its rows here
                self._drop(task_name, task, "its rows carry bytes (images), converted at save()")
                continue
            self._open.pop(task_name, None)
            self._open[task_name] = task  # now the most recently fed
            added = sum(map(len, rows))
            task.pending.extend(rows)
            task.pending_bytes += added
            self._pending_rows += len(rows)
            self._pending_bytes += added
            while not task.dropped and (count := task.complete_group(self.row_group_size)):
                self._convert(task_name, task, count)
            self._enforce_limits(keep=task_name)

    def _enforce_limits(self, keep: str) -> None:
        for task_name in list(self._open):
            if (
                self._pending_rows <= MAX_PENDING_GROUPS * self.row_group_size
                and self._pending_bytes <= MAX_PENDING_GROUPS * MAX_GROUP_BYTES
                and len(self._open) <= MAX_OPEN
            ):
                return
            if task_name != keep:
                self._close(task_name)

    def _convert(self, task_name: str, task: _TaskFile, count: int) -> None:
        lines, task.pending = task.pending[:count], task.pending[count:]
        task.scanned = task.scanned_bytes = 0
        size = sum(map(len, lines))
        task.pending_bytes -= size
        self._pending_rows -= len(lines)
        self._pending_bytes -= size
        try:
            batch = self._converted(task, lines)
        except SchemaChangedError:
            self._drop(task_name, task, "its rows do not keep one schema")
            return
        except Exception as exc:
            # Unexpected (an Arrow or evalsink bug, these rows only): this task alone is left to
            # save(), which converts it from the spool by its own path (or raises there, for the
            # task only); the other tasks keep streaming.
            logger.warning(
                "details of %r will be converted at save(): converting them while the run goes on "
                "failed: %s: %s",
                task_name,
                type(exc).__name__,
                exc,
                exc_info=exc,
            )
            self._drop(task_name, task, f"converting its rows failed: {type(exc).__name__}: {exc}")
            return
        task.rows += len(lines)
        self._run(task, lambda: self._write(task, batch), rows=len(lines), size=size)

    @staticmethod
    def _converted(task: _TaskFile, lines: list[bytes]) -> pa.RecordBatch:
        """One row group of ``task``: by Arrow's JSON reader once the file's schema is fixed, else
        (the first row group, or lines the reader refused) decoded and converted in Python."""
        if task.converter.schema is not None:
            if task.json_converter is None:
                task.json_converter = JsonLinesConverter(task.converter.schema)
            batch = task.json_converter.convert(lines)
            if batch is not None:
                return batch
        return task.converter.convert([orjson.loads(line) for line in lines])

    def _close(self, task_name: str) -> None:
        task = self._open.pop(task_name)
        if task.pending:
            self._convert(task_name, task, len(task.pending))
            if task.dropped:
                return
        task.closed = True
        self._run(task, lambda: self._write(task, None))

    def _drop(self, task_name: str, task: _TaskFile, why: str) -> None:
        self._open.pop(task_name, None)
        self._pending_rows -= len(task.pending)
        self._pending_bytes -= task.pending_bytes
        task.pending, task.pending_bytes = [], 0
        task.scanned = task.scanned_bytes = 0
        task.dropped = why
        self._run(task, lambda: self._end(task))

    def _run(self, task: _TaskFile, work: Callable[[], None], rows: int = 0, size: int = 0) -> None:
        """Queue work on the task's writer thread; wait first while too many converted rows (or
        bytes: a few huge rows weigh more than many small ones) are queued."""
        row_limit = MAX_IN_FLIGHT_GROUPS * self.row_group_size
        byte_limit = MAX_IN_FLIGHT_GROUPS * MAX_GROUP_BYTES

        def room() -> bool:
            queued_rows, queued_bytes = self._in_flight
            return queued_rows == 0 or (queued_rows + rows <= row_limit and queued_bytes + size <= byte_limit)

        with self._written:
            self._written.wait_for(room)
            self._in_flight = (self._in_flight[0] + rows, self._in_flight[1] + size)
        try:
            future = task.writer_thread.submit(work)
        except BaseException:
            self._done(rows, size)
            raise
        future.add_done_callback(lambda _: self._done(rows, size))

    def _done(self, rows: int, size: int) -> None:
        with self._written:
            self._in_flight = (self._in_flight[0] - rows, self._in_flight[1] - size)
            self._written.notify_all()

    # -- the writer threads ----------------------------------------------------------------
    def _write(self, task: _TaskFile, batch: pa.RecordBatch | None) -> None:
        """Write a row group, or (``batch`` None) finish the file; a failure drops the task."""
        if task.dropped or self._discarding:
            return
        try:
            if batch is not None:
                if task.writer is None:
                    task.writer = open_writer(str(task.path), batch.schema, self.compression)
                task.writer.write_batch(batch, self.row_group_size)
            elif task.writer is not None:
                task.writer.close()
                task.writer = None
                if task.rows >= self.row_group_size:  # big files now; small ones in one go at commit
                    descriptor = os.open(task.path, os.O_RDONLY)
                    try:
                        os.fsync(descriptor)
                    finally:
                        os.close(descriptor)
        except Exception as exc:
            task.dropped = f"writing its staged file failed: {type(exc).__name__}: {exc}"
            logger.warning("details of one task will be converted at save(): %s", task.dropped)
            self._end(task)

    def _end(self, task: _TaskFile) -> None:
        """Close a dropped task's file, if open, and delete it."""
        if task.writer is not None:
            writer, task.writer = task.writer, None
            try:
                writer.close()
            except Exception as exc:  # the file is deleted below; the cause was reported already
                logger.debug("closing a dropped staged details file failed: %s: %s", type(exc).__name__, exc)
        task.path.unlink(missing_ok=True)
