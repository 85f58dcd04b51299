"""Which process of a multi-process evaluation this is, read from the launcher's environment.

torchrun and accelerate set ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``; Slurm's ``srun`` sets
``SLURM_PROCID`` / ``SLURM_NTASKS`` / ``SLURM_LOCALID``. Reading the environment (never
``torch.distributed``) keeps torch out of the core and gives every sink the same answer before any
process group exists. A single process, or a variable that is not a number, is rank 0 of 1.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

_LAUNCHERS: tuple[tuple[str, str, str], ...] = (
    ("RANK", "WORLD_SIZE", "LOCAL_RANK"),  # torchrun, accelerate, deepspeed
    ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),  # srun
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
    """The rank of this process; the first launcher whose rank variable is set wins."""
    env = os.environ if environ is None else environ
    for rank_key, size_key, local_key in _LAUNCHERS:
        rank = _as_int(env.get(rank_key))
        if rank is None:
            continue
        size = _as_int(env.get(size_key))
        local = _as_int(env.get(local_key))
        return ProcessRank(
            rank=rank,
            world_size=size if size is not None and size > rank else rank + 1,
            local_rank=local if local is not None else 0,
        )
    return ProcessRank()
