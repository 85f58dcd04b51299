"""The results model: lighteval's results JSON as typed pydantic models.

Every model accepts keys it does not know (lighteval adds fields between versions), so a results file
written by any lighteval release loads with ``EvaluationResults.model_validate_json``. The JSON
Schema is ``EvaluationResults.model_json_schema()``.

Fields whose value comes straight from the caller (task versions, a task config's name and version,
``log_args_info``'s arguments) take any JSON value, with the usual type first: lighteval writes
whatever it was given, and a stricter model made ``save()`` fail over a version logged as ``1.5``
after the whole evaluation had run, writing nothing.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    JsonValue,
    PrivateAttr,
    SerializerFunctionWrapHandler,
    ValidatorFunctionWrapHandler,
    model_serializer,
    model_validator,
)


class _Open(BaseModel):
    """Keeps unknown keys, and the order of the keys it was given.

    pydantic writes declared fields first and unknown ones after; a results file written from
    this model would then list a task's ``version`` second instead of where lighteval puts it.
    """

    model_config = ConfigDict(
        extra="allow",
        populate_by_name=True,
        serialize_by_alias=True,
        protected_namespaces=(),
    )
    _key_order: tuple[str, ...] = PrivateAttr(default=())
    _unset_left_out: ClassVar[frozenset[str]] = frozenset()
    """Declared fields written only when given (a default the user never logged is not theirs)."""

    @model_validator(mode="wrap")
    @classmethod
    def _remember_key_order(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        model = handler(data)
        if isinstance(data, dict) and isinstance(model, _Open):
            model._key_order = tuple(data)
        return model

    @classmethod
    def __get_pydantic_json_schema__(cls, schema: Any, handler: GetJsonSchemaHandler) -> Any:
        """The serialization schema of the declared fields: the key-order wrap above returns
        ``Any``, which made ``model_json_schema(mode="serialization")`` an empty ``{}``."""
        if handler.mode == "serialization":
            schema = _without_serializer(schema)
        return handler(schema)

    @model_serializer(mode="wrap")
    def _write_in_key_order(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if isinstance(out, dict):
            for key in self._unset_left_out - self.model_fields_set:
                out.pop(key, None)
        if not self._key_order or not isinstance(out, dict):
            return out
        ordered = {key: out[key] for key in self._key_order if key in out}
        ordered.update((key, value) for key, value in out.items() if key not in ordered)
        return ordered


def _without_serializer(schema: Any) -> Any:
    """A copy of a model's core schema (through its validator wrappers) minus its own serializer."""
    if not isinstance(schema, dict):
        return schema
    copy = {key: value for key, value in schema.items() if key != "serialization"}
    if schema.get("type") != "model" and "schema" in schema:
        copy["schema"] = _without_serializer(schema["schema"])
    return copy


class GeneralConfig(_Open):
    """``config_general``: how and when the evaluation ran, and on which model."""

    lighteval_sha: str | JsonValue = None
    num_fewshot_seeds: int | JsonValue = None
    max_samples: int | JsonValue = None
    job_id: int | str | JsonValue = None
    start_time: float | None = None
    end_time: float | None = None
    total_evaluation_time_secondes: str | None = Field(
        default=None, description="Wall time in seconds, as a string (lighteval's key, typo included)."
    )
    model_name: str | None = None
    model_configuration: dict[str, Any] | None = Field(
        default=None,
        alias="model_config",
        description="The model's configuration; secret-looking fields are redacted.",
    )


class Hashes(_Open):
    """xxh64 digests that tell whether two runs saw the same prompts and produced the same tokens."""

    hash_examples: str = ""
    hash_full_prompts: str = ""
    hash_input_tokens: str = ""
    hash_cont_tokens: str = ""


class TaskSummary(_Open):
    """``summary_tasks[task]``: hashes and truncation/padding counts of one task."""

    hashes: Hashes = Field(default_factory=Hashes)
    truncated: int = 0
    non_truncated: int = 0
    padded: int = 0
    non_padded: int = 0


class GeneralSummary(TaskSummary):
    """``summary_general``: the same, over all tasks."""


class TaskConfig(_Open):
    """``config_tasks[task]``: the task's configuration as lighteval logs it (open-ended).

    ``name`` and ``version`` are written only when the configuration has them: a ``"version":
    null`` nobody logged contradicted the run's ``versions``."""

    _unset_left_out = frozenset({"name", "version"})

    name: str | JsonValue = None
    version: int | str | JsonValue = None


class EvaluationResults(_Open):
    """A whole results file (``results_{date_id}.json``)."""

    config_general: GeneralConfig = Field(default_factory=GeneralConfig)
    results: dict[str, dict[str, float | None]] = Field(
        default_factory=dict,
        description="Aggregated metrics per task, with '<metric>_stderr', suite averages and 'all'. "
        "null marks a NaN or infinite value.",
    )
    versions: dict[str, int | str | JsonValue] = Field(default_factory=dict)
    config_tasks: dict[str, TaskConfig] = Field(default_factory=dict)
    summary_tasks: dict[str, TaskSummary] = Field(default_factory=dict)
    summary_general: GeneralSummary = Field(default_factory=GeneralSummary)


class DetailRecord(_Open):
    """One sample of one task, as stored in the details parquet files and the spool."""

    task_name: str | None = None
    doc: dict[str, Any] = Field(default_factory=dict)
    model_response: dict[str, Any] = Field(default_factory=dict)
    metric: dict[str, Any] = Field(default_factory=dict)
