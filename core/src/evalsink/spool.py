"""The on-disk spool: every logged sample, appended as one JSON line, fsynced at each flush.

Holding every sample in memory until ``save()`` is what costs lighteval 4.5 GB for 50k samples.
Here a sample is encoded once, when it is logged, and kept in a small buffer until the next flush;
after that only its byte offset stays in memory. Everything downstream (the parquet writer,
remote sinks, crash recovery) reads the spool back task by task.

File format (documented for recovery tools): UTF-8 JSON objects, one per line, each with the keys
``task_name``, ``doc``, ``model_response`` and ``metric``. A line without its final newline is a
write cut short by a crash and is ignored when the spool is scanned.
"""

from __future__ import annotations

import bisect
import contextlib
import logging
import operator
import os
import time
from array import array
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, overload

import orjson

from evalsink.errors import EvalsinkError, SpoolWriteError
from evalsink.run import DetailsBatch

logger = logging.getLogger("evalsink")

_READ_SPAN = 4 << 20  # bytes read at once when records are contiguous
MAX_BUFFERED_BYTES = 16 << 20
"""Buffered samples are flushed once they hold this much, whatever ``flush_every`` says: samples
carrying images or long-context prompts are hundreds of kilobytes each, and 1,000 of them held
~1.3 GB (the lighteval-shaped 12 KB samples flush every 1,000 at 12 MB, unaffected). A batch is
copied a few times on its way to parquet, so this bound counts several times in the peak: 16 MB
instead of 32 MB took 1,500 prompts of 300 KB from 587 to 381 MB."""


class DetailSpool:
    """Append-only file of detail records with an in-memory index of offsets per task."""

    def __init__(
        self,
        path: Path,
        *,
        flush_every: int = 1000,
        flush_seconds: float = 10.0,
        fsync: bool = True,
    ) -> None:
        try:  # any integer (numpy's too), not a bool or a float
            count = -1 if isinstance(flush_every, bool) else operator.index(flush_every)
        except TypeError:
            count = -1
        if count < 1:
            raise ValueError(f"flush_every must be a whole number of samples, 1 or more; got {flush_every!r}")
        flush_every = count
        seconds_ok = isinstance(flush_seconds, (int, float)) and not isinstance(flush_seconds, bool)
        if not seconds_ok or not flush_seconds >= 0:  # NaN too: it would silently turn timed flushes off
            raise ValueError(f"flush_seconds must be a number of seconds, 0 or more; got {flush_seconds!r}")
        self.path = path
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self.fsync = fsync
        self._file: Any = None
        self._owner = 0  # the process that opened the file
        self._torn = False  # a failed write may have left part of a batch at the end of the file
        self._written = 0  # bytes on disk
        self._buffer = bytearray()  # the pending lines, newline-terminated, as they will be written
        self._starts = array("Q")  # where each pending line starts in the buffer
        self._pending_tasks: list[str] = []
        self._offsets: dict[str, array[int]] = {}
        self._lengths: dict[str, array[int]] = {}
        self._oldest = 0.0  # when the oldest buffered sample was logged
        self._sequence = 0  # samples logged so far, across tasks
        self.corrupt_lines = 0  # lines skipped by reopen()
        self.before_write: Callable[[], None] | None = None
        """Called before each batch is written: the tracker writes the run's manifest there, so
        that what it says of the batch (which metrics were None) is on disk before the batch is.
        Written after, a kill between the two lost it, and those Nones were read back as NaN."""

    # -- writing ---------------------------------------------------------------------------
    def append(self, task_name: str, line: bytes) -> DetailsBatch | None:
        """Buffer one encoded record (without newline); return the batch if this flushed it."""
        offsets = self._offsets.get(task_name)
        if offsets is None:
            offsets = self._offsets[task_name] = array("Q")
            self._lengths[task_name] = array("Q")
        if not self._pending_tasks:
            self._oldest = time.monotonic()
        start = len(self._buffer)
        # copied into one buffer: orjson's output can hold several times its length in memory, and
        # one buffer is written without joining. The buffer grows first: if that fails, the index
        # is left as it was
        self._buffer += line
        self._buffer += b"\n"
        offsets.append(self._written + start)
        self._lengths[task_name].append(len(line))
        self._starts.append(start)
        self._pending_tasks.append(task_name)
        self._sequence += 1
        if (
            len(self._pending_tasks) >= self.flush_every
            or len(self._buffer) >= MAX_BUFFERED_BYTES
            or time.monotonic() - self._oldest >= self.flush_seconds
        ):
            try:
                return self.flush()
            except OSError as exc:
                # the caller's natural move, logging the sample again once there is room, wrote
                # it twice: say that it is kept
                raise SpoolWriteError(
                    exc.errno,
                    f"could not write the details spool {self.path}: {exc.strerror or exc}. This sample "
                    f"and the {len(self._pending_tasks) - 1} before it are kept in memory and written by "
                    "the next flush (the next log() or save(), once there is room): do not log it again",
                ) from exc
        return None

    def flush(self) -> DetailsBatch | None:
        """Write and fsync the buffer; return what was written as a batch (None if empty).

        A write that fails (a full disk, a quota) may have written part of the buffer: the file is
        cut back to what earlier flushes wrote and the buffer kept, so the records' offsets stay
        right and a later flush (once there is room) writes the buffer exactly once. Appending it
        after the torn part made 27 of 850 records unreadable, and recovery could read some twice.
        Should the cut itself fail, the next flush cuts first and writes nothing until it has.
        """
        if not self._pending_tasks:
            return None
        if self._file is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._file = open(self.path, "ab", buffering=0)  # noqa: SIM115 - held open for the run
            self._owner = os.getpid()
        if self._torn:
            self._cut_torn_tail()  # raises, before anything is appended, while the cut fails
        if self.before_write is not None:
            self.before_write()
        data, starts, tasks = self._buffer, self._starts, self._pending_tasks
        self._torn = True
        try:
            with memoryview(data) as view:
                done = 0
                while done < len(view):  # an unbuffered write may write less than asked
                    done += self._file.write(view[done:])
            if self.fsync:
                os.fsync(self._file.fileno())
        except BaseException:
            try:
                self._cut_torn_tail()
            except OSError as cut_error:  # the write's own error is the one to raise
                logger.warning(
                    "could not cut the spool %s back after a failed write: %s", self.path, cut_error
                )
            raise
        self._torn = False
        first = self._sequence - len(tasks)
        self._written += len(data)
        self._buffer, self._starts, self._pending_tasks = bytearray(), array("Q"), []
        return DetailsBatch(tasks, BufferLines(data, starts), first_index=first)

    def _cut_torn_tail(self) -> None:
        """Truncate the file to what complete flushes wrote (freeing space: works on a full disk).

        Only in the process that opened it: a forked child's ``_written`` is out of date, and its
        cut would delete what the parent flushed after the fork; a child's torn write stays torn
        (``reopen()`` skips a broken line)."""
        if self._owner == os.getpid():
            os.ftruncate(self._file.fileno(), self._written)
        self._torn = False

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        """Delete the spool file, and its folder once empty (after a run whose every sink succeeded)."""
        self.close()
        self.path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):  # another spool of the same run still lives there
            self.path.parent.rmdir()

    # -- reading ---------------------------------------------------------------------------
    def tasks(self) -> list[str]:
        """Task names in the order their first sample was logged."""
        return list(self._offsets)

    def count(self, task_name: str) -> int:
        offsets = self._offsets.get(task_name)
        return len(offsets) if offsets is not None else 0

    def lengths(self, task_name: str) -> Sequence[int]:
        """The JSON size of each of the task's records, in logging order (what converting them
        costs in memory scales with)."""
        return self._lengths.get(task_name, array("Q"))

    def __len__(self) -> int:
        return self._sequence

    @property
    def flushed_bytes(self) -> int:
        """The spool file's size as far as this spool wrote it (a clean line boundary)."""
        return self._written

    def iter_lines(self, task_name: str) -> Iterator[bytes]:
        """The raw JSON lines of one task, in logging order, buffered samples included.

        Reading never flushes: a flush is what hands a batch to the sinks, and only the logger
        does that. Records that lie next to each other in the file are read with one ``pread`` of
        up to ``_READ_SPAN`` bytes, so a task logged in one stretch costs a few reads, and
        interleaved tasks cost one small read per record, never a buffer refill.
        """
        offsets = self._offsets.get(task_name)
        if not offsets:
            return
        lengths = self._lengths[task_name]
        on_disk = bisect.bisect_left(offsets, self._written)
        if on_disk:
            yield from self._read(offsets, lengths, on_disk)
        if on_disk < len(offsets):
            pending = BufferLines(self._buffer, self._starts)
            yield from (pending[index] for index, task in enumerate(self._pending_tasks) if task == task_name)

    def _read(self, offsets: array[int], lengths: array[int], count: int) -> Iterator[bytes]:
        try:
            descriptor = os.open(self.path, os.O_RDONLY)
        except FileNotFoundError:
            raise EvalsinkError(
                f"the details spool {self.path} is gone (removed when its run closed); "
                "read the saved details with load_details_datasets(date_id, task_names)"
            ) from None
        try:
            index = 0
            while index < count:
                start, end, stop = offsets[index], offsets[index] + lengths[index] + 1, index + 1
                while stop < count and offsets[stop] == end and end - start < _READ_SPAN:
                    end += lengths[stop] + 1
                    stop += 1
                chunk = os.pread(descriptor, end - start, start)
                if len(chunk) != end - start:
                    raise OSError(f"spool {self.path} is shorter than its index (truncated?)")
                position = 0
                for item in range(index, stop):
                    length = lengths[item]
                    yield chunk[position : position + length]
                    position += length + 1
                index = stop
        finally:
            os.close(descriptor)

    def iter_records(self, task_name: str) -> Iterator[dict[str, Any]]:
        """Decoded records of one task: dicts with task_name, doc, model_response, metric."""
        for line in self.iter_lines(task_name):
            yield orjson.loads(line)

    # -- recovery --------------------------------------------------------------------------
    def flushed_batches(self, size: int) -> Iterator[DetailsBatch]:
        """What is on disk, in file order, as batches of ``size`` records (a resumed run's replay).

        Lines :meth:`reopen` skipped as unreadable are skipped here too.
        """
        tasks: list[str] = []
        lines: list[bytes] = []
        first = 0
        with open(self.path, "rb") as handle:
            remaining = self._written
            for line in handle:
                if remaining <= 0:
                    break
                remaining -= len(line)
                body = line.rstrip(b"\n")
                task = _task_of(body)
                if task is None:
                    continue
                tasks.append(task)
                lines.append(body)
                if len(lines) >= size:
                    yield DetailsBatch(tasks, lines, first_index=first)
                    first += len(lines)
                    tasks, lines = [], []
        if lines:
            yield DetailsBatch(tasks, lines, first_index=first)

    @classmethod
    def reopen(cls, path: Path, **kwargs: Any) -> DetailSpool:
        """Rebuild the index of an existing spool (after a crash).

        A torn last line (no newline: the write was cut short) is cut off so new appends stay
        line-aligned; an unreadable line elsewhere is skipped and counted in ``corrupt_lines``.
        """
        spool = cls(path, **kwargs)
        offset = 0
        with open(path, "rb") as handle:
            for line in handle:
                if not line.endswith(b"\n"):
                    break
                body = line[:-1]
                task = _task_of(body)
                if task is None:
                    spool.corrupt_lines += 1
                    offset += len(line)
                    continue
                if task not in spool._offsets:
                    spool._offsets[task] = array("Q")
                    spool._lengths[task] = array("Q")
                spool._offsets[task].append(offset)
                spool._lengths[task].append(len(body))
                offset += len(line)
                spool._sequence += 1
        spool._written = offset
        if path.stat().st_size != offset:
            with open(path, "r+b") as handle:  # cut the torn tail so new appends stay line-aligned
                handle.truncate(offset)
        return spool


class BufferLines(Sequence[bytes]):
    """Newline-terminated lines in one buffer, handed out (without the newline) as bytes on demand."""

    __slots__ = ("_buffer", "_starts")

    def __init__(self, buffer: bytes | bytearray, starts: array[int]) -> None:
        self._buffer = buffer
        self._starts = starts

    def __len__(self) -> int:
        return len(self._starts)

    @overload
    def __getitem__(self, index: int) -> bytes: ...
    @overload
    def __getitem__(self, index: slice) -> list[bytes]: ...
    def __getitem__(self, index: int | slice) -> bytes | list[bytes]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        index = range(len(self._starts))[index]  # negative indices; IndexError when out of range
        return self._line(index)

    def __iter__(self) -> Iterator[bytes]:
        return (self._line(index) for index in range(len(self._starts)))

    def _line(self, index: int) -> bytes:
        start = self._starts[index]
        end = self._starts[index + 1] if index + 1 < len(self._starts) else len(self._buffer)
        with memoryview(self._buffer) as view:  # released at once: a pending buffer still grows
            return bytes(view[start : end - 1])


def _task_of(line: bytes) -> str | None:
    """The task name of a spool line, or None for a line that is not a readable record."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return None
    task = record.get("task_name") if isinstance(record, dict) else None
    return task if isinstance(task, str) else None
