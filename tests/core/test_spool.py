"""DetailSpool: batches by count and by time, per-task read-back (never flushing), crash recovery,
removal."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from evalsink import spool as spool_module
from evalsink.errors import SpoolWriteError
from evalsink.run import DetailsBatch
from evalsink.spool import DetailSpool


def _line(task: str, i: int) -> bytes:
    return json.dumps(
        {"task_name": task, "doc": {"query": f"{task}-{i}"}, "model_response": {}, "metric": {"i": i}}
    ).encode()


def _append_all(spool: DetailSpool, items: list[tuple[str, int]]) -> list[DetailsBatch]:
    batches = []
    for task, i in items:
        batch = spool.append(task, _line(task, i))
        if batch is not None:
            batches.append(batch)
    return batches


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "runs" / "r1" / "details.jsonl"


def test_flush_every_must_be_positive(path: Path) -> None:
    with pytest.raises(ValueError, match="flush_every"):
        DetailSpool(path, flush_every=0)


@pytest.mark.parametrize("bad", [0, -1, "10", 2.5, True, None])
def test_flush_every_must_be_a_whole_number(path: Path, bad: object) -> None:
    expected = f"flush_every must be a whole number of samples, 1 or more; got {bad!r}"
    with pytest.raises(ValueError, match=re.escape(expected)):
        DetailSpool(path, flush_every=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [-1.0, float("nan"), "10", None])
def test_flush_seconds_must_be_a_number_of_seconds(path: Path, bad: object) -> None:
    """NaN compared false with every age, which silently turned timed flushes off."""
    with pytest.raises(ValueError, match="flush_seconds must be a number of seconds, 0 or more"):
        DetailSpool(path, flush_seconds=bad)  # type: ignore[arg-type]


def test_flush_every_takes_any_integer(path: Path) -> None:
    import numpy as np

    assert DetailSpool(path, flush_every=np.int64(500)).flush_every == 500


def test_flush_by_count(path: Path) -> None:
    spool = DetailSpool(path, flush_every=3, flush_seconds=1e9, fsync=False)
    results = [spool.append("t", _line("t", i)) for i in range(7)]
    assert [r is not None for r in results] == [False, False, True, False, False, True, False]
    first, second = results[2], results[5]
    assert first is not None
    assert second is not None
    assert (len(first), first.first_index) == (3, 0)
    assert (len(second), second.first_index) == (3, 3)
    rest = spool.flush()
    assert rest is not None
    assert (len(rest), rest.first_index) == (1, 6)
    assert spool.flush() is None  # nothing pending
    assert len(spool) == 7


def test_flush_by_size_whatever_flush_every_says(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Samples carrying images are hundreds of kilobytes: 1,000 of them must not sit in memory."""
    monkeypatch.setattr(spool_module, "MAX_BUFFERED_BYTES", 1000)
    spool = DetailSpool(path, flush_every=1000, flush_seconds=1e9, fsync=False)
    big = json.dumps({"task_name": "t", "doc": {"image": "x" * 390}}).encode()  # ~420 bytes a line
    results = [spool.append("t", big) for _ in range(7)]
    assert [r is not None for r in results] == [False, False, True, False, False, True, False]
    assert [len(r) for r in results if r is not None] == [3, 3]
    assert list(spool.lengths("t")) == [len(big)] * 7
    assert list(spool.lengths("other")) == []


def test_nothing_touches_the_disk_before_the_first_flush(path: Path) -> None:
    spool = DetailSpool(path, flush_every=10, flush_seconds=1e9, fsync=False)
    spool.append("t", _line("t", 0))
    assert not path.exists()
    spool.flush()
    assert path.read_bytes() == _line("t", 0) + b"\n"


def test_flush_by_time_counts_from_the_oldest_buffered_sample(
    path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(spool_module.time, "monotonic", lambda: clock[0])
    spool = DetailSpool(path, flush_every=1000, flush_seconds=5.0, fsync=False)
    clock[0] += 60.0  # idle before the first sample: not counted
    assert spool.append("t", _line("t", 0)) is None
    clock[0] += 4.9
    assert spool.append("t", _line("t", 1)) is None
    clock[0] += 0.2  # 5.1 s after the first sample of the batch
    batch = spool.append("t", _line("t", 2))
    assert batch is not None
    assert (len(batch), batch.first_index) == (3, 0)
    clock[0] += 60.0  # idle with nothing buffered: the next sample starts a new batch, not flushed
    assert spool.append("t", _line("t", 3)) is None
    clock[0] += 4.9
    assert spool.append("t", _line("t", 4)) is None
    clock[0] += 0.1  # exactly flush_seconds after sample 3
    batch = spool.append("t", _line("t", 5))
    assert batch is not None
    assert (len(batch), batch.first_index) == (3, 3)


def test_a_flush_by_count_restarts_the_clock(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [0.0]
    monkeypatch.setattr(spool_module.time, "monotonic", lambda: clock[0])
    spool = DetailSpool(path, flush_every=2, flush_seconds=5.0, fsync=False)
    assert spool.append("t", _line("t", 0)) is None
    clock[0] += 4.0
    assert spool.append("t", _line("t", 1)) is not None  # by count
    clock[0] += 4.0  # 8 s after sample 0, but sample 2 is the oldest buffered one now
    assert spool.append("t", _line("t", 2)) is None
    clock[0] += 4.0
    batch = spool.append("t", _line("t", 3))  # by count again; the time alone would not have
    assert batch is not None
    assert batch.first_index == 2


def test_flush_seconds_zero_flushes_every_sample(path: Path) -> None:
    spool = DetailSpool(path, flush_every=1000, flush_seconds=0, fsync=False)
    batches = _append_all(spool, [("t", i) for i in range(4)])
    assert [(len(b), b.first_index) for b in batches] == [(1, 0), (1, 1), (1, 2), (1, 3)]


def test_batches_carry_tasks_in_logging_order(path: Path) -> None:
    spool = DetailSpool(path, flush_every=4, flush_seconds=1e9, fsync=False)
    items = [("b", 0), ("a", 0), ("b", 1), ("c", 0), ("a", 1), ("a", 2), ("b", 2), ("c", 1)]
    first, second = _append_all(spool, items)
    assert list(first.task_names) == ["b", "a", "b", "c"]
    assert first.tasks == ["b", "a", "c"]
    assert second.tasks == ["a", "b", "c"]
    assert second.first_index == 4
    assert [r["doc"]["query"] for r in first.records()] == ["b-0", "a-0", "b-1", "c-0"]
    assert [r["doc"]["query"] for r in first.records("b")] == ["b-0", "b-1"]
    assert list(second.lines()) == [_line(t, i) for t, i in items[4:]]


def test_iter_records_per_task_across_interleaved_flushes(path: Path) -> None:
    spool = DetailSpool(path, flush_every=3, flush_seconds=1e9, fsync=False)
    items = [(task, i) for i in range(10) for task in ("x", "y", "z") if not (task == "z" and i % 2)]
    _append_all(spool, items)  # the last samples stay buffered: reading includes them
    assert spool.tasks() == ["x", "y", "z"]
    assert spool.count("x") == 10
    assert spool.count("z") == 5
    assert spool.count("missing") == 0
    assert [r["doc"]["query"] for r in spool.iter_records("y")] == [f"y-{i}" for i in range(10)]
    assert [r["metric"]["i"] for r in spool.iter_records("z")] == [0, 2, 4, 6, 8]
    assert list(spool.iter_records("missing")) == []
    assert list(spool.iter_lines("x")) == [_line("x", i) for i in range(10)]
    rest = spool.flush()  # reading did not flush: what was buffered is still one batch to deliver
    assert rest is not None
    assert (len(rest), rest.first_index) == (len(items) % 3, len(items) - len(items) % 3)


def test_reading_never_flushes_and_includes_buffered_samples(path: Path) -> None:
    spool = DetailSpool(path, flush_every=1000, flush_seconds=1e9, fsync=False)
    _append_all(spool, [("a", 0), ("b", 0), ("a", 1)])
    assert [r["doc"]["query"] for r in spool.iter_records("a")] == ["a-0", "a-1"]
    assert list(spool.iter_lines("b")) == [_line("b", 0)]
    assert not path.exists()  # nothing was written by reading
    batch = spool.flush()
    assert batch is not None
    assert (len(batch), batch.first_index) == (3, 0)
    assert [r["doc"]["query"] for r in batch.records()] == ["a-0", "b-0", "a-1"]


def test_reading_mixes_records_on_disk_and_buffered_in_logging_order(path: Path) -> None:
    spool = DetailSpool(path, flush_every=3, flush_seconds=1e9, fsync=False)
    items = [("a", 0), ("b", 0), ("a", 1), ("a", 2), ("b", 1), ("a", 3), ("b", 2), ("a", 4)]
    batches = _append_all(spool, items)
    assert [len(b) for b in batches] == [3, 3]  # 'b-2' and 'a-4' are still buffered
    assert [r["doc"]["query"] for r in spool.iter_records("a")] == [f"a-{i}" for i in range(5)]
    assert [r["doc"]["query"] for r in spool.iter_records("b")] == ["b-0", "b-1", "b-2"]
    assert path.read_bytes().count(b"\n") == 6
    rest = spool.flush()
    assert rest is not None
    assert list(rest.lines()) == [_line("b", 2), _line("a", 4)]


def test_records_with_newlines_and_unicode_read_back_exactly(path: Path) -> None:
    spool = DetailSpool(path, flush_every=2, flush_seconds=1e9, fsync=False)
    lines = [
        json.dumps({"task_name": "t", "doc": {"query": "line\nbreak 🤗"}}, ensure_ascii=False).encode(),
        json.dumps({"task_name": "t", "doc": {"query": "ünï"}}, ensure_ascii=False).encode(),
        json.dumps({"task_name": "t", "doc": {"query": ""}}).encode(),
    ]
    for line in lines:
        spool.append("t", line)
    assert list(spool.iter_lines("t")) == lines
    assert [r["doc"]["query"] for r in spool.iter_records("t")] == ["line\nbreak 🤗", "ünï", ""]


def test_reopen_rebuilds_the_index(path: Path) -> None:
    spool = DetailSpool(path, flush_every=2, flush_seconds=1e9, fsync=False)
    _append_all(spool, [("a", 0), ("b", 0), ("a", 1), ("b", 1), ("a", 2)])
    spool.close()
    again = DetailSpool.reopen(path, fsync=False)
    assert again.tasks() == ["a", "b"]
    assert len(again) == 5
    assert [r["doc"]["query"] for r in again.iter_records("a")] == ["a-0", "a-1", "a-2"]
    assert [r["doc"]["query"] for r in again.iter_records("b")] == ["b-0", "b-1"]


def test_reopen_drops_and_truncates_a_torn_last_line(path: Path) -> None:
    spool = DetailSpool(path, flush_every=1, flush_seconds=1e9, fsync=False)
    _append_all(spool, [("a", 0), ("b", 0), ("a", 1)])
    spool.close()
    intact = path.read_bytes()
    with open(path, "ab") as handle:  # a crash in the middle of writing the fourth line
        handle.write(_line("a", 2)[:17])
    again = DetailSpool.reopen(path, flush_every=1, fsync=False)
    assert len(again) == 3
    assert again.corrupt_lines == 0  # a torn tail is cut, not counted
    assert path.read_bytes() == intact
    assert [r["doc"]["query"] for r in again.iter_records("a")] == ["a-0", "a-1"]
    # appending after recovery stays line-aligned and readable, with indexes continuing
    batch = again.append("b", _line("b", 1))
    assert batch is not None
    assert batch.first_index == 3
    again.close()
    reread = DetailSpool.reopen(path, fsync=False)
    assert [r["doc"]["query"] for r in reread.iter_records("b")] == ["b-0", "b-1"]
    assert len(reread) == 4


def test_reopen_drops_a_complete_looking_last_line_without_newline(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(_line("a", 0) + b"\n" + _line("a", 1))  # valid JSON, but the newline never made it
    again = DetailSpool.reopen(path, fsync=False)
    assert len(again) == 1
    assert path.read_bytes() == _line("a", 0) + b"\n"


def test_reopen_skips_an_unreadable_line_in_the_middle_and_counts_it(path: Path) -> None:
    path.parent.mkdir(parents=True)
    good = [_line("a", 0), _line("b", 0), _line("a", 1)]
    bad = [b"{not json", b'{"doc": {}}', b'{"task_name": 7}']  # garbage, no task name, not a name
    content = b"\n".join([good[0], bad[0], good[1], bad[1], bad[2], good[2]]) + b"\n"
    path.write_bytes(content)
    again = DetailSpool.reopen(path, flush_every=1, fsync=False)
    assert again.corrupt_lines == 3
    assert len(again) == 3
    assert again.tasks() == ["a", "b"]
    assert [r["doc"]["query"] for r in again.iter_records("a")] == ["a-0", "a-1"]
    assert [r["doc"]["query"] for r in again.iter_records("b")] == ["b-0"]
    assert path.read_bytes() == content  # complete lines are never cut, even unreadable ones
    batch = again.append("b", _line("b", 1))
    assert batch is not None
    assert batch.first_index == 3
    assert [r["doc"]["query"] for r in again.iter_records("b")] == ["b-0", "b-1"]


def test_reopen_of_an_empty_spool(path: Path) -> None:
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    again = DetailSpool.reopen(path, fsync=False)
    assert len(again) == 0
    assert again.tasks() == []


def test_remove_deletes_the_file_and_its_own_empty_folder_only(tmp_path: Path, path: Path) -> None:
    spool = DetailSpool(path, flush_every=1, flush_seconds=1e9, fsync=False)
    spool.append("t", _line("t", 0))
    assert path.exists()
    spool.remove()
    assert not path.exists()
    assert not (tmp_path / "runs" / "r1").exists()
    assert (tmp_path / "runs").is_dir()  # never further up: the tracker owns that folder
    assert tmp_path.exists()


def test_remove_keeps_the_folder_of_another_spool_of_the_same_run(path: Path) -> None:
    mine = DetailSpool(
        path.with_name("details-aaaaaaaa.jsonl"), flush_every=1, flush_seconds=1e9, fsync=False
    )
    other = DetailSpool(
        path.with_name("details-bbbbbbbb.jsonl"), flush_every=1, flush_seconds=1e9, fsync=False
    )
    mine.append("t", _line("t", 0))
    other.append("t", _line("t", 1))
    mine.remove()
    assert not mine.path.exists()
    assert [r["doc"]["query"] for r in other.iter_records("t")] == ["t-1"]
    other.remove()
    assert not path.parent.exists()


def test_remove_keeps_a_runs_folder_shared_with_other_runs(tmp_path: Path, path: Path) -> None:
    other = tmp_path / "runs" / "r2" / "details.jsonl"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"")
    spool = DetailSpool(path, flush_every=1, flush_seconds=1e9, fsync=False)
    spool.append("t", _line("t", 0))
    spool.remove()
    assert not path.parent.exists()
    assert other.exists()


def test_remove_of_a_spool_never_written(path: Path) -> None:
    spool = DetailSpool(path, fsync=False)
    spool.remove()  # no file, no folder: nothing to do, no error
    assert not path.exists()


def test_close_writes_what_is_pending(path: Path) -> None:
    spool = DetailSpool(path, flush_every=100, flush_seconds=1e9, fsync=False)
    spool.append("t", _line("t", 0))
    spool.close()
    assert path.read_bytes() == _line("t", 0) + b"\n"


class _FullDisk:
    """The spool's file on a disk that fills up: the next write stores only ``room`` bytes and
    the one after raises ENOSPC, as ``write(2)`` does."""

    def __init__(self, real: Any, room: int) -> None:
        self.real, self.room = real, room

    def write(self, data: Any) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        written: int = self.real.write(bytes(data[: self.room]))
        self.room -= written
        return written

    def fileno(self) -> int:
        return int(self.real.fileno())

    def close(self) -> None:
        self.real.close()


@pytest.mark.parametrize("room", [0, 1, 37, 150])  # the buffer holds ~260 bytes
def test_a_write_that_fails_halfway_leaves_the_spool_readable_and_retries_whole(
    path: Path, room: int
) -> None:
    """A full disk: the torn part is cut off, the buffer kept; once there is room again the next
    flush writes it exactly once and every record reads back (appending the buffer after the
    torn part made records unreadable and duplicated them for recovery)."""
    spool = DetailSpool(path, flush_every=3)
    _append_all(spool, [("t", i) for i in range(3)])  # one good flush
    size = path.stat().st_size
    spool._file = _FullDisk(spool._file, room)
    spool.append("t", _line("t", 3))
    spool.append("t", _line("t", 4))
    # the error says the sample is kept: logging it again (a natural retry) wrote it twice
    with pytest.raises(
        SpoolWriteError, match=r"No space left.* the 2 before it are kept .*do not log it again"
    ):
        spool.append("t", _line("t", 5))
    assert path.stat().st_size == size  # the torn part is gone
    with pytest.raises(OSError, match="No space left") as raised:
        spool.append("t", _line("t", 6))  # kept in the buffer; each flush tries again, and fails
    assert raised.value.errno == errno.ENOSPC
    assert path.stat().st_size == size
    spool._file = spool._file.real  # room again
    batch = spool.flush()
    assert batch is not None
    assert [json.loads(line)["metric"]["i"] for line in batch.lines()] == [3, 4, 5, 6]
    assert [record["metric"]["i"] for record in spool.iter_records("t")] == list(range(7))
    spool.close()
    reopened = DetailSpool.reopen(path)
    assert [record["metric"]["i"] for record in reopened.iter_records("t")] == list(range(7))
    assert reopened.corrupt_lines == 0


REAL_SHORT_WRITE = """
import resource, signal, sys
from pathlib import Path
from evalsink.spool import DetailSpool

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past the limit, write(2) stores what fits, then EFBIG
spool = DetailSpool(Path(sys.argv[1]), flush_every=10)
template = '{"task_name":"t","doc":{"q":"%s"},"model_response":{},"metric":{"i":%d}}'
line = lambda i: (template % ("y" * 100, i)).encode()
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, hard))
errors = 0
for i in range(40):
    try:
        spool.append("t", line(i))
    except OSError:
        errors += 1
assert spool.path.stat().st_size == spool._written, (spool.path.stat().st_size, spool._written)
resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
spool.close()
print(errors)
"""


def test_a_real_short_write_past_the_file_size_limit_is_cut_back(path: Path) -> None:
    """The kernel's own short write: a file-size limit lets write(2) store part of a batch, then
    fail with EFBIG; every failure leaves the file at its last complete flush, and the batches
    kept are written once the limit is lifted."""
    path.parent.mkdir(parents=True)
    done = subprocess.run(
        [sys.executable, "-c", REAL_SHORT_WRITE, str(path)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert int(done.stdout) > 0  # writes did fail
    reopened = DetailSpool.reopen(path)
    assert reopened.corrupt_lines == 0
    assert [record["metric"]["i"] for record in reopened.iter_records("t")] == list(range(40))


def test_a_cut_that_fails_is_done_before_the_next_write(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """When truncating the torn part fails too (EIO, an append-only file), nothing is appended
    after it: the next flush cuts first (appending after it duplicated records for recovery)."""
    spool = DetailSpool(path, flush_every=3)
    _append_all(spool, [("t", i) for i in range(3)])
    size = path.stat().st_size
    spool._file = _FullDisk(spool._file, 100)
    real_ftruncate = os.ftruncate

    def broken_ftruncate(fd: int, length: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(os, "ftruncate", broken_ftruncate)
    _append_all(spool, [("t", 3), ("t", 4)])
    with pytest.raises(OSError, match="No space left"):  # the write's error, not the cut's
        spool.append("t", _line("t", 5))
    assert path.stat().st_size == size + 100  # torn
    spool._file = spool._file.real  # room again, but the cut still fails
    with pytest.raises(OSError, match="Input/output"):
        spool.flush()
    assert path.stat().st_size == size + 100  # nothing appended after the torn part
    monkeypatch.setattr(os, "ftruncate", real_ftruncate)
    spool.close()
    reopened = DetailSpool.reopen(path)
    assert reopened.corrupt_lines == 0
    assert [record["metric"]["i"] for record in reopened.iter_records("t")] == list(range(6))


def test_a_forked_child_never_cuts_what_its_parent_flushed(path: Path) -> None:
    """A child's idea of the file's length is out of date: its failed flush must not truncate
    the batches its parent flushed after the fork."""
    spool = DetailSpool(path, flush_every=2)
    _append_all(spool, [("t", 0), ("t", 1)])
    ready_read, ready_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: wait for the parent's flush, then fail a flush of its own
        try:
            os.read(ready_read, 1)
            spool._file = _FullDisk(spool._file, 10)
            with contextlib.suppress(OSError):
                _append_all(spool, [("t", 100), ("t", 101)])
        finally:
            os._exit(0)
    _append_all(spool, [("t", 2), ("t", 3)])
    os.write(ready_write, b"x")
    os.waitpid(pid, 0)
    assert path.stat().st_size >= spool._written
    assert [record["metric"]["i"] for record in spool.iter_records("t")] == [0, 1, 2, 3]


def test_a_buffer_that_cannot_grow_leaves_the_index_as_it_was(path: Path) -> None:
    spool = DetailSpool(path, flush_every=10)
    _append_all(spool, [("t", 0)])
    with memoryview(spool._buffer), pytest.raises(BufferError):  # an export blocks resizing
        spool.append("t", _line("t", 1))
    assert spool.count("t") == 1
    _append_all(spool, [("t", 2)])
    assert [record["metric"]["i"] for record in spool.iter_records("t")] == [0, 2]


def test_fsync_is_called_at_each_flush_when_enabled(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[int] = []
    monkeypatch.setattr(spool_module.os, "fsync", synced.append)
    spool = DetailSpool(path, flush_every=2, flush_seconds=1e9)
    _append_all(spool, [("t", i) for i in range(4)])
    assert len(synced) == 2
    spool.close()


@pytest.mark.parametrize("span", [1, 60, 150, 4 << 20])
def test_contiguous_records_read_back_whatever_the_read_span(
    path: Path, monkeypatch: pytest.MonkeyPatch, span: int
) -> None:
    monkeypatch.setattr(spool_module, "_READ_SPAN", span)
    spool = DetailSpool(path, flush_every=7, flush_seconds=1e9, fsync=False)
    items = [("long", i) for i in range(30)] + [("x", 0), ("long", 30), ("y", 0), ("long", 31)]
    _append_all(spool, items)
    assert [r["metric"]["i"] for r in spool.iter_records("long")] == list(range(32))
    assert list(spool.iter_lines("y")) == [_line("y", 0)]


def test_a_spool_shorter_than_its_index_is_an_error(path: Path) -> None:
    spool = DetailSpool(path, flush_every=1, flush_seconds=1e9, fsync=False)
    _append_all(spool, [("t", 0), ("t", 1)])
    spool.close()
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size - 5)
    with pytest.raises(OSError, match="shorter than its index"):
        list(spool.iter_lines("t"))


def test_a_manifest_write_that_fails_leaves_no_temporary_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a full disk the temporary manifest stayed, and the run's folder was never removed."""
    from evalsink import manifest as manifest_module
    from evalsink.manifest import RunManifest, write_manifest

    def full(descriptor: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(manifest_module.os, "fsync", full)
    # and the error names the file (a full disk at save() showed a bare "No space left on device")
    with pytest.raises(OSError, match=r"No space left on device \(writing the run's manifest\).*details-x"):
        write_manifest(tmp_path / "details-x.meta.json", RunManifest(run_id="r", spool="details-x.jsonl"))
    assert list(tmp_path.iterdir()) == []
