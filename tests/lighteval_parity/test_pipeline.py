"""The one-import-line switch, end to end: lighteval 0.13's own ``Pipeline`` runs an evaluation
with lighteval's tracker, then with evalsink's, and the files are compared.

Each run is a fresh process (``PYTHONHASHSEED=0``: lighteval orders tasks by iterating a set, so
two processes can log them in different orders) that evaluates two custom tasks — one scored by
log-likelihood, one by generation — on a 12-row local dataset with lighteval's ``DummyModel``
(seeded random log-probabilities), offline. lighteval's ``--load-responses-from-details-date-id``
is checked too: it reads a previous run's details back through ``load_details_datasets``, which
with lighteval 0.13's own tracker raises ``ValueError`` for every task (the filter bug
docs/migrating-from-lighteval.md describes).

Needs the environment described in test_against_lighteval.py; skips elsewhere.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from parity_helpers import (
    DOCUMENTED,
    assert_same_details,
    comparable_results,
    differences,
    files_by_name,
    skip_without_lighteval_0_13,
    without_keys,
)

skip_without_lighteval_0_13()


ROWS = 12

CUSTOM_TASKS = textwrap.dedent(
    """
    from pathlib import Path

    from lighteval.metrics.metrics import Metrics
    from lighteval.tasks.lighteval_task import LightevalTaskConfig
    from lighteval.tasks.requests import Doc

    DATA = str(Path(__file__).parent / "data")


    def choice_prompt(line, task_name=None):
        choices = [f" {choice}" for choice in line["choices"]]
        return Doc(task_name=task_name, query=f"Question: {line['question']}\\nAnswer:", choices=choices,
                   gold_index=line["gold"])


    def generative_prompt(line, task_name=None):
        return Doc(task_name=task_name, query=f"Question: {line['question']}\\nAnswer:",
                   choices=[line["answer"]], gold_index=0)


    TASKS_TABLE = [
        LightevalTaskConfig(name="sums_mc", prompt_function=choice_prompt, hf_repo=DATA, hf_subset="default",
                            evaluation_splits=["test"], few_shots_split=None,
                            metrics=[Metrics.loglikelihood_acc]),
        LightevalTaskConfig(name="sums_gen", prompt_function=generative_prompt, hf_repo=DATA,
                            hf_subset="default", evaluation_splits=["test"], few_shots_split=None,
                            generation_size=16, stop_sequence=["\\n"], metrics=[Metrics.exact_match]),
    ]
    """
)

RUN = textwrap.dedent(
    """
    import json, sys, types

    import requests

    real_get = requests.get

    def offline_get(url, *args, **kwargs):  # lighteval's tiny_benchmarks downloads a file at import
        if "tinyBenchmarks" in url:
            return types.SimpleNamespace(status_code=404, content=b"")
        return real_get(url, *args, **kwargs)

    requests.get = offline_get

    from lighteval.models.dummy.dummy_model import DummyModelConfig
    from lighteval.pipeline import ParallelismManager, Pipeline, PipelineParameters

    tracker_kind, output_dir, tasks, seed, replay = sys.argv[1:6]
    if tracker_kind == "evalsink":
        from evalsink import EvaluationTracker
    else:
        from lighteval.logging.evaluation_tracker import EvaluationTracker

    tracker = EvaluationTracker(output_dir=output_dir, save_details=True)
    parameters = PipelineParameters(
        launcher_type=ParallelismManager.NONE,
        custom_tasks_directory=sys.argv[6],
        load_responses_from_details_date_id=replay or None,
    )
    pipeline = Pipeline(tasks=tasks, pipeline_parameters=parameters, evaluation_tracker=tracker,
                        model_config=DummyModelConfig(model_name="dummy", seed=int(seed)))
    pipeline.evaluate()
    pipeline.save_and_push_results()
    pipeline.show_results()
    print(json.dumps(pipeline.get_results()["results"]))
    """
)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("pipeline")
    (root / "data").mkdir()
    with (root / "data" / "test.jsonl").open("w", encoding="utf-8") as rows:
        for i in range(ROWS):
            row = {"question": f"What is {i} + {i}?", "choices": [str(2 * i), str(2 * i + 1), str(i), "0"]}
            rows.write(json.dumps({**row, "gold": 0, "answer": str(2 * i)}) + "\n")
    (root / "custom_tasks.py").write_text(CUSTOM_TASKS, encoding="utf-8")
    (root / "run.py").write_text(RUN, encoding="utf-8")
    return root


def run_pipeline(
    workspace: Path, tracker: str, output_dir: Path, tasks: str, *, seed: int = 42, replay: str = ""
) -> dict[str, dict[str, float]]:
    """Run lighteval's pipeline in a fresh process; its printed results."""
    env = {
        **{key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")},
        "PYTHONHASHSEED": "0",
        "HF_HOME": str(workspace / "hf"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
    }
    arguments = [tracker, str(output_dir), tasks, str(seed), replay, str(workspace / "custom_tasks.py")]
    done = subprocess.run(
        [sys.executable, str(workspace / "run.py"), *arguments],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    results: dict[str, dict[str, float]] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


@pytest.fixture(scope="module")
def outputs(workspace: Path) -> tuple[Path, Path]:
    theirs, ours = workspace / "lighteval", workspace / "evalsink"
    for tracker, folder in (("lighteval", theirs), ("evalsink", ours)):
        run_pipeline(workspace, tracker, folder, "sums_mc|0,sums_gen|0")
    return theirs, ours


def test_the_pipeline_writes_the_same_files(outputs: tuple[Path, Path]) -> None:
    theirs, ours = (files_by_name(root) for root in outputs)
    assert sorted(ours) == sorted(theirs)
    assert assert_same_details(theirs, ours) == 2
    details = [path for name, path in theirs.items() if name.endswith(".parquet")]
    assert {pq.read_metadata(path).num_rows for path in details} == {ROWS}


def test_the_pipeline_results_are_the_same_but_for_documented_differences(outputs: tuple[Path, Path]) -> None:
    theirs, ours = (files_by_name(root) for root in outputs)
    expected, written = comparable_results(theirs, ours)
    assert differences(without_keys(expected, DOCUMENTED), without_keys(written, DOCUMENTED)) == []
    assert set(written["results"]) == {"sums_mc|0", "sums_gen|0", "all"}


def test_responses_replayed_from_evalsink_details(workspace: Path) -> None:
    """A second run with another model seed, told to reuse the first run's responses, gets them
    from evalsink's details (different seeds would give different log-probabilities)."""
    output_dir = workspace / "replayed"
    first = run_pipeline(workspace, "evalsink", output_dir, "sums_mc|0", seed=42)
    [date_id] = [folder.name for folder in (output_dir / "details" / "dummy").iterdir()]
    second = run_pipeline(workspace, "evalsink", output_dir, "sums_mc|0", seed=7, replay=date_id)
    assert second == first

    runs = sorted((output_dir / "details" / "dummy").iterdir())
    assert len(runs) == 2
    original, replayed = (pq.read_table(next(run.glob("*.parquet"))) for run in runs)
    assert original.num_rows == ROWS
    assert replayed.column("model_response").to_pylist() == original.column("model_response").to_pylist()
    run_pipeline(workspace, "evalsink", workspace / "other-seed", "sums_mc|0", seed=7)  # not replayed
    other = pq.read_table(next((workspace / "other-seed").rglob("*.parquet")))
    assert other.column("model_response").to_pylist() != original.column("model_response").to_pylist()
