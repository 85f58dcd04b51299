"""A tiny lighteval-shaped evaluation that the remote sinks' tests log and read back."""

from __future__ import annotations

from evalsink import EvaluationTracker


def log_accuracy_samples(tracker: EvaluationTracker, samples: dict[str, list[float]]) -> None:
    """Log each task's ``acc`` values, every sample as details and as metrics."""
    tracker.general_config_logger.log_model_info(model_name="org/tiny-model")
    for task, values in samples.items():
        for index, value in enumerate(values):
            doc = {"query": f"{task} question {index}", "choices": ["a", "b"], "gold_index": 0}
            response = {"input": f"{task} question {index}", "text": ["a"]}
            tracker.details_logger.log(task, doc, response, {"acc": value})
            tracker.metrics_logger.log(task, {"acc": value})
