"""Where a run's files go: a local folder or any fsspec URL, with atomic publication.

A file appears under its final name only once it is complete, so a process killed at any moment
leaves no truncated results or parquet file behind:

* local folders: write ``.name.tmp-<random>`` beside the target, fsync, ``os.replace``, fsync the
  folder;
* object stores (``s3``, ``gs``, ``az``...): the object is created when its upload is closed,
  which is already all-or-nothing, so the final key is written directly;
* other fsspec file systems (``memory://`` included: it shows a file while it is being written):
  a temporary name, then a move.

fsspec is imported only for non-local URLs.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

logger = logging.getLogger("evalsink")

_COMMIT_ON_CLOSE = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf"}


class OutputDir:
    """A root folder (path or URL) and the operations sinks need on it."""

    def __init__(self, url: str | os.PathLike[str]) -> None:
        text = os.fspath(url)
        if text.startswith("file://"):
            text = text[len("file://") :]
        self.url = text
        self.is_local = "://" not in text
        self._fs: Any = None
        if self.is_local:
            self.root = str(Path(text).expanduser().absolute())
        else:
            from fsspec.core import url_to_fs

            self._fs, self.root = url_to_fs(text)
            protocols = self._fs.protocol if isinstance(self._fs.protocol, tuple) else (self._fs.protocol,)
            self._commit_on_close = bool(set(protocols) & _COMMIT_ON_CLOSE)

    def __repr__(self) -> str:
        return f"OutputDir({self.url!r})"

    @property
    def fs(self) -> Any:
        """The fsspec file system (a local one is created on demand)."""
        if self._fs is None:
            from fsspec.implementations.local import LocalFileSystem

            self._fs = LocalFileSystem()
        return self._fs

    def path(self, relative: str) -> str:
        """Absolute path (or URL path) of a file below the root; ``relative`` uses '/'."""
        return f"{self.root.rstrip('/')}/{relative.lstrip('/')}" if relative else self.root

    def display(self, relative: str) -> str:
        """What to show a user for a file below the root."""
        if self.is_local:
            return self.path(relative)
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, tuple) else self.fs.protocol
        return f"{protocol}://{self.path(relative)}"

    @contextlib.contextmanager
    def open_atomic(self, relative: str) -> Iterator[BinaryIO]:
        """Open ``relative`` for binary writing; it appears under its name only if the block succeeds."""
        target = self.path(relative)
        if self.is_local:
            with _local_atomic(Path(target)) as handle:
                yield handle
            return
        self.fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        if self._commit_on_close:
            handle = self.fs.open(target, "wb")
            try:
                yield handle
            except BaseException:
                _discard(handle)
                raise
            handle.close()
            return
        temporary = f"{target.rsplit('/', 1)[0]}/.{target.rsplit('/', 1)[1]}.tmp-{secrets.token_hex(4)}"
        try:
            with self.fs.open(temporary, "wb") as handle:
                yield handle
            self.fs.mv(temporary, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                self.fs.rm(temporary)
            raise

    def batch(self) -> AtomicBatch:
        """Publish many files together: each still appears only complete, at one durability barrier.

        fsync costs a journal commit per file; thousands of small files (one per task) would spend
        most of their time there. A batch writes temporary files, fsyncs them in parallel at
        :meth:`AtomicBatch.commit`, then renames each into place.
        """
        return AtomicBatch(self)

    def write_bytes(self, relative: str, data: bytes) -> str:
        """Write a whole file atomically; returns what to show the user."""
        with self.open_atomic(relative) as handle:
            handle.write(data)
        return self.display(relative)

    def exists(self, relative: str) -> bool:
        if self.is_local:
            return os.path.exists(self.path(relative))
        return bool(self.fs.exists(self.path(relative)))

    def read_bytes(self, relative: str) -> bytes:
        if self.is_local:
            return Path(self.path(relative)).read_bytes()
        return bytes(self.fs.cat_file(self.path(relative)))

    def listdir(self, relative: str) -> list[tuple[str, bool]]:
        """(name, is_dir) of the entries of a folder; [] when it does not exist."""
        target = self.path(relative)
        if self.is_local:
            if not os.path.isdir(target):
                return []
            return sorted((entry.name, entry.is_dir()) for entry in os.scandir(target))
        if not self.fs.exists(target):
            return []
        return sorted(
            (entry["name"].rstrip("/").rsplit("/", 1)[-1], entry["type"] == "directory")
            for entry in self.fs.ls(target, detail=True)
        )


class AtomicBatch:
    """Files opened through :meth:`open` appear under their names at :meth:`commit`, complete."""

    def __init__(self, output: OutputDir) -> None:
        self.output = output
        self._staged: list[tuple[Path, Path]] = []

    @contextlib.contextmanager
    def open(self, relative: str) -> Iterator[BinaryIO]:
        """A file for ``relative``; discarded if the block raises, staged for commit otherwise."""
        if not self.output.is_local:  # object stores publish per file, already all-or-nothing
            with self.output.open_atomic(relative) as handle:
                yield handle
            return
        target = Path(self.output.path(relative))
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
        try:
            with open(temporary, "wb") as handle:
                yield handle
        except BaseException:
            temporary.unlink(missing_ok=True)
            raise
        self._staged.append((temporary, target))

    def commit(self) -> None:
        """fsync every staged file (in parallel), rename each into place, fsync their folders."""
        if not self._staged:
            return
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=8, thread_name_prefix="evalsink-fsync") as pool:
            list(pool.map(_fsync_file, [temporary for temporary, _ in self._staged]))
        for temporary, target in self._staged:
            os.replace(temporary, target)
        for folder in {target.parent for _, target in self._staged}:
            _fsync_dir(folder)
        self._staged.clear()

    def discard(self) -> None:
        for temporary, _ in self._staged:
            temporary.unlink(missing_ok=True)
        self._staged.clear()


def _fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _discard(handle: Any) -> None:
    """Drop an unfinished upload instead of committing it."""
    discard = getattr(handle, "discard", None)
    if callable(discard):
        discard()
    else:  # memory:// and similar commit on close; remove the partial object
        path = getattr(handle, "path", None)
        fs = getattr(handle, "fs", None)
        handle.close()
        if fs is not None and path is not None:
            with contextlib.suppress(FileNotFoundError):
                fs.rm(path)


@contextlib.contextmanager
def _local_atomic(target: Path) -> Iterator[BinaryIO]:
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.tmp-{secrets.token_hex(4)}")
    try:
        with open(temporary, "wb") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _fsync_dir(target.parent)


def _fsync_dir(folder: Path) -> None:
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError as exc:
        logger.debug("cannot open folder %s to fsync it: %s", folder, exc)
        return
    try:
        os.fsync(descriptor)
    except OSError as exc:  # some file systems refuse fsync on folders; the rename is still atomic
        logger.debug("fsync of folder %s not supported: %s", folder, exc)
    finally:
        os.close(descriptor)
