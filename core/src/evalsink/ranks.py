"""Which process of a multi-process evaluation this is, read from the launcher's environment.

torchrun and accelerate set ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; Slurm's ``srun`` sets
``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``. Reading the environment (never
``torch.distributed``) keeps torch out of the core and gives every sink the same answer before any
process group exists. A single process, or a variable that is not a number, is rank 0 of 1.

Slurm's variables count only inside a job step (``SLURM_STEP_ID`` set, as ``srun`` does): the batch
script of ``sbatch --ntasks=4`` also has ``SLURM_PROCID=0`` and ``SLURM_NTASKS=4``, yet a program
run there directly is one process, and taking it for rank 0 of 4 made it wait for ranks that never
exist. Slurm sets ``SLURM_STEP_ID`` for a step's tasks only (not in the batch step, nor in
``salloc``'s shell).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_LAUNCHERS: tuple[tuple[str, str, str, str | None], ...] = (
    # rank, world size, local rank, and the variable that must be set for them to count
    ("RANK", "WORLD_SIZE", "LOCAL_RANK", None),  # torchrun, accelerate, deepspeed
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_STEP_ID"),  # srun: a job step only
)


@dataclass(frozen=True)
class ProcessRank:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that runs sinks with remote side effects (one W&B run, not eight)."""
        return self.rank == 0


def _as_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(value.strip())
    except ValueError:
        return None


def current_rank(environ: Mapping[str, str] | None = None) -> ProcessRank:
    """The rank of this process; the first launcher whose rank variable is set wins.

    Slurm's rank counts only in a job step (see the module doc): not in an sbatch script itself.
    """
    env = os.environ if environ is None else environ
    for rank_key, size_key, local_key, marker in _LAUNCHERS:
        rank = _as_int(env.get(rank_key))
        if rank is None or (marker is not None and not env.get(marker)):
            continue
        size = _as_int(env.get(size_key))
        local = _as_int(env.get(local_key))
        return ProcessRank(
            rank=rank,
            world_size=size if size is not None and size > rank else rank + 1,
            local_rank=local if local is not None else 0,
        )
    return ProcessRank()
