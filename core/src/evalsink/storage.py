"""Where a run's files go: a local folder or any fsspec URL, with atomic publication.

A file appears under its final name only once it is complete, so a process killed at any moment
leaves no truncated results or parquet file behind:

* local folders: write ``.name.tmp-<random>`` beside the target, fsync, ``os.replace``, fsync the
  folder;
* object stores (``s3``, ``gs``, ``az``...): there is no rename (S3's "move" is a copy then a
  delete: not atomic, and every byte sent twice), but an object is created by the single request
  that ends its upload (``PutObject``, or ``CompleteMultipartUpload`` for a large file), whole or
  not at all. So the final key is written directly, and the one thing to prevent is that request
  being sent for an upload that failed: fsspec's files commit on ``close()``, which ``with`` and
  the garbage collector call even after an error (s3fs then publishes the parts written so far).
  On an error the upload is aborted instead and the file object is marked closed, so nothing can
  commit it later, even when the abort itself fails because the store is gone;
* other fsspec file systems (``memory://`` included: it shows a file while it is being written):
  a temporary name, then a move.

A failure of the store itself (not of the code writing the data) is raised as
:class:`OutputWriteError`, which names the file's URL. fsspec is imported only for non-local URLs.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, cast

from evalsink.errors import EvalsinkError

logger = logging.getLogger("evalsink")

_COMMIT_ON_CLOSE = {"s3", "s3a", "gs", "gcs", "az", "abfs", "abfss", "adl", "hf"}


class OutputDirError(EvalsinkError):
    """The output folder cannot hold the run (a file, no permission, an unknown URL protocol):
    said when the tracker is built, before any evaluation time is spent, not at the first flush."""


def check_can_create(folder: Path) -> None:
    """Refuse a folder that could not be created, without creating anything: the nearest existing
    ancestor must be a folder this process may write into."""
    existing = folder
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise OutputDirError(f"{folder} cannot be created: {existing} is not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputDirError(f"{folder} cannot be created: no permission to write in {existing}")


class OutputWriteError(EvalsinkError, OSError):
    """The output folder's store failed while a file was written: nothing partial is under its name.

    Raised for non-local outputs, wrapping the store's own exception (``__cause__``), so the
    message names the file's URL and a caller can tell a store failure (worth a retry, a re-push
    from the spool) from a failure of the data being written.
    """

    def __init__(self, url: str, error: BaseException) -> None:
        super().__init__(f"could not write {url}: {type(error).__name__}: {error}")
        self.url = url


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

            try:
                self._fs, self.root = url_to_fs(text)
            except (ValueError, ImportError) as exc:  # an unknown protocol, its library not installed
                raise OutputDirError(f"{text!r} cannot be used: {exc}") from exc
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
        """Open ``relative`` for binary writing; it appears under its name only if the block succeeds.

        For a non-local output, a failure of the store (opening, writing, publishing) raises
        :class:`OutputWriteError` naming the URL; an exception of the block itself propagates as is.
        """
        target = self.path(relative)
        if self.is_local:
            with local_atomic(Path(target)) as handle:
                yield handle
            remove_leftover_temporaries([Path(target)])
            return
        url = self.display(relative)
        if self._commit_on_close:  # no folders to create; a missing bucket is an error, not created
            with _upload(self.fs, target, url) as stream:
                yield stream
            return
        folder, name = target.rsplit("/", 1)
        _store_call(url, self.fs.makedirs, folder, exist_ok=True)
        with _write_then_move(self.fs, f"{folder}/.{name}.tmp-{secrets.token_hex(4)}", target, url) as stream:
            yield stream

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
        """Whether the file or folder exists now (a remote store is asked, not fsspec's listing cache)."""
        if self.is_local:
            return os.path.exists(self.path(relative))
        self.fs.invalidate_cache(self.path(relative))  # another process may have written it since
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
        self.fs.invalidate_cache(target)  # another process may have written in it since
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

    def adopt(self, staged: Path, relative: str) -> bool:
        """Publish an already written local file as ``relative`` at commit (it is moved, not copied).

        Returns False, leaving the file alone, when a rename cannot do it: the output is not a
        local folder, or the file lies on another file system than the target's folder.
        """
        if not self.output.is_local:
            return False
        target = Path(self.output.path(relative))
        target.parent.mkdir(parents=True, exist_ok=True)
        if os.stat(staged).st_dev != os.stat(target.parent).st_dev:
            return False
        self._staged.append((staged, target))
        return True

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
        remove_leftover_temporaries([target for _, target in self._staged])
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


def _store_call(url: str, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call the store; its failure becomes an :class:`OutputWriteError` naming ``url``."""
    try:
        return function(*args, **kwargs)
    except OutputWriteError:
        raise
    except Exception as exc:
        raise OutputWriteError(url, exc) from exc


class _UploadStream(io.RawIOBase):
    """What the block of :meth:`OutputDir.open_atomic` writes to for a non-local file.

    It forwards to the fsspec file, turning the store's failures into :class:`OutputWriteError`
    (a part of a large file is uploaded from inside ``write()``: botocore's bare
    ``EndpointConnectionError`` would not say which file, nor that the data was not at fault).
    Closing it does not close the fsspec file: publishing is :meth:`OutputDir.open_atomic`'s
    decision, taken only when the block succeeded.
    """

    def __init__(self, handle: Any, url: str) -> None:
        super().__init__()
        self._handle = handle
        self._url = url

    def writable(self) -> bool:
        return True

    def write(self, data: Any, /) -> int:
        written: int = _store_call(self._url, self._handle.write, data)
        return written

    def tell(self) -> int:
        position: int = self._handle.tell()
        return position


@contextlib.contextmanager
def _upload(fs: Any, target: str, url: str) -> Iterator[BinaryIO]:
    """Write ``target`` directly on a store that creates the object when the upload is closed."""
    handle = _store_call(url, fs.open, target, "wb")
    try:
        yield cast(BinaryIO, _UploadStream(handle, url))
    except BaseException:
        _abandon(handle, url)
        raise
    try:
        handle.close()  # the one request that creates the object, whole: PutObject / CompleteMultipartUpload
    except Exception as exc:
        _abandon(handle, url)  # parts sent before a failed CompleteMultipartUpload
        raise OutputWriteError(url, exc) from exc


def _abandon(handle: Any, url: str) -> None:
    """Drop an unfinished upload, and make sure nothing can ever publish it.

    ``discard()`` aborts the multipart upload (s3fs, gcsfs, adlfs). Whatever it does, the file is
    then marked closed: its ``close()`` — called by ``with``, or by the garbage collector at any
    later moment — would otherwise send the final request with the parts written so far. When the
    abort fails (the store is unreachable), the parts already sent stay on the server as an
    incomplete upload, never as an object: a bucket lifecycle rule (S3's
    ``AbortIncompleteMultipartUpload``) removes them. That failure is logged, and the error that
    stopped the upload is the one raised.
    """
    try:
        handle.discard()
    except Exception as exc:
        logger.warning(
            "could not abort the unfinished upload of %s (%s: %s): it was not completed, but the parts "
            "already sent may stay on the server as an incomplete multipart upload (not an object) "
            "until the bucket's lifecycle rule removes them",
            url,
            type(exc).__name__,
            exc,
        )
    finally:
        handle.closed = True


@contextlib.contextmanager
def _write_then_move(fs: Any, temporary: str, target: str, url: str) -> Iterator[BinaryIO]:
    """Write ``temporary`` then move it to ``target``: for file systems that show a file being written.

    The move names exactly these two files (:func:`_move_file`): fsspec's ``mv``/``rm`` take
    their paths as glob patterns, so a task named ``q?x`` or ``br[a]`` was published as a folder
    holding the temporary file, or not at all.
    """
    handle = _store_call(url, fs.open, temporary, "wb")
    try:
        try:
            yield cast(BinaryIO, _UploadStream(handle, url))
        except BaseException:
            try:
                handle.close()
            except Exception as exc:  # the block's exception is the one to report
                logger.warning(
                    "could not close the temporary file %s: %s: %s", temporary, type(exc).__name__, exc
                )
            raise
        _store_call(url, handle.close)
        moved = _store_call(url, _move_file, fs, temporary, target)
    except BaseException:
        _remove_temporary(fs, temporary)
        raise
    if not moved:  # copied: the target is complete, the temporary only clutter
        _remove_temporary(fs, temporary)


def _move_file(fs: Any, source: str, target: str) -> bool:
    """Move one file without glob expansion; True if renamed, False if copied (``source`` is left).

    A file system with a ``mv`` of its own (sftp's ``posix_rename``, ftp, smb, webhdfs, local)
    renames the one path it is given, atomically where the server does. fsspec's generic ``mv``
    (memory, and any file system without a rename) is a recursive copy then ``rm``, both of which
    expand ``*``, ``?`` and ``[`` in the paths: its single-file steps ``cp_file`` and ``rm_file``
    are used instead (the same copy-then-delete, so no less atomic: ``cp_file`` creates the target
    whole). The caller deletes the source after a copy.
    """
    from fsspec.spec import AbstractFileSystem

    if getattr(type(fs), "mv", None) is not AbstractFileSystem.mv:
        fs.mv(source, target)
        return True
    fs.cp_file(source, target)
    return False


def _remove_temporary(fs: Any, temporary: str) -> None:
    """Delete a temporary file by its exact name (``rm_file``: ``rm`` would take it as a glob)."""
    try:
        fs.rm_file(temporary)
    except FileNotFoundError:
        pass
    except Exception as exc:  # the write's own error is the one to report
        logger.warning("could not remove the temporary file %s: %s: %s", temporary, type(exc).__name__, exc)


def remove_leftover_temporaries(published: list[Path]) -> None:
    """Delete what an earlier write of these files left when its process was killed mid-write.

    A killed write never removes its ``.name.tmp-<random>`` file: hidden, and as large as the
    parquet file it was becoming. Once the same file is published complete (``evalsink recover``
    saves a run under the date id of the save that was killed), those are known to be dead: one
    listing per folder, whatever the number of files.
    """
    names: dict[Path, set[str]] = {}
    for target in published:
        names.setdefault(target.parent, set()).add(target.name)
    for folder, published_names in names.items():
        with os.scandir(folder) as entries:
            stale = [
                entry.path
                for entry in entries
                if entry.name.startswith(".")
                and ".tmp-" in entry.name
                and entry.name[1:].rsplit(".tmp-", 1)[0] in published_names
            ]
        for path in stale:
            with contextlib.suppress(FileNotFoundError):  # another cleanup got there first
                os.unlink(path)


@contextlib.contextmanager
def local_atomic(target: Path) -> Iterator[BinaryIO]:
    """A local file written under a temporary name, fsynced, renamed into place (the folder
    fsynced too); on any failure the temporary file is removed and the target left as it was."""
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
