"""The five loggers: lighteval's names and numbers, computed here independently of the core."""

from __future__ import annotations

import dataclasses
import math
import random
import statistics
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pydantic
import pytest
import xxhash
from core_helpers import Doc, ModelResponse

from evalsink import jsonsafe
from evalsink.errors import EncodeError
from evalsink.loggers import (
    DetailsLogger,
    GeneralConfigLogger,
    MetricsLogger,
    TaskConfigLogger,
    VersionsLogger,
    suite_average_name,
)
from evalsink.run import DetailsBatch


# -- GeneralConfigLogger -------------------------------------------------------------------------
@dataclass
class GenerationParameters:
    max_new_tokens: int = 256
    temperature: float = 0.0


@dataclass
class DataclassModelConfig:
    model_name: str
    tokenizer: str = "org/tok"
    hf_token: str | None = "hf_secret_value"
    api_key: str = "sk-secret"
    generation_parameters: GenerationParameters = field(default_factory=GenerationParameters)


class PydanticModelConfig(pydantic.BaseModel):
    model_name: str
    batch_size: int = 8
    password: str = "p4ssw0rd"
    api_token: pydantic.SecretStr = pydantic.SecretStr("tok-secret")


@dataclass
class ModelInfo:  # lighteval 0.7-0.10
    model_name: str
    model_sha: str = "abc"
    model_dtype: str = "bfloat16"


def test_log_model_info_with_an_object_having_model_name() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(DataclassModelConfig(model_name="org/model"))
    assert logger.model_name == "org/model"
    out = logger.to_dict()
    assert out["model_name"] == "org/model"
    assert out["model_config"]["model_name"] == "org/model"
    assert out["model_config"]["tokenizer"] == "org/tok"
    assert out["model_config"]["generation_parameters"] == {"max_new_tokens": 256, "temperature": 0.0}


def test_model_config_secrets_are_redacted() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(DataclassModelConfig(model_name="org/model"))
    out = logger.to_dict()
    assert out["model_config"]["hf_token"] == jsonsafe.REDACTED
    assert out["model_config"]["api_key"] == jsonsafe.REDACTED
    text = jsonsafe.dumps(out).decode()
    assert "hf_secret_value" not in text
    assert "sk-secret" not in text
    assert "max_new_tokens" in text


def test_pydantic_model_config_secrets_are_redacted() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(PydanticModelConfig(model_name="org/p"))
    out = logger.to_dict()
    assert logger.model_name == "org/p"
    assert out["model_config"] == {
        "model_name": "org/p",
        "batch_size": 8,
        "password": jsonsafe.REDACTED,
        "api_token": jsonsafe.REDACTED,
    }
    assert "p4ssw0rd" not in jsonsafe.dumps(out).decode()


def test_log_model_info_with_a_mapping() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info({"model_name": "org/m", "revision": "main", "hf_token": "x"})
    assert logger.model_name == "org/m"
    assert logger.to_dict()["model_config"] == {
        "model_name": "org/m",
        "revision": "main",
        "hf_token": jsonsafe.REDACTED,
    }


def test_log_model_info_with_only_model_name() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(model_name="just/a-name")
    assert logger.model_name == "just/a-name"
    assert logger.to_dict()["model_config"] is None


def test_model_name_keyword_wins_over_the_config() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info({"model_name": "from/config"}, model_name="explicit/name")
    assert logger.model_name == "explicit/name"


def test_old_lighteval_form_with_generation_parameters_and_model_info() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(
        generation_parameters={"max_new_tokens": 10, "api_key": "sk-x"},
        model_info=ModelInfo(model_name="org/old"),
    )
    out = logger.to_dict()
    assert logger.model_name == "org/old"
    assert out["model_name"] == "org/old"
    assert out["model_config"]["model_sha"] == "abc"
    assert out["generation_parameters"] == {"max_new_tokens": 10, "api_key": jsonsafe.REDACTED}


def test_plain_object_model_config_does_not_break_to_dict() -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info(types.SimpleNamespace(model_name="org/plain", batch_size=4, hf_token="hf_x"))
    assert logger.model_name == "org/plain"
    out = logger.to_dict()
    assert out["model_name"] == "org/plain"
    assert out["model_config"] == {"model_name": "org/plain", "batch_size": 4, "hf_token": jsonsafe.REDACTED}


class SlotsConfig:
    __slots__ = ("model_name",)

    def __init__(self) -> None:
        self.model_name = "org/slots"


@pytest.mark.parametrize(
    "config",
    [{"model_name": "org/bad", "device": object()}, SlotsConfig()],
    ids=["mapping-with-object", "slots-object"],
)
def test_an_unencodable_model_config_is_refused_when_logged(config: Any) -> None:
    logger = GeneralConfigLogger()
    logger.log_model_info({"model_name": "org/first"})
    with pytest.raises(EncodeError):
        logger.log_model_info(config)
    assert logger.model_name == "org/first"  # nothing of the refused config was kept
    assert logger.to_dict()["model_config"] == {"model_name": "org/first"}


def test_an_unencodable_model_info_is_refused_when_logged() -> None:
    logger = GeneralConfigLogger()
    with pytest.raises(EncodeError, match="device"):
        logger.log_model_info(model_info={"model_name": "org/old", "device": object()})
    assert logger.model_name is None
    assert logger.model_config is None


def test_unencodable_generation_parameters_are_refused_when_logged() -> None:
    logger = GeneralConfigLogger()
    with pytest.raises(EncodeError):
        logger.log_model_info(model_name="org/m", generation_parameters={"stop": object()})


def test_args_and_times() -> None:
    logger = GeneralConfigLogger()
    logger.log_args_info(num_fewshot_seeds=1, max_samples=10, job_id="job-7")
    logger.log_end_time()
    out = logger.to_dict()
    assert (out["num_fewshot_seeds"], out["max_samples"], out["job_id"]) == (1, 10, "job-7")
    assert out["end_time"] >= out["start_time"]
    assert isinstance(out["total_evaluation_time_secondes"], str)
    assert float(out["total_evaluation_time_secondes"]) == pytest.approx(out["end_time"] - out["start_time"])


# -- DetailsLogger: hashes -----------------------------------------------------------------------
def _combine(hexdigests: list[str]) -> str:
    """lighteval: the xxh64 of the sorted per-sample hexdigests, concatenated."""
    return xxhash.xxh64("".join(sorted(hexdigests)).encode()).hexdigest()


def _samples(task: str, n: int) -> list[tuple[Doc, ModelResponse]]:
    return [
        (
            Doc(query=f"{task} question {i} ünï"),
            ModelResponse(
                input=f"few-shot prompt of {task} #{i}",
                text=[f"answer {i}"],
                input_tokens=[i, 2 * i, 3],
                output_tokens=[[7, i]],
            ),
        )
        for i in range(n)
    ]


def test_hash_examples_is_lightevals_algorithm() -> None:
    logger = DetailsLogger()
    samples = _samples("lighteval|arc:easy|0", 7)
    for doc, response in samples:
        logger.log("lighteval|arc:easy|0", doc, response, {"acc": 1.0})
    logger.aggregate()
    hashes = logger.compiled_details["lighteval|arc:easy|0"].hashes
    assert hashes["hash_examples"] == _combine(
        [xxhash.xxh64(d.query.encode()).hexdigest() for d, _ in samples]
    )
    assert hashes["hash_full_prompts"] == _combine(
        [xxhash.xxh64(r.input.encode()).hexdigest() for _, r in samples]
    )
    assert hashes["hash_input_tokens"] == _combine(
        [xxhash.xxh64(str(r.input_tokens).encode()).hexdigest() for _, r in samples]
    )
    assert hashes["hash_cont_tokens"] == _combine(
        [xxhash.xxh64(str(r.output_tokens).encode()).hexdigest() for _, r in samples]
    )
    compiled_hash = logger.compiled_hashes["lighteval|arc:easy|0"]
    assert compiled_hash.hash_examples == hashes["hash_examples"]


def test_hashes_do_not_depend_on_logging_order() -> None:
    samples = _samples("t|x|0", 6)
    forward, backward = DetailsLogger(), DetailsLogger()
    for doc, response in samples:
        forward.log("t|x|0", doc, response, {})
    for doc, response in reversed(samples):
        backward.log("t|x|0", doc, response, {})
    forward.aggregate()
    backward.aggregate()
    assert forward.compiled_details["t|x|0"].hashes == backward.compiled_details["t|x|0"].hashes


def test_full_prompt_hash_follows_the_model_input() -> None:
    def full_prompt_hash(inputs: list[str]) -> str:
        logger = DetailsLogger()
        for i, text in enumerate(inputs):
            logger.log("t|x|0", Doc(query=f"q{i}"), ModelResponse(input=text), {})
        logger.aggregate()
        return logger.compiled_details["t|x|0"].hashes["hash_full_prompts"]

    a = full_prompt_hash(["prompt one", "prompt two"])
    b = full_prompt_hash(["prompt one", "prompt 2"])
    empty = full_prompt_hash(["", ""])
    assert len({a, b, empty}) == 3
    assert a == _combine([xxhash.xxh64(b"prompt one").hexdigest(), xxhash.xxh64(b"prompt two").hexdigest()])


def test_summary_general_combines_tasks_sorted_by_name() -> None:
    logger = DetailsLogger()
    # logged in non-alphabetical order, interleaved
    for (doc_b, resp_b), (doc_a, resp_a) in zip(_samples("b|t|0", 3), _samples("a|t|0", 3), strict=True):
        logger.log("b|t|0", doc_b, resp_b, {})
        logger.log("a|t|0", doc_a, resp_a, {})
    logger.aggregate()
    a_hashes = logger.compiled_details["a|t|0"].hashes
    b_hashes = logger.compiled_details["b|t|0"].hashes
    total = logger.compiled_details_over_all_tasks.hashes
    assert set(total) == {"hash_examples", "hash_full_prompts", "hash_input_tokens", "hash_cont_tokens"}
    for kind, value in total.items():
        assert value == xxhash.xxh64((a_hashes[kind] + b_hashes[kind]).encode()).hexdigest()
    reversed_order = xxhash.xxh64((b_hashes["hash_examples"] + a_hashes["hash_examples"]).encode())
    assert total["hash_examples"] != reversed_order.hexdigest()


def test_truncated_and_padded_counts() -> None:
    logger = DetailsLogger()
    counts = [(0, 0), (3, 0), (0, 5), (2, 2), (0, 0)]
    for i, (truncated, padded) in enumerate(counts):
        response = ModelResponse(input="p", truncated_tokens_count=truncated, padded_tokens_count=padded)
        logger.log("t|x|0", Doc(query=f"q{i}"), response, {})
    logger.log("u|y|0", {"query": "q"}, {"input": "p"}, {})  # counts missing: neither
    logger.aggregate()
    detail = logger.compiled_details["t|x|0"]
    assert (detail.truncated, detail.non_truncated, detail.padded, detail.non_padded) == (2, 3, 2, 3)
    total = logger.compiled_details_over_all_tasks
    assert (total.truncated, total.non_truncated, total.padded, total.non_padded) == (2, 4, 2, 4)


class PydanticDoc(pydantic.BaseModel):
    query: str
    choices: list[str] = ["A", "B"]
    gold_index: int = 0
    task_name: str = ""


class PydanticResponse(pydantic.BaseModel):
    input: str | None = None
    text: list[str] = []
    input_tokens: list[int] = []
    output_tokens: list[list[int]] = []
    truncated_tokens_count: int = 0
    padded_tokens_count: int = 0


def _shapes(i: int) -> dict[str, tuple[Any, Any]]:
    doc = Doc(query=f"q{i}", choices=["yes", "no"], gold_index=1)
    response = ModelResponse(input=f"in{i}", text=["yes"], input_tokens=[1, i], truncated_tokens_count=i % 2)
    return {
        "dataclass": (doc, response),
        "pydantic": (
            PydanticDoc(query=f"q{i}", choices=["yes", "no"], gold_index=1),
            PydanticResponse(input=f"in{i}", text=["yes"], input_tokens=[1, i], truncated_tokens_count=i % 2),
        ),
        "dict": (
            {"query": f"q{i}", "choices": ["yes", "no"], "gold_index": 1, "task_name": ""},
            {
                "input": f"in{i}",
                "text": ["yes"],
                "input_tokens": [1, i],
                "output_tokens": [],
                "truncated_tokens_count": i % 2,
                "padded_tokens_count": 0,
            },
        ),
    }


def test_dataclass_pydantic_and_dict_inputs_give_the_same_result() -> None:
    results = {}
    for shape in ("dataclass", "pydantic", "dict"):
        logger = DetailsLogger()
        for i in range(4):
            doc, response = _shapes(i)[shape]
            logger.log("t|x|0", doc, response, {"acc": float(i)})
        logger.aggregate()
        detail = logger.compiled_details["t|x|0"]
        results[shape] = (detail.hashes, detail.truncated, list(logger.details["t|x|0"]))
    assert results["dataclass"] == results["pydantic"] == results["dict"]
    _, truncated, records = results["dict"]
    assert truncated == 2
    assert records[3] == {
        "doc": {"query": "q3", "choices": ["yes", "no"], "gold_index": 1, "task_name": ""},
        "model_response": {
            "input": "in3",
            "text": ["yes"],
            "input_tokens": [1, 3],
            "output_tokens": [],
            "truncated_tokens_count": 1,
            "padded_tokens_count": 0,
        },
        "metric": {"acc": 3.0},
    }


@pytest.mark.parametrize("task", ["", None])
def test_empty_task_name_is_refused(task: Any) -> None:
    logger = DetailsLogger()
    with pytest.raises(ValueError, match="task_name is empty"):
        logger.log(task, Doc(query="q"), ModelResponse(), {})
    assert len(logger.spool) == 0


def test_unencodable_sample_is_refused_before_anything_is_kept() -> None:
    logger = DetailsLogger()
    logger.log("t|x|0", {"query": "fine", "images": []}, {"input": "p"}, {"acc": 1.0})
    with pytest.raises(EncodeError, match=r"doc\.images\[0\]"):
        logger.log("t|x|0", {"query": "bad", "images": [object()]}, {"input": "p"}, {"acc": 1.0})
    logger.aggregate()
    assert len(logger.spool) == 1
    assert [r["doc"]["query"] for r in logger.details["t|x|0"]] == ["fine"]
    assert logger.compiled_details["t|x|0"].hashes["hash_examples"] == _combine(
        [xxhash.xxh64(b"fine").hexdigest()]
    )


def test_nonfinite_values_are_counted_per_task() -> None:
    logger = DetailsLogger()
    logger.log("a|x|0", {"query": "q"}, {"logits": np.array([np.nan, 1.0])}, {"acc": math.nan})
    logger.log("a|x|0", {"query": "q", "score": math.inf}, {}, {"acc": 1.0})
    logger.log("b|x|0", {"query": "q"}, {}, {"acc": 1.0})
    assert dict(logger.nonfinite) == {"a|x|0": 3}
    assert logger.details["a|x|0"][0]["metric"] == {"acc": None}


def test_details_mapping_reads_back_by_task() -> None:
    logger = DetailsLogger()
    for i in range(3):
        logger.log("b|x|0", {"query": f"b{i}"}, {}, {})
        logger.log("a|x|0", {"query": f"a{i}"}, {}, {})
    details = logger.details
    assert list(details) == ["b|x|0", "a|x|0"]
    assert len(details) == 2
    assert [r["doc"]["query"] for r in details["a|x|0"]] == ["a0", "a1", "a2"]
    assert "task_name" not in details["a|x|0"][0]
    with pytest.raises(KeyError):
        details["missing"]


def test_on_batch_receives_batches_not_samples() -> None:
    received: list[DetailsBatch] = []
    logger = DetailsLogger(on_batch=received.append)
    logger.spool.flush_every = 4
    for i in range(10):
        logger.log("t|x|0", {"query": f"q{i}"}, {}, {})
    assert [len(b) for b in received] == [4, 4]
    logger.flush()
    assert [(len(b), b.first_index) for b in received] == [(4, 0), (4, 4), (2, 8)]


def test_aggregate_of_nothing() -> None:
    logger = DetailsLogger()
    logger.aggregate()
    assert logger.compiled_details == {}
    assert logger.compiled_details_over_all_tasks.hashes == {}


# -- MetricsLogger -------------------------------------------------------------------------------
class FakeTask:
    def __init__(self, aggregations: dict[str, Callable[..., Any]]) -> None:
        self._aggregations = aggregations

    def aggregation(self) -> dict[str, Callable[..., Any]]:
        return self._aggregations


def test_mean_and_stderr_match_statistics() -> None:
    values = [0.0, 1.0, 1.0, 0.5, 0.25, 1.0, 0.0]
    logger = MetricsLogger()
    for value in values:
        logger.log("lighteval|arc:easy|0", {"acc": value})
    logger.aggregate()
    out = logger.metric_aggregated["lighteval|arc:easy|0"]
    assert out["acc"] == pytest.approx(statistics.mean(values))
    assert out["acc_stderr"] == pytest.approx(statistics.stdev(values) / math.sqrt(len(values)))


def test_numpy_values_and_np_mean_aggregation_use_the_exact_mean() -> None:
    values = [np.float64(0.2), np.float32(0.4), np.int64(1)]
    logger = MetricsLogger()
    for value in values:
        logger.log("t|x|0", {"acc": value})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"acc": np.mean})})
    plain = [float(v) for v in values]
    assert logger.metric_aggregated["t|x|0"]["acc"] == pytest.approx(statistics.mean(plain))
    assert logger.metric_aggregated["t|x|0"]["acc_stderr"] == pytest.approx(
        statistics.stdev(plain) / math.sqrt(3)
    )


def test_no_stderr_for_a_single_value_or_without_bootstrap() -> None:
    logger = MetricsLogger()
    logger.log("t|x|0", {"acc": 1.0})
    logger.log("u|x|0", {"acc": 1.0})
    logger.log("u|x|0", {"acc": 0.0})
    logger.aggregate()
    assert logger.metric_aggregated["t|x|0"] == {"acc": 1.0}
    assert "acc_stderr" in logger.metric_aggregated["u|x|0"]
    logger.aggregate(bootstrap_iters=0)
    assert logger.metric_aggregated["u|x|0"] == {"acc": 0.5}


def _independent_bootstrap(function: Callable[[list[float]], float], values: list[float]) -> float:
    rng = np.random.default_rng(7)
    array = np.asarray(values)
    estimates = [function(list(rng.choice(array, size=len(array)))) for _ in range(4000)]
    return float(np.std(estimates, ddof=1))


@pytest.mark.parametrize("function", [max, statistics.median], ids=["max", "median"])
def test_task_aggregation_is_used_and_stderr_is_bootstrapped(function: Callable[..., float]) -> None:
    rng = random.Random(3)
    values = [round(rng.gauss(0.5, 0.2), 4) for _ in range(60)]
    logger = MetricsLogger()
    for value in values:
        logger.log("t|x|0", {"score": value, "acc": value})
    task_dict = {"t|x|0": FakeTask({"score": function})}
    logger.aggregate(task_dict=task_dict, bootstrap_iters=500)
    out = logger.metric_aggregated["t|x|0"]
    assert out["score"] == pytest.approx(function(values))
    assert out["acc"] == pytest.approx(statistics.mean(values))  # no aggregation given: the mean
    assert out["score"] != pytest.approx(out["acc"])
    mean_stderr = statistics.stdev(values) / math.sqrt(len(values))
    assert out["score_stderr"] != pytest.approx(mean_stderr)
    assert out["score_stderr"] == pytest.approx(_independent_bootstrap(function, values), rel=0.3)
    first = out["score_stderr"]
    logger.aggregate(task_dict=task_dict, bootstrap_iters=500)
    assert logger.metric_aggregated["t|x|0"]["score_stderr"] == first  # seeded: reproducible


def test_corpus_aggregation_returning_a_dict() -> None:
    def corpus_f1(items: list[tuple[int, int]]) -> dict[str, float]:
        hits = sum(1 for gold, pred in items if gold == pred)
        return {"f1_macro": hits / len(items), "f1_micro": hits / len(items) / 2}

    logger = MetricsLogger()
    for item in [(1, 1), (0, 1), (1, 1), (0, 0)]:
        logger.log("t|x|0", {"f1": item, "acc": float(item[0] == item[1])})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"f1": corpus_f1})})
    out = logger.metric_aggregated["t|x|0"]
    assert out["f1_macro"] == 0.75
    assert out["f1_micro"] == 0.375
    assert "f1" not in out
    assert "f1_stderr" not in out
    assert out["acc"] == 0.75
    assert logger.skipped == {}


def test_non_numeric_values_are_skipped_and_counted() -> None:
    logger = MetricsLogger()
    for value in [1.0, "n/a", 0.0, None, 1, True]:
        logger.log("t|x|0", {"acc": value})
    for value in ["a", "b"]:
        logger.log("t|x|0", {"label": value})
    logger.aggregate()
    out = logger.metric_aggregated["t|x|0"]
    assert out["acc"] == pytest.approx(statistics.mean([1.0, 0.0, 1, 1]))
    assert "label" not in out
    assert logger.skipped == {"t|x|0": {"acc": 2, "label": 2}}
    logger.metrics_values.clear()
    logger.log("t|x|0", {"acc": 1.0})
    logger.aggregate()
    assert logger.skipped == {}  # counted afresh on each aggregate()


@pytest.mark.parametrize(
    "value",
    [
        np.array([0.1, 0.2]),
        np.array([[1.0]]),
        np.str_("yes"),
        np.complex128(1 + 2j),
        np.datetime64("2025-01-01"),
        np.array(1.0, dtype=object),
    ],
    ids=["array", "2d-array", "np.str_", "complex", "datetime64", "0d-object"],
)
def test_numpy_non_numbers_are_skipped_not_fatal(value: Any) -> None:
    logger = MetricsLogger()
    logger.log("t|x|0", {"acc": 1.0})
    logger.log("t|x|0", {"acc": value})
    logger.aggregate()
    assert logger.metric_aggregated["t|x|0"]["acc"] == 1.0
    assert logger.skipped == {"t|x|0": {"acc": 1}}


@pytest.mark.parametrize(
    "value",
    [np.float32(0.5), np.int8(0), np.uint64(1), np.bool_(True), np.array(0.5)],
    ids=["float32", "int8", "uint64", "bool_", "0d-array"],
)
def test_numpy_numeric_scalars_are_numbers(value: Any) -> None:
    logger = MetricsLogger()
    logger.log("t|x|0", {"acc": 1.0})
    logger.log("t|x|0", {"acc": value})
    logger.aggregate()
    assert logger.metric_aggregated["t|x|0"]["acc"] == pytest.approx((1.0 + float(value)) / 2)
    assert logger.skipped == {}


class TorchLikeScalar:
    """Shaped like a 0-d ``torch.Tensor``: ``dtype`` and ``ndim`` exist, but a torch dtype has no ``kind``."""

    __module__ = "torch"
    dtype = type("dtype", (), {"__module__": "torch"})()
    ndim = 0

    def __float__(self) -> float:
        return 0.5


def test_a_torch_like_scalar_metric_does_not_crash_aggregate() -> None:
    logger = MetricsLogger()
    logger.log("t|x|0", {"acc": 1.0})
    logger.log("t|x|0", {"acc": TorchLikeScalar()})
    logger.aggregate()
    assert logger.metric_aggregated["t|x|0"]["acc"] in (1.0, 0.75)


def test_a_task_aggregation_that_raises_is_left_out_and_recorded() -> None:
    def broken(values: list[Any]) -> float:
        raise ValueError(f"cannot aggregate {len(values)} values")

    logger = MetricsLogger()
    for value in [1.0, 0.0, 1.0]:
        logger.log("t|x|0", {"f1": value, "acc": value})
        logger.log("u|x|0", {"f1": value})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"f1": broken}), "u|x|0": FakeTask({"f1": max})})
    assert logger.failed_aggregations == {"t|x|0": {"f1": "ValueError: cannot aggregate 3 values"}}
    out = logger.metric_aggregated
    assert "f1" not in out["t|x|0"]
    assert "f1_stderr" not in out["t|x|0"]
    assert out["t|x|0"]["acc"] == pytest.approx(2 / 3)
    assert out["u|x|0"]["f1"] == 1.0
    assert out["all"]["f1"] == 1.0  # only the task whose aggregation worked
    logger.aggregate()  # without the failing aggregation: recorded afresh
    assert logger.failed_aggregations == {}
    assert logger.metric_aggregated["t|x|0"]["f1"] == pytest.approx(2 / 3)


@pytest.mark.parametrize(
    ("returned", "shown"),
    [
        (None, "None"),
        (np.array([0.5, 0.25]), "array([0.5 , 0.25])"),
        ({"p": 0.5, "r": None}, "None for 'r'"),
        ("0.5", "'0.5'"),
    ],
    ids=["none", "array", "dict-with-none", "string"],
)
def test_an_aggregation_returning_something_else_than_numbers_is_left_out(returned: Any, shown: str) -> None:
    """Found with lighteval's own task objects: float(None) used to escape aggregate(), so the
    pipeline stopped, and a later save() wrote plain means instead of the task's aggregation."""
    logger = MetricsLogger()
    for value in [1.0, 0.0, 1.0]:
        logger.log("t|x|0", {"f1": value, "acc": value})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"f1": lambda values: returned, "acc": max})})
    why = logger.failed_aggregations["t|x|0"]["f1"]
    assert why.startswith("TypeError: it returned ")
    assert shown in why
    assert "f1" not in logger.metric_aggregated["t|x|0"]
    assert logger.metric_aggregated["t|x|0"]["acc"] == 1.0  # max, the task's own, still applied


def test_numpy_numbers_from_an_aggregation_are_fine() -> None:
    logger = MetricsLogger()
    for value in [1.0, 0.0, 1.0]:
        logger.log("t|x|0", {"mcc": value, "pr": value})
    aggregations = {
        "mcc": lambda values: np.float64(0.25),
        "pr": lambda values: {"p": np.float32(0.5), "n": np.int64(3)},
    }
    logger.aggregate(task_dict={"t|x|0": FakeTask(aggregations)}, bootstrap_iters=0)
    assert logger.metric_aggregated["t|x|0"] == {"mcc": 0.25, "p": 0.5, "n": 3.0}
    assert logger.failed_aggregations == {}


def test_means_written_although_a_task_dict_was_given_are_said() -> None:
    """lighteval raises KeyError for a metric its task does not aggregate; evalsink averages it,
    and says so."""
    logger = MetricsLogger()
    for value in [1.0, 0.0]:
        logger.log("t|x|0", {"f1": value, "extra": value})
        logger.log("absent|x|0", {"acc": value})
        logger.log("raises|x|0", {"acc": value})

    class Raises:
        def aggregation(self) -> dict[str, Any]:
            raise RuntimeError("no metrics configured")

    logger.aggregate(task_dict={"t|x|0": FakeTask({"f1": max}), "raises|x|0": Raises()})
    assert logger.mean_instead == {
        "t|x|0": "metric(s) 'extra' not in the task's aggregation(): plain mean",
        "absent|x|0": "not in task_dict: every metric is a plain mean",
        "raises|x|0": (
            "its aggregation() raised RuntimeError: no metrics configured; every metric is a plain mean"
        ),
    }
    assert logger.metric_aggregated["t|x|0"]["extra"] == 0.5
    logger.aggregate()  # no task_dict: the mean is the rule, nothing to say
    assert logger.mean_instead == {}


def test_a_task_aggregation_raising_on_a_bootstrap_resample_does_not_crash() -> None:
    def inverse_of_hits(values: list[float]) -> float:
        return 1 / sum(values)  # fine on the data, ZeroDivisionError on a resample without a hit

    logger = MetricsLogger()
    for value in [1.0, 0.0, 0.0]:
        logger.log("t|x|0", {"score": value, "acc": value})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"score": inverse_of_hits})}, bootstrap_iters=200)
    out = logger.metric_aggregated["t|x|0"]
    assert out["acc"] == pytest.approx(1 / 3)
    assert out.get("score") == 1.0 or "score" in logger.failed_aggregations.get("t|x|0", {})


@pytest.mark.parametrize(
    ("task", "group"),
    [
        ("lighteval|mmlu:anatomy|5", "lighteval|mmlu:_average|5"),
        ("mmlu:anatomy|5", "mmlu:_average|5"),
        ("lighteval|gsm8k|0", "lighteval|gsm8k:_average|0"),
        ("plain_name", None),
        ("a|b|c|d", None),
    ],
)
def test_suite_average_name(task: str, group: str | None) -> None:
    assert suite_average_name(task) == group


def _aggregate(per_task: dict[str, list[float]], **kwargs: Any) -> dict[str, dict[str, float]]:
    logger = MetricsLogger()
    for task, values in per_task.items():
        for value in values:
            logger.log(task, {"acc": value})
    logger.aggregate(**kwargs)
    return logger.metric_aggregated


def test_sub_task_averages_with_three_part_names() -> None:
    out = _aggregate(
        {
            "lighteval|mmlu:anatomy|5": [1.0, 0.0, 1.0, 1.0],
            "lighteval|mmlu:astronomy|5": [0.0, 0.0, 1.0],
            "lighteval|mmlu:virology|0": [1.0, 1.0],  # other few-shot count: another group, alone
            "lighteval|arc:easy|0": [1.0, 0.0],  # alone in its group
        }
    )
    group = out["lighteval|mmlu:_average|5"]
    anatomy, astronomy = out["lighteval|mmlu:anatomy|5"], out["lighteval|mmlu:astronomy|5"]
    assert set(group) == {"acc", "acc_stderr"}
    assert group["acc"] == pytest.approx((0.75 + 1 / 3) / 2)
    assert group["acc_stderr"] == pytest.approx((anatomy["acc_stderr"] + astronomy["acc_stderr"]) / 2)
    assert "lighteval|mmlu:_average|0" not in out
    assert "lighteval|arc:_average|0" not in out


def test_sub_task_averages_with_two_part_names() -> None:
    out = _aggregate({"mmlu:anatomy|5": [1.0, 1.0], "mmlu:astronomy|5": [0.0, 1.0], "gsm8k|5": [1.0, 0.0]})
    assert out["mmlu:_average|5"]["acc"] == pytest.approx(0.75)
    assert "gsm8k:_average|5" not in out


def test_all_averages_every_metric_over_tasks_but_not_the_averages() -> None:
    per_task = {
        "lighteval|mmlu:anatomy|5": [1.0, 0.0, 1.0, 1.0],
        "lighteval|mmlu:astronomy|5": [0.0, 0.0, 1.0],
        "lighteval|mmlu:virology|5": [1.0, 1.0, 1.0, 0.0, 1.0],
        "lighteval|gsm8k|0": [0.0, 1.0],
    }
    out = _aggregate(per_task)
    tasks = list(per_task)
    # Uneven group sizes: if the sub-task average were counted in 'all', the value would change.
    assert out["all"]["acc"] == pytest.approx(statistics.mean(out[t]["acc"] for t in tasks))
    assert out["all"]["acc_stderr"] == pytest.approx(statistics.mean(out[t]["acc_stderr"] for t in tasks))
    with_group = [*(out[t]["acc"] for t in tasks), out["lighteval|mmlu:_average|5"]["acc"]]
    assert out["all"]["acc"] != pytest.approx(statistics.mean(with_group))


def test_all_averages_each_metric_over_the_tasks_that_have_it() -> None:
    logger = MetricsLogger()
    logger.log("a|x|0", {"acc": 1.0, "em": 0.5})
    logger.log("b|x|0", {"acc": 0.0})
    logger.aggregate()
    assert logger.metric_aggregated["all"] == {"acc": 0.5, "em": 0.5}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf], ids=["nan", "inf", "-inf"])
def test_nonfinite_values_aggregate_to_nonfinite_not_an_exception(bad: float) -> None:
    logger = MetricsLogger()
    logger.log("t|x|0", {"acc": bad})
    logger.log("t|x|0", {"acc": 1.0})
    logger.log("u|x|0", {"acc": 1.0})
    logger.log("u|x|0", {"acc": 0.0})
    logger.aggregate()
    assert not math.isfinite(logger.metric_aggregated["t|x|0"]["acc"])
    assert math.isnan(logger.metric_aggregated["t|x|0"]["acc_stderr"])
    assert logger.metric_aggregated["u|x|0"] == {"acc": 0.5, "acc_stderr": 0.5}  # other tasks unharmed


def test_both_infinities_in_one_metric_aggregate_to_nan() -> None:
    # math.fsum raises ValueError on inf + -inf; found by the conformance kit's odd evaluation
    logger = MetricsLogger()
    for value in [math.inf, -math.inf, 0.5]:
        logger.log("t|x|0", {"acc": value})
    logger.aggregate()
    assert math.isnan(logger.metric_aggregated["t|x|0"]["acc"])
    assert math.isnan(logger.metric_aggregated["t|x|0"]["acc_stderr"])
    assert math.isnan(logger.metric_aggregated["all"]["acc"])


def test_a_nonfinite_bootstrap_estimate_gives_a_nan_stderr() -> None:
    logger = MetricsLogger()
    for value in [math.inf, 1.0, 2.0]:
        logger.log("t|x|0", {"score": value})
    logger.aggregate(task_dict={"t|x|0": FakeTask({"score": max})}, bootstrap_iters=50)
    assert logger.metric_aggregated["t|x|0"]["score"] == math.inf
    assert math.isnan(logger.metric_aggregated["t|x|0"]["score_stderr"])


def test_empty_run_aggregates_to_all_empty() -> None:
    logger = MetricsLogger()
    logger.aggregate()
    assert logger.metric_aggregated == {"all": {}}
    logger.aggregate(task_dict={})
    assert logger.metric_aggregated == {"all": {}}


# -- VersionsLogger, TaskConfigLogger ------------------------------------------------------------
def test_versions_logger() -> None:
    logger = VersionsLogger()
    assert logger.versions == {}
    logger.log("lighteval|arc:easy|0", 1)
    logger.log("custom|t|0", "2.1")
    logger.log("lighteval|arc:easy|0", 2)
    assert logger.versions == {"lighteval|arc:easy|0": 2, "custom|t|0": "2.1"}


def prompt_arc(line: dict[str, Any], task_name: str) -> Doc:
    return Doc(query=line["question"])


@dataclass
class LightevalTaskConfig:
    name: str
    prompt_function: Callable[..., Any]
    hf_repo: str
    metrics: list[dict[str, Any]]
    hf_avail_splits: list[str] = field(default_factory=lambda: ["train", "test"])
    evaluation_splits: list[str] = field(default_factory=lambda: ["test"])
    stop_sequence: tuple[str, ...] = ("\n",)
    hf_token: str | None = None
    original_num_docs: int = -1
    effective_num_docs: int = -1


class LightevalTask:
    def __init__(self, config: LightevalTaskConfig) -> None:
        self.config = config


def test_task_config_logger_reads_task_configs() -> None:
    config = LightevalTaskConfig(
        name="arc:easy",
        prompt_function=prompt_arc,
        hf_repo="allenai/ai2_arc",
        metrics=[{"metric_name": "acc", "higher_is_better": True}],
        hf_token="hf_should_not_leak",
    )
    logger = TaskConfigLogger()
    logger.log({"lighteval|arc:easy|0": LightevalTask(config), "custom|raw|0": {"name": "raw", "version": 1}})
    logger.log_num_docs("lighteval|arc:easy|0", 2376, 100)
    logger.log_num_docs("custom|raw|0", 10, 10)
    logger.log_num_docs("custom|unseen|0", 5, 3)
    assert config.original_num_docs == 2376  # set on the task's own config object
    out = logger.to_dict()
    arc = out["lighteval|arc:easy|0"]
    assert arc["prompt_function"] == "prompt_arc"
    assert arc["stop_sequence"] == ["\n"]
    assert arc["metrics"] == [{"metric_name": "acc", "higher_is_better": True}]
    assert arc["hf_token"] == jsonsafe.REDACTED
    assert (arc["original_num_docs"], arc["effective_num_docs"]) == (2376, 100)
    assert out["custom|raw|0"] == {
        "name": "raw",
        "version": 1,
        "original_num_docs": 10,
        "effective_num_docs": 10,
    }
    assert out["custom|unseen|0"] == {"original_num_docs": 5, "effective_num_docs": 3}
    assert "hf_should_not_leak" not in jsonsafe.dumps(out).decode()


def test_task_config_logger_refuses_an_unencodable_config_when_logged() -> None:
    logger = TaskConfigLogger()
    logger.log({"t|x|0": {"name": "kept"}})
    with pytest.raises(EncodeError, match="sampler"):
        logger.log({"t|x|0": {"name": "t", "sampler": object()}, "u|x|0": {"name": "u"}})
    assert logger.to_dict() == {"t|x|0": {"name": "kept"}}  # the refused call changed nothing


def test_task_config_logger_writes_plain_config_objects_as_attributes() -> None:
    logger = TaskConfigLogger()
    logger.log({"t|x|0": types.SimpleNamespace(name="t", hf_repo="org/data", _cache={"x": 1})})
    assert logger.to_dict() == {"t|x|0": {"name": "t", "hf_repo": "org/data"}}


def test_task_config_logger_wraps_non_object_configs() -> None:
    logger = TaskConfigLogger()
    logger.log({"t|x|0": "just a string"})
    assert logger.to_dict() == {"t|x|0": {"value": "just a string"}}


@pytest.mark.parametrize(
    "tokens",
    [
        [],
        [[]],
        [0, -1, 2_147_483_648],
        [[1, 2], [], [-3]],
        [True, False],
        [0.5, 1.0],
        ["12", "3,4"],
        [1, "a"],
        [(1, 2), (3,)],
        [[1, 2], (3,)],
        [(1, 2), [3]],
        [[[1]], [[2, 3]]],
        [1, [2]],
        [[1], 2],
        [[], [1]],
    ],
    ids=repr,
)
def test_token_hashes_are_lightevals_str_of_the_tokens(tokens: Any) -> None:
    logger = DetailsLogger()
    logger.log("t|x|0", {"query": "q"}, {"input_tokens": tokens, "output_tokens": [tokens]}, {})
    logger.aggregate()
    hashes = logger.compiled_details["t|x|0"].hashes
    assert hashes["hash_input_tokens"] == _combine([xxhash.xxh64(str(tokens).encode()).hexdigest()])
    assert hashes["hash_cont_tokens"] == _combine([xxhash.xxh64(str([tokens]).encode()).hexdigest()])


def test_no_tokens_hash_as_lightevals_str_of_none() -> None:
    """lighteval hashes ``str(None)``; evalsink hashed the empty string."""
    logger = DetailsLogger()
    logger.log("t|x|0", {"query": "q"}, {"input_tokens": None, "output_tokens": None}, {})
    logger.aggregate()
    hashes = logger.compiled_details["t|x|0"].hashes
    expected = _combine([xxhash.xxh64(b"None").hexdigest()])
    assert hashes["hash_input_tokens"] == hashes["hash_cont_tokens"] == expected


def test_cont_token_hash_of_a_list_of_tuples_is_lightevals_str() -> None:
    tokens = [(1, 2), (3,)]
    logger = DetailsLogger()
    logger.log("t|x|0", {"query": "q"}, {"output_tokens": tokens}, {})
    logger.aggregate()
    expected = _combine([xxhash.xxh64(str(tokens).encode()).hexdigest()])
    assert logger.compiled_details["t|x|0"].hashes["hash_cont_tokens"] == expected


def test_tokens_too_large_for_json_are_refused_naming_the_field() -> None:
    logger = DetailsLogger()
    with pytest.raises(EncodeError, match=r"model_response\.input_tokens\[1\]"):
        logger.log("t|x|0", {"query": "q"}, {"input_tokens": [1, 2**70]}, {})


def test_numbers_without_a_float_are_skipped_not_raised() -> None:
    """An int beyond 1e308 and a signalling Decimal NaN made aggregate() raise, which lost the
    run at save(); they are left out of the mean and counted, like other non-numbers."""
    from decimal import Decimal

    logger = MetricsLogger()
    for value in (1, 10**400, Decimal("sNaN"), 0):
        logger.log("t|0", {"count": value})
    logger.aggregate()
    assert logger.metric_aggregated["t|0"]["count"] == 0.5
    assert logger.skipped == {"t|0": {"count": 2}}


def test_token_arrays_hash_as_the_same_tokens_in_a_list() -> None:
    """A numpy array (or torch tensor: lighteval's transformers backend) of tokens hashed
    differently from the same tokens in a list; neither matched lighteval's str(tensor)."""
    tokens = [[5, 6, 7], [8]]

    def compiled(input_tokens: Any, output_tokens: Any) -> dict[str, str]:
        details = DetailsLogger()
        details.log(
            "t|0", Doc(query="q"), ModelResponse(input_tokens=input_tokens, output_tokens=output_tokens), {}
        )
        details.aggregate()
        return dataclasses.asdict(details.compiled_hashes["t|0"])

    as_lists = compiled([1, 2, 3], tokens)
    assert compiled(np.array([1, 2, 4]), tokens) != as_lists  # different tokens, a different hash
    assert compiled(np.array([1, 2, 3]), [np.array(t) for t in tokens]) == as_lists
    assert compiled(np.array([1, 2, 3], dtype=np.int32), tokens) == as_lists


def test_numpy_token_counts_count_as_truncated_and_padded() -> None:
    details = DetailsLogger()
    from decimal import Decimal

    for count in (np.int64(3), np.array(2), 1, 0, np.int64(0), Decimal("NaN")):
        response = ModelResponse(truncated_tokens_count=count, padded_tokens_count=count)
        details.log("t|0", Doc(query="q"), response, {})
    details.aggregate()
    compiled = details.compiled_details["t|0"]
    # a NaN count (Decimal's refuses even the comparison) is no count, and log() does not raise
    assert (compiled.truncated, compiled.non_truncated, compiled.padded, compiled.non_padded) == (3, 3, 3, 3)


@pytest.mark.parametrize("order", [["acc", "acc_stderr"], ["acc_stderr", "acc"]])
def test_a_logged_metric_named_like_a_stderr_is_kept(order: list[str]) -> None:
    """Logging ``acc`` and ``acc_stderr``: the computed stderr of acc overwrote the logged one's
    mean (or, logged first, it was dropped), silently."""
    metrics = MetricsLogger()
    for acc, own in [(1.0, 0.9), (0.0, 0.9)]:
        values = {"acc": acc, "acc_stderr": own}
        metrics.log("t|x|0", {name: values[name] for name in order})
    metrics.aggregate()
    out = metrics.metric_aggregated["t|x|0"]
    assert (out["acc"], out["acc_stderr"]) == (0.5, 0.9)
    assert metrics.stderr_not_written == {"t|x|0": ["acc_stderr"]}
