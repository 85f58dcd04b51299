"""The drop-in promise, checked against lighteval itself: same calls, same objects, same files.

lighteval 0.13's ``EvaluationTracker`` and evalsink's are driven with the same real lighteval
objects (``Doc``, ``ModelResponse``, ``LightevalTask``, ``TransformersModelConfig``), in the order
lighteval's ``Pipeline`` calls them; then every file each wrote is compared: the same paths, every
details parquet with the same schema and the same rows, the results JSON equal but for the
differences docs/migrating-from-lighteval.md documents (:data:`DOCUMENTED`).

Not part of the default test run: lighteval needs torch and ~2 GB, and pins packages evalsink's
other tests do not want. Where lighteval 0.13 is importable the module runs; elsewhere it skips.
An environment for it (what was used, Python 3.11, torch's CPU wheel)::

    python -m venv /tmp/parity && . /tmp/parity/bin/activate
    pip install -e core -e plugins/local pytest
    pip install lighteval==0.13.0 --no-deps
    pip install torch "datasets<5" "huggingface_hub<1" "transformers>=4.54,<5" "xxhash<4" \\
        GitPython numpy scikit-learn nltk==3.9.1 rouge_score==0.1.2 aenum==3.1.15 termcolor==2.3.0 \\
        pytablewriter colorlog pycountry langcodes latex2sympy2_extended==1.0.6 "typer>=0.20" httpx \\
        sacrebleu "inspect-ai>=0.3.140" accelerate pillow
    python -m pytest tests/lighteval_parity -p no:cacheprovider

(``xxhash<4``: lighteval 0.13's own DetailsLogger fails with xxhash 4.)
"""

from __future__ import annotations

import copy
import io
import random
from pathlib import Path
from typing import Any

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

from lighteval.logging.evaluation_tracker import EvaluationTracker as LightevalTracker  # noqa: E402
from lighteval.models.model_input import GenerationParameters  # noqa: E402
from lighteval.models.model_output import ModelResponse  # noqa: E402
from lighteval.models.transformers.transformers_model import TransformersModelConfig  # noqa: E402
from lighteval.tasks.lighteval_task import LightevalTask  # noqa: E402
from lighteval.tasks.requests import Doc, SamplingMethod  # noqa: E402
from lighteval.tasks.tasks import arc, gsm8k, mmlu  # noqa: E402
from PIL import Image  # noqa: E402

from evalsink import EvaluationTracker  # noqa: E402

SAMPLES = 12


def _tasks() -> dict[str, LightevalTask]:
    tasks = {}
    for registered, shots in ((mmlu.mmlu_anatomy, 5), (gsm8k.gsm8k, 0), (arc.TASKS_TABLE[0], 25)):
        config = copy.deepcopy(registered)  # as lighteval's Registry does
        config.num_fewshots = shots
        config.full_name = f"{config.name}|{shots}"
        tasks[config.full_name] = LightevalTask(config=config)
    return tasks


def _samples(tasks: dict[str, LightevalTask]) -> list[tuple[str, Doc, ModelResponse, dict[str, Any]]]:
    """Samples shaped as each task's model calls return them: few-shot docs, chat inputs,
    log-probabilities, reasonings, token lists, a multimodal doc with images."""
    rnd = random.Random(0)
    red = Image.new("RGB", (6, 4), (255, 0, 0))
    buffer = io.BytesIO()
    red.save(buffer, format="JPEG")
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))

    def tokens(n: int) -> list[int]:
        return [rnd.randrange(49152) for _ in range(n)]

    samples = []
    for name in tasks:
        for i in range(SAMPLES):
            if name.startswith("mmlu"):
                fewshots = [
                    Doc(
                        query=f"Few-shot {k}\nAnswer:", choices=[" A", " B"], gold_index=k % 2, task_name=name
                    )
                    for k in range(3)
                ]
                query = f"Question: anatomy #{i}, what is ü?\nA. a\nB. b\nC. c\nD. d\nAnswer:"
                doc = Doc(
                    query=query,
                    choices=[" A", " B", " C", " D"],
                    gold_index=i % 4,
                    instruction="The following are multiple choice questions about anatomy.\n\n",
                    id=str(i),
                    task_name=name,
                    fewshot_samples=fewshots,
                    sampling_methods=[SamplingMethod.GENERATIVE],
                    stop_sequences=("\n",),
                    images=[red, jpeg] if i % 3 == 0 else None,
                )
                response = ModelResponse(
                    input=f"few shots\n\n{query}",
                    input_tokens=tokens(40 + i),
                    text=[" B"],
                    output_tokens=[tokens(2)],
                    truncated_tokens_count=3 if i == 7 else 0,
                    padded_tokens_count=5 if i % 4 == 0 else 0,
                )
                metrics: dict[str, Any] = {"em": float(i % 4 == 1)}
            elif name.startswith("gsm8k"):
                query = f"Question: how many clips, #{i}?\nAnswer:"
                doc = Doc(query=query, choices=[f" #### {i}"], gold_index=0, id=str(i), task_name=name)
                text = f"<think>hmm</think> The answer is {i}."
                chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": query}]
                response = ModelResponse(
                    input=chat,
                    input_tokens=tokens(30),
                    text=[text],
                    output_tokens=[tokens(12)],
                    text_post_processed=[text.rsplit("</think>", maxsplit=1)[-1].strip()],
                    reasonings=["hmm"] if i % 3 else [None],
                )
                metrics = {"extractive_match": float(i % 2)}
            else:
                logprobs = [-rnd.random() * 10 for _ in range(4)]
                best = max(range(4), key=logprobs.__getitem__)
                doc = Doc(
                    query=f"Question: arc {i}?\nAnswer:", choices=list("ABCD"), gold_index=1, task_name=name
                )
                response = ModelResponse(
                    input=doc.query,
                    input_tokens=tokens(25),
                    logprobs=logprobs,
                    argmax_logits_eq_gold=[k == 1 == best for k in range(4)],
                    output_tokens=[tokens(3) for _ in range(4)],
                )
                metrics = {"acc": int(best == 1)}  # lighteval's loglikelihood_acc returns an int
            samples.append((name, doc, response, metrics))
    return samples


def _drive(tracker: Any, tasks: dict[str, LightevalTask], samples: list[Any]) -> None:
    """The calls lighteval 0.13's Pipeline makes, in its order."""
    tracker.task_config_logger.log(tasks)
    model = TransformersModelConfig(
        model_name="org/tiny-model",
        batch_size=8,
        generation_parameters=GenerationParameters(temperature=0.0, max_new_tokens=64),
    )
    tracker.general_config_logger.log_model_info(model_config=model)
    for name, task in tasks.items():
        tracker.versions_logger.log(name, task.version)
    tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=SAMPLES, job_id="0")
    for name, doc, response, metrics in samples:
        tracker.metrics_logger.log(name, metrics)
        tracker.details_logger.log(name, doc, response, metrics)
    tracker.general_config_logger.log_end_time()
    tracker.metrics_logger.aggregate(task_dict=tasks, bootstrap_iters=1000)
    tracker.details_logger.aggregate()
    tracker.save()


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    tasks = _tasks()
    samples = _samples(tasks)
    theirs, ours = tmp_path_factory.mktemp("lighteval"), tmp_path_factory.mktemp("evalsink")
    _drive(LightevalTracker(output_dir=str(theirs), save_details=True), tasks, samples)
    _drive(EvaluationTracker(output_dir=str(ours), save_details=True), tasks, samples)
    return theirs, ours


def test_the_same_files_are_written(outputs: tuple[Path, Path]) -> None:
    theirs, ours = outputs
    assert sorted(files_by_name(ours)) == sorted(files_by_name(theirs))


def test_every_details_file_has_the_same_schema_and_rows(outputs: tuple[Path, Path]) -> None:
    theirs, ours = (files_by_name(root) for root in outputs)
    assert assert_same_details(theirs, ours) == 3


def test_the_results_file_is_the_same_but_for_documented_differences(outputs: tuple[Path, Path]) -> None:
    theirs, ours = (files_by_name(root) for root in outputs)
    expected, written = comparable_results(theirs, ours)
    assert differences(without_keys(expected, DOCUMENTED), without_keys(written, DOCUMENTED)) == []
    # and the documented differences are what the migration page says
    assert {task["hashes"]["hash_full_prompts"] for task in expected["summary_tasks"].values()} == {
        "ef46db3751d8e999"  # lighteval hashes the empty string for every sample
    }
    assert written["summary_general"]["truncated"] == 1
    assert expected["summary_general"]["truncated"] == 0
