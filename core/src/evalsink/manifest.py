"""The small JSON file beside each details spool that makes a crashed run recoverable.

The spool holds every flushed sample, but not what the results file needs besides them: the model
name and config, task versions and configs, where the results go. The tracker rewrites this
manifest atomically whenever that changes (at most once per flushed batch), so after a SIGKILL the
spool and its manifest together rebuild the run (:mod:`evalsink.recovery`).

One manifest per spool file (``details-<id>.jsonl`` → ``details-<id>.meta.json``): trackers that
share a run id (ranks, a resumed run) never overwrite each other's. Sink options are stored as the
user set them, secret fields left out (they may hold credentials): a recovery names its own sinks,
and saves to them the way the run had configured them.
"""

from __future__ import annotations

import enum
import os
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from evalsink.storage import local_atomic

FORMAT = 1


class RunState(str, enum.Enum):
    RUNNING = "running"
    """Started, not saved: a crash or kill in this state leaves a run to recover."""
    FAILED = "failed"
    """The evaluation raised, or the process exited without saving; the spool is kept."""
    SAVED = "saved"
    """Results were written; the spool is kept only because a sink failed (re-push from disk)."""
    SHARD_DONE = "shard_done"
    """A rank other than 0 logged all its samples; rank 0 merges this spool into the run."""


def manifest_path(spool_path: Path) -> Path:
    return spool_path.with_name(spool_path.name.removesuffix(".jsonl") + ".meta.json")


@dataclass
class RunManifest:
    run_id: str
    spool: str
    """File name of the spool this manifest describes (same folder)."""
    state: RunState = RunState.RUNNING
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    updated_at: float = field(default_factory=time.time)
    settings: dict[str, Any] = field(default_factory=dict)
    sinks: list[str] = field(default_factory=list)
    config_general: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    config_tasks: dict[str, Any] = field(default_factory=dict)
    date_id: str | None = None
    rank: int = 0
    world_size: int = 1
    sink_options: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each enabled sink's options as set (by ``sink_config`` or the environment), JSON values,
    without secret fields: what `evalsink recover` configures the sinks with."""
    samples: int = 0
    """Samples in the spool (checked by the rank that merges it)."""
    launch: dict[str, str] = field(default_factory=dict)
    """Which launch of the run id wrote this spool (the launcher's job id and restart counters, see
    :func:`evalsink.shards.launch_identity`): rank 0 merges only shards of its own launch, so a
    requeued job never takes the shards an earlier attempt left behind."""
    sequence: int = 0
    """This tracker's place among the trackers its process built for the run id (0, then 1 in a
    loop over two models): the k-th tracker of every rank belongs to the same evaluation."""
    nonfinite: dict[str, int] = field(default_factory=dict)
    """Per task, the NaN/±inf values its spooled samples hold as null (a null in the spool cannot
    tell them from None): a resumed, recovered or merged run still reports them."""
    none_metrics: dict[str, dict[str, list[int]]] = field(default_factory=dict)
    """Per task and metric, the spooled samples whose value was None, not NaN (the spool holds
    both as null): ``[start, stop, ...]`` ranges of positions (see :mod:`evalsink.none_metrics`)."""
    nonfinite_at: dict[str, list[int]] = field(default_factory=dict)
    """Per task, which spooled samples held NaN/±inf and how many: ``[start, stop, count, ...]``
    (see :mod:`evalsink.nonfinite`). Written before a batch reaches the spool, like
    ``none_metrics``: a run rebuilt from the spool counts only the samples it holds."""
    premerge: dict[str, Any] = field(default_factory=dict)
    """Rank 0's own spool as it was before it took the other ranks' samples in: its size in
    ``bytes`` and its ``nonfinite`` counts, and whether the run was ``partial`` (true only when
    `evalsink recover` merged the spools of a run stopped mid-evaluation). A save() or recovery
    stopped in the middle of that merge left part of a shard in rank 0's spool; a recovery cuts
    the spool back to this, then merges again."""
    format: int = FORMAT

    def to_json(self, **overrides: Any) -> bytes:
        """The manifest as JSON; ``overrides`` replace fields in the output only.

        The fields are handed to orjson as they are: ``dataclasses.asdict`` deep-copied them
        first, and the tracker serialises the manifest at every flush (with Nones scattered over
        50,000 samples, the copies of their positions took 40 s of the run).
        """
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data.update(overrides)
        data["state"] = RunState(data["state"]).value
        return orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS)

    @classmethod
    def from_json(cls, data: bytes) -> RunManifest:
        values = orjson.loads(data)
        if not isinstance(values, dict) or values.get("format") != FORMAT:
            raise ValueError(f"not an evalsink run manifest of format {FORMAT}")
        # fields added later (launch, sequence) keep their defaults when an older manifest lacks them
        known = {name: values[name] for name in cls.__dataclass_fields__ if name in values}
        known["state"] = RunState(known.get("state", RunState.RUNNING))
        return cls(**known)

    def process_alive(self) -> bool:
        """Whether the process that wrote this manifest still runs (on this host; else unknown → True)."""
        if self.host != socket.gethostname():
            return True
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:  # alive, owned by someone else
            return True
        return True


def write_manifest(path: Path, manifest: RunManifest) -> None:
    """Replace the manifest atomically (write, fsync, rename): a reader sees the old or the new one."""
    manifest.updated_at = time.time()
    try:
        with local_atomic(path) as handle:  # a failed write leaves no temporary file (a full disk)
            handle.write(manifest.to_json())
    except OSError as exc:
        if exc.filename is not None:
            raise
        # a full disk at save() showed a bare "[Errno 28] No space left on device", naming nothing
        raise OSError(exc.errno, f"{exc.strerror or exc} (writing the run's manifest)", str(path)) from exc


def read_manifest(path: Path) -> RunManifest | None:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return RunManifest.from_json(data)
