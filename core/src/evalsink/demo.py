"""A small synthetic evaluation, shaped like lighteval's, tracked with the configured sinks.

It needs no model and no network: documents, model responses and metrics are generated from a
seeded random source, with the fields lighteval's ``Doc`` and ``ModelResponse`` carry, so every sink
sees realistic rows.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from evalsink.report import SaveReport

TASKS = (
    ("leaderboard|mmlu:anatomy|5", "multiple_choice"),
    ("leaderboard|mmlu:astronomy|5", "multiple_choice"),
    ("leaderboard|arc:challenge|25", "multiple_choice"),
    ("leaderboard|gsm8k|5", "generative"),
)
_WORDS = (
    "the", "of", "a", "model", "answer", "question", "which", "planet", "bone", "muscle", "energy",
    "orbit", "cell", "number", "value", "sum", "total", "apples", "train", "hours", "star", "mass",
    "nerve", "heart", "lung", "river", "city",
)  # fmt: skip


@dataclass
class DemoDoc:
    """The fields of lighteval's ``Doc`` that the sinks care about."""

    query: str
    choices: list[str]
    gold_index: int | list[int]
    task_name: str
    instruction: str | None = None
    original_query: str | None = None
    id: str = ""
    fewshot_samples: list[Any] = field(default_factory=list)
    generation_size: int | None = None
    stop_sequences: list[str] | None = None
    specific: dict[str, Any] | None = None


@dataclass
class DemoModelResponse:
    """The fields of lighteval's ``ModelResponse``."""

    input: str
    text: list[str]
    input_tokens: list[int]
    output_tokens: list[list[int]]
    logprobs: list[float]
    argmax_logits_eq_gold: list[bool]
    truncated_tokens_count: int = 0
    padded_tokens_count: int = 0


@dataclass
class DemoTask:
    """Stands in for a LightevalTask: a config and an aggregation per metric."""

    name: str
    kind: str
    version: int = 0
    config: dict[str, Any] = field(default_factory=dict)

    def aggregation(self) -> dict[str, Any]:
        return {}


def _sentence(rng: random.Random, words: int) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(words)).capitalize() + "."


def make_sample(
    rng: random.Random, task_name: str, kind: str, index: int, skill: float
) -> tuple[Any, Any, dict[str, Any]]:
    """One (doc, model_response, metrics) triple."""
    question = _sentence(rng, rng.randint(12, 40))
    if kind == "multiple_choice":
        choices = [_sentence(rng, rng.randint(2, 6)) for _ in range(4)]
        gold = rng.randrange(4)
        correct = rng.random() < skill
        picked = gold if correct else (gold + rng.randint(1, 3)) % 4
        logprobs = [round(rng.uniform(-6.0, -0.5), 4) for _ in range(4)]
        logprobs[picked] = round(rng.uniform(-0.5, -0.01), 4)
        text = [choices[picked]]
        metrics: dict[str, Any] = {"acc": float(correct), "acc_norm": float(correct or rng.random() < 0.1)}
        stop = None
        generation_size = None
    else:
        answer = rng.randint(1, 500)
        choices = [str(answer)]
        gold = 0
        correct = rng.random() < skill
        text = [f"{_sentence(rng, 20)} The answer is {answer if correct else answer + rng.randint(1, 9)}."]
        logprobs = [round(rng.uniform(-2.0, 0.0), 4) for _ in range(8)]
        metrics = {"em": float(correct), "f1": round(float(correct) * 0.7 + rng.random() * 0.3, 4)}
        stop = ["\n\n", "Question:"]
        generation_size = 256
    prompt = f"The following are questions about {task_name.split('|')[1]}.\n\n{question}\nAnswer:"
    doc = DemoDoc(
        query=question,
        choices=choices,
        gold_index=gold,
        task_name=task_name,
        original_query=question,
        id=f"{task_name}-{index}",
        generation_size=generation_size,
        stop_sequences=stop,
    )
    response = DemoModelResponse(
        input=prompt,
        text=text,
        input_tokens=[rng.randrange(32000) for _ in range(rng.randint(40, 120))],
        output_tokens=[[rng.randrange(32000) for _ in range(rng.randint(1, 30))]],
        logprobs=logprobs,
        argmax_logits_eq_gold=[correct],
    )
    return doc, response, metrics


def run_demo(
    output_dir: str,
    sinks: Sequence[str] | None = None,
    samples_per_task: int = 100,
    seed: int = 0,
) -> tuple[SaveReport, dict[str, dict[str, float]]]:
    """Evaluate the synthetic tasks the way lighteval's pipeline drives its tracker."""
    from evalsink.tracker import EvaluationTracker

    rng = random.Random(seed)
    tracker = EvaluationTracker(output_dir=output_dir, sinks=sinks)
    tasks = {name: DemoTask(name, kind, config={"name": name, "kind": kind}) for name, kind in TASKS}
    with tracker:
        tracker.general_config_logger.log_model_info(
            {"model_name": "evalsink-demo/tiny-model", "revision": "main", "dtype": "bfloat16"}
        )
        tracker.general_config_logger.log_args_info(num_fewshot_seeds=1, max_samples=None, job_id="demo")
        tracker.task_config_logger.log(tasks)
        for name, task in tasks.items():
            tracker.versions_logger.log(name, task.version)
            skill = rng.uniform(0.35, 0.85)
            for index in range(samples_per_task):
                doc, response, metrics = make_sample(rng, name, task.kind, index, skill)
                tracker.metrics_logger.log(name, metrics)
                tracker.details_logger.log(name, doc, response, metrics)
        tracker.metrics_logger.aggregate(task_dict=tasks)
        tracker.details_logger.aggregate()
        tracker.general_config_logger.log_end_time()
        report = tracker.save()
    return report, tracker.metrics_logger.metric_aggregated
