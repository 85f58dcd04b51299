"""Runs evaluated by several processes: each rank spools its own samples, rank 0 merges them.

Every rank writes ``details-rank<r>-<id>.jsonl`` and its manifest into the run's folder (the output
dir, or ``EVALSINK_SPOOL_DIR`` for URL outputs: it must be shared by the ranks). A rank other than
0 marks its manifest ``shard_done`` at ``save()``; rank 0's ``save()`` waits for every rank's
marker (with a timeout), then takes each shard's samples in rank order: they go to its own spool,
its sinks (as batches) and its loggers — hashes and, from each sample's ``metric`` values, the
metrics. Files only, no ``torch.distributed``: it works the same under torchrun, accelerate, Slurm
or no launcher.

A run id alone does not say which evaluation a shard belongs to: a requeued Slurm job keeps its job
id (and the shards its first attempt left), a loop over models in one step gives every model the
same derived run id, two jobs may be started with the same ``EVALSINK_RUN_ID``. So each manifest
also records its *launch* (:func:`launch_identity`) and its *sequence* (:func:`next_sequence`), and
rank 0 merges only the shards of its own launch and sequence (:class:`Evaluation`).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, read_manifest

logger = logging.getLogger("evalsink")

POLL_SECONDS = 0.2

_LAUNCH_COUNTERS: tuple[tuple[str, str | None], ...] = (
    # the launcher's id of a job, and its count of restarts (unset before the first restart)
    ("SLURM_JOB_ID", "SLURM_RESTART_COUNT"),  # sbatch --requeue, scontrol requeue, node failure
    # torchrun: its restart count is each node's agent's own (only the agent whose workers failed
    # counts a restart; a membership change restarts the others without counting), so ranks of one
    # attempt can disagree on it: the run id alone, stale shards told apart by their state instead
    ("TORCHELASTIC_RUN_ID", None),
)


def launcher_run_id(environ: Mapping[str, str] | None = None) -> str | None:
    """A run id every rank of one launch agrees on, from the launcher's own variables.

    torchrun's id comes first: with torchrun started by one ``srun`` per node, the Slurm step ids
    differ between nodes, the rendezvous id does not.
    """
    env = os.environ if environ is None else environ
    elastic = env.get("TORCHELASTIC_RUN_ID")
    if elastic and elastic != "none":
        return f"torchrun-{elastic}"
    job = env.get("SLURM_JOB_ID")
    if job:
        return f"slurm-{job}-{env.get('SLURM_STEP_ID', '0')}"
    return None


def launch_identity(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """What tells this launch from another of the same run id: the launcher's job id and restart
    count, the same on every rank of a launch and different after a requeue or restart.

    A restart counter the launcher did not set (Slurm sets it from the first requeue on) is "0"
    whenever its job id is set, so a first attempt and its requeue differ.
    """
    env = os.environ if environ is None else environ
    identity: dict[str, str] = {}
    for job_key, restart_key in _LAUNCH_COUNTERS:
        if env.get(job_key):
            identity[job_key] = env[job_key]
            if restart_key is not None:
                identity[restart_key] = env.get(restart_key) or "0"
    return identity


_sequences: dict[str, int] = {}
_sequences_lock = threading.Lock()


def next_sequence(run_id: str) -> int:
    """How many trackers this process built for ``run_id`` before this one.

    Every rank runs the same program, so the k-th tracker of each rank is the same evaluation: in a
    loop over two models (one derived run id), rank 0's first save must not take rank 1's second.
    """
    with _sequences_lock:
        sequence = _sequences.get(run_id, 0)
        _sequences[run_id] = sequence + 1
    return sequence


def _compatible(mine: Mapping[str, str], theirs: Mapping[str, str]) -> bool:
    """Whether two launch identities can be one launch: no variable set in both differs.

    A variable only one side has is no evidence (a rank started over ssh may lack the Slurm
    variables; a manifest written before identities were recorded has none).
    """
    return all(theirs[key] == value for key, value in mine.items() if key in theirs)


@dataclass(frozen=True)
class Evaluation:
    """Which shards rank 0 merges: those of its launch, sequence (and output, for URL outputs)."""

    launch: Mapping[str, str]
    sequence: int
    model: str | None = None
    output: str | None = None
    """The output URL; None for a local output dir, whose run folder no other output shares."""

    def why_not(self, manifest: RunManifest) -> str | None:
        """Why the shard is not this evaluation's (None when it is)."""
        if self.output is not None:
            theirs = str(manifest.settings.get("output_dir", "")).rstrip("/")
            if theirs != self.output.rstrip("/"):
                return f"it writes to {theirs or 'an unknown output'}, this run to {self.output}"
        if not self.same_launch(manifest):
            return f"another launch ({_describe(manifest.launch)}; this one {_describe(self.launch)})"
        if manifest.sequence != self.sequence:
            return f"its process's evaluation #{manifest.sequence} of this run id; this is #{self.sequence}"
        return None

    def same_launch(self, manifest: RunManifest) -> bool:
        """Whether the shard was written by this launch (another evaluation of it is no surprise:
        a loop over models runs them one after the other)."""
        return _compatible(self.launch, manifest.launch)

    def check_model(self, path: Path, manifest: RunManifest) -> None:
        """Refuse a shard of another model: two evaluations were given one run id and launch.

        Only when that can be the cause: a shard with no samples merges nothing (lighteval's other
        ranks log none), and within a launch the launcher names (the model name may be a path to
        weights staged on each node's own disk, which differs per node) a difference is only logged.
        """
        theirs = manifest.config_general.get("model_name")
        if self.model is None or theirs is None or str(theirs) == self.model or manifest.samples == 0:
            return
        if self.launch and self.same_launch(manifest):
            logger.warning(
                "rank %d's shard %s names model %r, this rank %r; merged, as both are of launch %s",
                manifest.rank,
                path,
                theirs,
                self.model,
                _describe(self.launch),
            )
            return
        raise EvalsinkError(
            f"{path} is rank {manifest.rank}'s shard of model {theirs!r}, but this run evaluates "
            f"{self.model!r}: two evaluations share run id {manifest.run_id!r}; give each its own "
            "run id (see docs/ranks.md). Nothing was merged; the spools stay on disk"
        )


def _describe(launch: Mapping[str, str]) -> str:
    return ", ".join(f"{key}={value}" for key, value in launch.items()) or "no launcher variables"


def superseded(folder: Path, launch: Mapping[str, str], sequence: int, keep: set[Path]) -> list[Path]:
    """Spools and manifests in the run folder that an earlier attempt of this same launch left,
    their writer gone: once this attempt saved, they are what it redid. Left there, a later
    ``evalsink recover`` sweep published one as a second, partial results file of the run.

    A Slurm requeue keeps the job id and raises the restart count: every lower count is earlier.
    A torchrun restart keeps its run id and its ranks may disagree on the restart count (see
    ``_LAUNCH_COUNTERS``): a spool of this evaluation (same run id and sequence) that failed or
    whose writer died, other than ``keep`` (the manifests this attempt wrote and merged), is
    earlier.
    """
    job, restarts = launch.get("SLURM_JOB_ID"), _as_count(launch.get("SLURM_RESTART_COUNT"))
    elastic = launch.get("TORCHELASTIC_RUN_ID")
    paths: list[Path] = []
    for path in sorted(folder.glob("details-*.meta.json")):
        if path in keep:
            continue
        try:
            manifest = read_manifest(path)
        except (ValueError, OSError):
            continue
        if manifest is None or (manifest.state is RunState.RUNNING and manifest.process_alive()):
            continue
        if job is not None and restarts is not None and manifest.launch.get("SLURM_JOB_ID") == job:
            earlier = _as_count(manifest.launch.get("SLURM_RESTART_COUNT"))
            if earlier is None or earlier >= restarts:
                continue
        elif elastic is not None and manifest.launch.get("TORCHELASTIC_RUN_ID") == elastic:
            if manifest.sequence != sequence or manifest.state not in (RunState.RUNNING, RunState.FAILED):
                continue
        else:
            continue
        paths += [path.with_name(manifest.spool), path]
    return paths


def _as_count(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _shards(folder: Path) -> list[tuple[Path, RunManifest]]:
    """Every readable manifest of a rank other than 0 in the run folder, by file name."""
    found = []
    for path in sorted(folder.glob("details-rank*.meta.json")):
        try:
            manifest = read_manifest(path)
        except (ValueError, OSError):  # being replaced right now: read again at the next poll
            continue
        if manifest is not None and manifest.rank > 0:
            found.append((path, manifest))
    return found


def _finished(rank: int, candidates: list[tuple[Path, RunManifest]]) -> RunManifest | None:
    """Rank ``rank``'s done shard; None while it is still being written; an error when the rank
    failed (no need to wait out ``merge_timeout`` for it) or two spools claim the same rank."""
    final = [
        (path, m)
        for path, m in candidates
        if m.state is not RunState.RUNNING or not m.process_alive()  # a dead writer is final too
    ]
    if len(candidates) > 1:
        # an attempt that failed or died before this one (a torchrun restart) is stale once
        # another spool of the rank is done or still being written: that one is this attempt's
        live = [(path, m) for path, m in candidates if (path, m) not in final]
        done = [(path, m) for path, m in final if m.state is RunState.SHARD_DONE]
        if len(done) + len(live) == 1:
            candidates = done + live
            final = done
    if len(candidates) > 1 and final:
        names = ", ".join(str(path) for path, _ in candidates)
        raise EvalsinkError(
            f"{len(candidates)} spools claim to be rank {rank} of this evaluation ({names}): one is "
            "left from an earlier launch, or written by another job, with the same run id. Nothing was "
            "merged and every spool stays on disk; give each launch its own run id (docs/ranks.md)"
        )
    if not final:
        return None
    path, manifest = final[0]
    if manifest.state is RunState.SHARD_DONE:
        return manifest
    what = "says failed" if manifest.state is RunState.FAILED else f"says {manifest.state.value}"
    if manifest.state is RunState.RUNNING:
        what = f"was being written by process {manifest.pid} on {manifest.host}, which has died"
    raise EvalsinkError(
        f"rank {rank} did not finish its details: its manifest {path} {what}; nothing was merged "
        "and every spool stays on disk (evalsink recover)"
    )


def wait_for_shards(
    folder: Path, world_size: int, timeout: float, evaluation: Evaluation
) -> list[RunManifest]:
    """The manifests of ranks 1..world_size-1 of ``evaluation``, once each says ``shard_done``; in
    rank order. Shards of other launches or evaluations are left alone (and logged once)."""
    deadline = time.monotonic() + timeout
    expected = range(1, world_size)
    reported: set[Path] = set()
    while True:
        ours: dict[int, list[tuple[Path, RunManifest]]] = {rank: [] for rank in expected}
        for path, manifest in _shards(folder):
            why = evaluation.why_not(manifest)
            if why is None and manifest.rank in ours:
                ours[manifest.rank].append((path, manifest))
            elif path not in reported:
                reported.add(path)
                level = logging.INFO if evaluation.same_launch(manifest) else logging.WARNING
                logger.log(level, "not merging %s: %s; it stays on disk", path, why or "rank out of range")
        done: dict[int, RunManifest] = {}
        for rank, candidates in ours.items():
            for path, manifest in candidates:  # the clearest error first: another model's shard
                if manifest.state is RunState.SHARD_DONE:
                    evaluation.check_model(path, manifest)
            finished = _finished(rank, candidates)
            if finished is not None:
                done[rank] = finished
        missing = [rank for rank in expected if rank not in done]
        if not missing:
            return [done[rank] for rank in expected]
        if time.monotonic() >= deadline:
            raise EvalsinkError(_timeout_message(folder, world_size, timeout, missing, len(reported)))
        time.sleep(POLL_SECONDS)


def _timeout_message(folder: Path, world_size: int, timeout: float, missing: list[int], ignored: int) -> str:
    others = f"; {ignored} spool(s) of other launches or evaluations were not merged" if ignored else ""
    return (
        f"rank(s) {', '.join(map(str, missing))} of {world_size} did not finish their details "
        f"within {timeout:g}s (no shard_done manifest of this evaluation in {folder}{others}); their "
        "spools stay on disk. If this is a single process, a launcher variable (RANK/WORLD_SIZE, or "
        "SLURM_PROCID/SLURM_NTASKS inside an srun step) made it take itself for one of several ranks"
    )
