"""The results model reads lighteval's results JSON and writes it back with the same keys and values."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pydantic
import pytest
from pydantic.json_schema import JsonSchemaMode

from evalsink.models import DetailRecord, EvaluationResults, GeneralConfig, TaskSummary

DATA = Path(__file__).parent / "data" / "lighteval_results.json"
SECTIONS = {"config_general", "results", "versions", "config_tasks", "summary_tasks", "summary_general"}


@pytest.fixture
def raw() -> dict[str, Any]:
    return json.loads(DATA.read_text(encoding="utf-8"))


@pytest.fixture
def results() -> EvaluationResults:
    return EvaluationResults.model_validate_json(DATA.read_bytes())


def test_lighteval_results_file_loads_with_typed_fields(results: EvaluationResults) -> None:
    general = results.config_general
    assert general.lighteval_sha == "9d1b2c3a4e5f60718293a4b5c6d7e8f901234567"
    assert general.num_fewshot_seeds == 1
    assert general.max_samples is None
    assert general.job_id == 0
    assert general.total_evaluation_time_secondes == "272.48678517341614"
    assert general.model_name == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert general.model_configuration is not None
    assert general.model_configuration["generation_parameters"]["max_new_tokens"] == 256
    assert results.results["lighteval|mmlu:anatomy|5"]["acc_stderr"] == pytest.approx(0.041539484047424)
    assert results.results["all"]["extractive_match"] == pytest.approx(0.01288855193328279)
    task = results.config_tasks["lighteval|gsm8k|0"]
    assert task.name == "gsm8k"
    assert task.version == 0
    summary = results.summary_tasks["lighteval|gsm8k|0"]
    assert isinstance(summary, TaskSummary)
    assert summary.truncated == 3
    assert summary.hashes.hash_examples == "0123456789abcdef"
    assert results.summary_general.non_padded == 1321


def test_keys_the_model_does_not_name_are_kept(results: EvaluationResults) -> None:
    task = results.config_tasks["lighteval|mmlu:anatomy|5"]
    extra = task.model_extra or {}
    assert extra["hf_repo"] == "lighteval/mmlu"
    assert extra["metrics"][0]["metric_name"] == "acc"
    assert extra["must_remove_duplicate_docs"] is False
    summary_extra = results.summary_tasks["lighteval|mmlu:anatomy|5"].model_extra or {}
    assert summary_extra["effective_few_shots"] == 5.0


def test_round_trip_gives_back_the_same_json(raw: dict[str, Any], results: EvaluationResults) -> None:
    dumped = results.model_dump(mode="json")
    assert dumped == raw
    assert "model_config" in dumped["config_general"]
    assert "model_configuration" not in dumped["config_general"]
    again = EvaluationResults.model_validate_json(results.model_dump_json())
    assert again == results


def _key_orders(value: Any) -> list[list[str]]:
    """The key order of every object in a JSON value, depth first."""
    if isinstance(value, dict):
        return [list(value), *(order for item in value.values() for order in _key_orders(item))]
    if isinstance(value, list):
        return [order for item in value for order in _key_orders(item)]
    return []


def test_round_trip_keeps_the_key_order(raw: dict[str, Any], results: EvaluationResults) -> None:
    """Declared fields (a task's ``name`` and ``version``) stay where the file had them."""
    task = raw["config_tasks"]["lighteval|gsm8k|0"]
    assert list(task).index("version") > 1  # the sample file is lighteval's: version comes late
    assert _key_orders(results.model_dump(mode="json")) == _key_orders(raw)
    assert _key_orders(json.loads(results.model_dump_json())) == _key_orders(raw)


def test_model_config_by_its_python_name_too() -> None:
    general = GeneralConfig(model_configuration={"model_name": "m"})
    assert general.model_dump(mode="json")["model_config"] == {"model_name": "m"}
    assert GeneralConfig.model_validate({"model_config": {"a": 1}}).model_configuration == {"a": 1}


def test_null_metric_values_are_accepted() -> None:
    results = EvaluationResults.model_validate({"results": {"t": {"acc": None, "em": 1}}})
    assert results.results == {"t": {"acc": None, "em": 1.0}}


def test_wrong_types_are_refused() -> None:
    with pytest.raises(pydantic.ValidationError):
        EvaluationResults.model_validate({"results": {"t": {"acc": "high"}}})
    with pytest.raises(pydantic.ValidationError):
        EvaluationResults.model_validate({"summary_tasks": {"t": {"truncated": "many"}}})


def test_empty_document_has_every_section() -> None:
    dumped = EvaluationResults().model_dump(mode="json")
    assert set(dumped) == SECTIONS
    assert dumped["summary_general"]["hashes"] == {
        "hash_examples": "",
        "hash_full_prompts": "",
        "hash_input_tokens": "",
        "hash_cont_tokens": "",
    }


@pytest.mark.parametrize("mode", ["validation", "serialization"])
def test_json_schema_is_json_with_the_six_sections(mode: JsonSchemaMode) -> None:
    """Both modes: the serializer that keeps the files' key order returns Any, which once made the
    serialization schema (what a consumer of the written files reads) an empty ``{}``."""
    schema = EvaluationResults.model_json_schema(mode=mode)
    reparsed = json.loads(json.dumps(schema))
    assert reparsed == schema
    assert reparsed["type"] == "object"
    assert set(reparsed["properties"]) == SECTIONS
    general = reparsed["$defs"]["GeneralConfig"]["properties"]
    assert "model_config" in general  # the alias, as in the files
    assert "total_evaluation_time_secondes" in general


def test_detail_record_schema_and_validation() -> None:
    schema = DetailRecord.model_json_schema()
    assert {"task_name", "doc", "model_response", "metric"} <= set(schema["properties"])
    record = DetailRecord.model_validate({"task_name": "t", "doc": {"query": "q"}, "metric": {"acc": 1}})
    assert record.doc == {"query": "q"}
    assert record.model_response == {}


WRITTEN_BY_LIGHTEVAL = Path(__file__).parent / "data" / "lighteval_0.13_written_results.json"
"""Written by lighteval 0.13.0's own EvaluationTracker.save() (a run with one NaN f1 value, driven
with lighteval's Doc, ModelResponse and LightevalTask objects), not edited by hand."""


def test_a_file_lighteval_wrote_loads_and_keeps_its_shape() -> None:
    text = WRITTEN_BY_LIGHTEVAL.read_text(encoding="utf-8")
    assert "NaN" in text  # lighteval's bare NaN, which is not JSON
    results = EvaluationResults.model_validate_json(text)
    f1 = results.results["qasper|0"]["f1"]
    assert f1 is not None
    assert math.isnan(f1)
    raw = json.loads(text)  # Python's json reads NaN
    assert _key_orders(results.model_dump(mode="json")) == _key_orders(raw)
    task = results.config_tasks["drop|3"]
    assert (task.name, task.version) == ("drop", 1)
    metric = (task.model_extra or {})["metrics"][0]
    assert metric["sample_level_fn"].startswith("ExactMatches(")  # lighteval writes metric objects as str()


def test_task_config_name_and_version_are_written_only_when_given() -> None:
    """A config logged without a version was written with ``"version": null``, contradicting the
    run's ``versions``."""
    results = EvaluationResults.model_validate(
        {"config_tasks": {"t|0": {"w": 1}, "u|0": {"name": "u", "version": None, "x": 2}}}
    )
    dumped = results.model_dump(mode="json")["config_tasks"]
    assert dumped == {"t|0": {"w": 1}, "u|0": {"name": "u", "version": None, "x": 2}}
    assert results.config_tasks["t|0"].version is None  # still readable as a field
