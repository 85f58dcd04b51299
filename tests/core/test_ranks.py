"""The process rank read from torchrun/accelerate and Slurm variables."""

from __future__ import annotations

import pytest

from evalsink import ProcessRank, current_rank
from evalsink.shards import launcher_run_id


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ProcessRank(0, 1, 0)),
        ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, ProcessRank(3, 8, 1)),
        (
            {"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0", "SLURM_STEP_ID": "0"},
            ProcessRank(2, 4, 0),
        ),
        # an sbatch script itself (the batch step: no SLURM_STEP_ID) is one process, not rank 0 of 4
        (
            {"SLURM_JOB_ID": "7", "SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"},
            ProcessRank(0, 1, 0),
        ),
        # torchrun inside an srun allocation: torchrun's own variables describe this process
        ({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, ProcessRank(1, 2, 0)),
        # a missing or inconsistent world size never makes the rank out of range
        ({"RANK": "5"}, ProcessRank(5, 6, 0)),
        ({"RANK": "5", "WORLD_SIZE": "2"}, ProcessRank(5, 6, 0)),
        # not a number: treated as unset, so the next launcher (or a single process) applies
        ({"RANK": "", "SLURM_PROCID": "1", "SLURM_NTASKS": "2", "SLURM_STEP_ID": "3"}, ProcessRank(1, 2, 0)),
        ({"RANK": "x"}, ProcessRank(0, 1, 0)),
    ],
)
def test_current_rank(environ: dict[str, str], expected: ProcessRank) -> None:
    assert current_rank(environ) == expected


def test_only_rank_zero_is_main() -> None:
    assert current_rank({}).is_main
    assert current_rank({"RANK": "0", "WORLD_SIZE": "2"}).is_main
    assert not current_rank({"RANK": "1", "WORLD_SIZE": "2"}).is_main


def test_torchrun_run_id_wins_over_the_slurm_step() -> None:
    """torchrun started by one srun per node: the step ids differ between nodes, the rendezvous id not."""
    both = {"SLURM_JOB_ID": "9", "SLURM_STEP_ID": "1", "TORCHELASTIC_RUN_ID": "rdzv"}
    assert launcher_run_id(both) == "torchrun-rdzv"
    assert launcher_run_id({**both, "TORCHELASTIC_RUN_ID": "none"}) == "slurm-9-1"
