"""Reading an offline W&B run back from disk, as the tests' independent view of what was logged.

wandb 0.31 writes no ``wandb-summary.json`` offline and has no public reader of its run files, so
the tests read the files wandb would upload on ``wandb sync``:

* ``run-<id>.wandb``: a 7-byte header (``:W&B``, 0xBEE1, version 0), then 32 KiB blocks of
  records, each with a 7-byte header (crc32, length, type: full/first/middle/last) and a
  ``wandb_internal.Record`` protobuf (run, config, history, summary, artifact, exit...). A block
  whose last bytes cannot hold a record header is zero-padded. The CRC covers the type byte and
  the payload; every one is checked, so a torn file fails loudly rather than reading short.
* ``files/media/table/...``: the JSON of each logged table (``{"columns", "data"}``);
* the staged artifact files named by the artifact records' manifests (``local_path``), which hold
  each increment of an incremental table and the files of logged artifacts.

(Not in conftest.py: see tests/trackio/trackio_helpers.py for why.)
"""

from __future__ import annotations

import json
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from wandb.proto import wandb_internal_pb2 as pb

FILE_HEADER = struct.Struct("<4sHB")
FILE_IDENT, FILE_MAGIC, FILE_VERSION = b":W&B", 0xBEE1, 0
BLOCK_SIZE = 32 * 1024
RECORD_HEADER = struct.Struct("<IHB")
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
CLIENT_ARTIFACT = "wandb-client-artifact://"


class RunFileError(AssertionError):
    """The run file is not what wandb writes (an AssertionError: it fails the test reading it)."""


def record_payloads(data: bytes) -> Iterator[bytes]:
    """The payload of every record of a ``.wandb`` file's content, fragments joined."""
    if len(data) < FILE_HEADER.size:
        raise RunFileError(f"{len(data)} bytes: too short for the file header")
    ident, magic, version = FILE_HEADER.unpack_from(data)
    if (ident, magic, version) != (FILE_IDENT, FILE_MAGIC, FILE_VERSION):
        raise RunFileError(f"not a W&B run file: header {ident!r}, {magic:#x}, {version}")
    position = FILE_HEADER.size
    fragments: list[bytes] | None = None
    while position < len(data):
        room = BLOCK_SIZE - position % BLOCK_SIZE
        if room < RECORD_HEADER.size:  # block trailer
            if data[position : position + room].strip(b"\0"):
                raise RunFileError(f"non-zero block padding at byte {position}")
            position += room
            continue
        if len(data) - position < RECORD_HEADER.size:
            raise RunFileError(f"truncated record header at byte {position}")
        checksum, length, kind = RECORD_HEADER.unpack_from(data, position)
        start = position + RECORD_HEADER.size
        payload = data[start : start + length]
        if len(payload) != length or length > room - RECORD_HEADER.size:
            raise RunFileError(f"record at byte {position} overruns its block or the file")
        if zlib.crc32(payload, zlib.crc32(bytes([kind]))) & 0xFFFFFFFF != checksum:
            raise RunFileError(f"bad checksum of the record at byte {position}")
        position = start + length
        if kind == FULL and fragments is None:
            yield payload
        elif kind == FIRST and fragments is None:
            fragments = [payload]
        elif kind == MIDDLE and fragments is not None:
            fragments.append(payload)
        elif kind == LAST and fragments is not None:
            yield b"".join([*fragments, payload])
            fragments = None
        else:
            raise RunFileError(f"record type {kind} out of sequence at byte {position}")
    if fragments is not None:
        raise RunFileError("the file ends inside a fragmented record")


def read_records(path: Path) -> list[Any]:
    records = []
    for payload in record_payloads(path.read_bytes()):
        record = pb.Record()
        record.ParseFromString(payload)
        records.append(record)
    return records


def _item_path(item: Any) -> list[str]:
    return [item.key] if item.key else list(item.nested_key)


def _item_value(item: Any) -> Any:
    if item.value_json:
        return json.loads(item.value_json)
    kind = item.WhichOneof("value") if item.DESCRIPTOR.oneofs_by_name.get("value") else None
    if kind is None:
        raise RunFileError(f"item {_item_path(item)} has no value")
    if kind == "none":
        return None
    if kind == "json":
        return json.loads(item.json)
    return getattr(item, kind)


def _put(target: dict[str, Any], path: list[str], value: Any) -> None:
    for part in path[:-1]:
        inner = target.get(part)
        if not isinstance(inner, dict):
            inner = target[part] = {}
        target = inner
    target[path[-1]] = value


def _drop(target: dict[str, Any], path: list[str]) -> None:
    for part in path[:-1]:
        target = target.get(part, {})
    target.pop(path[-1], None)


def _apply(target: dict[str, Any], update: Any) -> None:
    for item in update.update:
        _put(target, _item_path(item), _item_value(item))
    for item in update.remove:
        _drop(target, _item_path(item))


@dataclass
class OfflineRun:
    """One offline run folder (``offline-run-<time>-<id>``), read back."""

    folder: Path
    run: Any
    """The ``RunRecord``: ids, project, display name, tags, group, job type..."""
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    """One dict per committed step, nested keys rebuilt, ``_step`` included."""
    summary: dict[str, Any] = field(default_factory=dict)
    artifacts: list[Any] = field(default_factory=list)
    exit_code: int | None = None
    """None while the run is not finished."""

    def step_of(self, key: str) -> list[int]:
        """The steps of the history rows that hold ``key``."""
        return [row["_step"] for row in self.history if key in row]

    def artifact(self, *, name: str | None = None, type: str | None = None) -> Any:
        """The only artifact record with this name and/or type."""
        found = [
            artifact
            for artifact in self.artifacts
            if (name is None or artifact.name == name) and (type is None or artifact.type == type)
        ]
        if len(found) != 1:
            raise RunFileError(f"{len(found)} artifacts named {name!r} of type {type!r}")
        return found[0]

    def artifact_files(self, artifact: Any) -> dict[str, bytes]:
        """Entry path -> content of each file of a logged artifact (from wandb's staging copy)."""
        return {entry.path: Path(entry.local_path).read_bytes() for entry in artifact.manifest.contents}

    def table(self, value: Any) -> list[dict[str, Any]]:
        """The rows of a logged table (a history or summary value), as column -> cell dicts.

        An incremental table is read as W&B assembles it: the increments its latest value lists
        (``previous_increments_paths`` then ``artifact_path``), each from its artifact entry.
        """
        if not isinstance(value, dict):
            raise RunFileError(f"not a table value: {value!r}")
        if value.get("_type") == "table-file":
            content = json.loads((self.folder / "files" / value["path"]).read_text(encoding="utf-8"))
            return [dict(zip(content["columns"], row, strict=True)) for row in content["data"]]
        if value.get("_type") == "incremental-table-file":
            rows: list[dict[str, Any]] = []
            paths = [*value["previous_increments_paths"], value["artifact_path"]]
            for number, path in enumerate(paths):
                content = self._increment(path)
                if content["increment_num"] != number:
                    raise RunFileError(
                        f"increment {number} of the table is numbered {content['increment_num']}"
                    )
                rows.extend(dict(zip(content["columns"], row, strict=True)) for row in content["data"])
            return rows
        raise RunFileError(f"not a table value: {value!r}")

    def _increment(self, path: str) -> dict[str, Any]:
        if not path.startswith(CLIENT_ARTIFACT):
            raise RunFileError(f"unexpected increment reference {path!r}")
        client_id, _, entry_path = path[len(CLIENT_ARTIFACT) :].partition("/")
        [artifact] = [artifact for artifact in self.artifacts if artifact.client_id == client_id]
        [entry] = [entry for entry in artifact.manifest.contents if entry.path == entry_path]
        content: dict[str, Any] = json.loads(Path(entry.local_path).read_text(encoding="utf-8"))
        return content


def read_run(folder: str | Path, *, timeout: float = 10.0) -> OfflineRun:
    """Read a finished run from ``folder/run-<id>.wandb``.

    ``run.finish()`` returns once wandb-core has handled the run's exit, but the record file can
    still be being flushed for a moment (seen with wandb 0.31: only the 7-byte header, right after
    ``finish()``). So the file is read until it ends with a complete exit record, for at most
    ``timeout`` seconds; a file that never does fails the test with the last problem found.
    """
    folder = Path(folder)
    deadline = time.monotonic() + timeout
    while True:
        try:
            run = _read_run(folder)
            if run.exit_code is None:
                raise RunFileError(f"{folder} holds no exit record: the run is not finished")
            return run
        except RunFileError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _read_run(folder: Path) -> OfflineRun:
    [path] = folder.glob("run-*.wandb")
    runs = []
    history: list[dict[str, Any]] = []
    config: dict[str, Any] = {}
    summary: dict[str, Any] = {}
    artifacts: list[Any] = []
    exit_code: int | None = None
    for record in read_records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            runs.append(record.run)
            _apply(config, record.run.config)
        elif kind == "config":
            _apply(config, record.config)
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                _put(row, _item_path(item), _item_value(item))
            history.append(row)
        elif kind == "summary":
            _apply(summary, record.summary)
        elif kind == "artifact":
            artifacts.append(record.artifact)
        elif kind == "exit":
            exit_code = record.exit.exit_code
    if not runs:
        raise RunFileError(f"{path} has no run record")
    return OfflineRun(folder, runs[-1], config, history, summary, artifacts, exit_code)
