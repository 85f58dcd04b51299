"""The process rank read from torchrun/accelerate and Slurm variables."""

from __future__ import annotations

import pytest

from evalsink import ProcessRank, current_rank


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, ProcessRank(0, 1, 0)),
        ({"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1"}, ProcessRank(3, 8, 1)),
        ({"SLURM_PROCID": "2", "SLURM_NTASKS": "4", "SLURM_LOCALID": "0"}, ProcessRank(2, 4, 0)),
        # torchrun inside an srun allocation: torchrun's own variables describe this process
        ({"RANK": "1", "WORLD_SIZE": "2", "SLURM_PROCID": "0", "SLURM_NTASKS": "1"}, ProcessRank(1, 2, 0)),
        # a missing or inconsistent world size never makes the rank out of range
        ({"RANK": "5"}, ProcessRank(5, 6, 0)),
        ({"RANK": "5", "WORLD_SIZE": "2"}, ProcessRank(5, 6, 0)),
        # not a number: treated as unset, so the next launcher (or a single process) applies
        ({"RANK": "", "SLURM_PROCID": "1", "SLURM_NTASKS": "2"}, ProcessRank(1, 2, 0)),
        ({"RANK": "x"}, ProcessRank(0, 1, 0)),
    ],
)
def test_current_rank(environ: dict[str, str], expected: ProcessRank) -> None:
    assert current_rank(environ) == expected


def test_only_rank_zero_is_main() -> None:
    assert current_rank({}).is_main
    assert current_rank({"RANK": "0", "WORLD_SIZE": "2"}).is_main
    assert not current_rank({"RANK": "1", "WORLD_SIZE": "2"}).is_main
