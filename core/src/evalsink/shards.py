"""Runs evaluated by several processes: each rank spools its own samples, rank 0 merges them.

Every rank writes ``details-rank<r>-<id>.jsonl`` and its manifest into the run's shared folder
(the output dir must be shared by the ranks, as lighteval's is). A rank other than 0 finishes by
marking its manifest ``shard_done``; rank 0's ``save()`` waits for every rank's marker (with a
timeout), then takes each shard's samples in rank order: they go to its own spool, its sinks (as
batches) and its loggers — hashes and, from each sample's ``metric`` values, the metrics — so
the merged run is what a single process logging the same samples would have saved. Files only,
no ``torch.distributed``: it works the same under torchrun, accelerate, Slurm or no launcher.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from pathlib import Path

from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, read_manifest

POLL_SECONDS = 0.2


def launcher_run_id(environ: Mapping[str, str] | None = None) -> str | None:
    """A run id every rank of one launch agrees on, from the launcher's own variables."""
    env = os.environ if environ is None else environ
    job = env.get("SLURM_JOB_ID")
    if job:
        return f"slurm-{job}-{env.get('SLURM_STEP_ID', '0')}"
    elastic = env.get("TORCHELASTIC_RUN_ID")
    if elastic and elastic != "none":
        return f"torchrun-{elastic}"
    return None


def shard_manifests(folder: Path) -> dict[int, RunManifest]:
    """Rank -> manifest of every finished shard (rank > 0) in the run folder."""
    done: dict[int, RunManifest] = {}
    for path in folder.glob("details-rank*.meta.json"):
        try:
            manifest = read_manifest(path)
        except (ValueError, OSError):  # being replaced right now: read again at the next poll
            continue
        if manifest is not None and manifest.rank > 0 and manifest.state is RunState.SHARD_DONE:
            done[manifest.rank] = manifest
    return done


def wait_for_shards(folder: Path, world_size: int, timeout: float) -> list[RunManifest]:
    """The manifests of ranks 1..world_size-1, once each says ``shard_done``; in rank order."""
    deadline = time.monotonic() + timeout
    expected = set(range(1, world_size))
    while True:
        done = shard_manifests(folder)
        missing = sorted(expected - set(done))
        if not missing:
            return [done[rank] for rank in sorted(expected)]
        if time.monotonic() >= deadline:
            raise EvalsinkError(
                f"rank(s) {', '.join(map(str, missing))} of {world_size} did not finish their details "
                f"within {timeout:g}s (no shard_done manifest in {folder}); their spools stay on disk"
            )
        time.sleep(POLL_SECONDS)
