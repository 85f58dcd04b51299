"""The sink's options: ``sink_config={"wandb": {...}}`` or ``EVALSINK_WANDB__<FIELD>=...``.

Only what can be checked without wandb is checked here (types, ranges, a missing project, options
that contradict each other), so a misconfiguration fails every rank of a distributed evaluation
alike, before any process imports wandb. There is deliberately no API-key field: the key comes
from wandb's own sources (``WANDB_API_KEY``, ``wandb login``), so evalsink never holds it and
cannot leak it.
"""

from __future__ import annotations

import os
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from evalsink import SinkConfig

PROJECT_ENV = "WANDB_PROJECT"
"""wandb's (and lighteval's) variable for the project; read when ``project`` is not given."""

DEFAULT_ROWS_PER_INCREMENT = 1000
DEFAULT_MAX_CELL_CHARS = 4000

# Options that choose or describe a run the sink creates; meaningless when it attaches to one.
_RUN_OPTIONS = (
    "project",
    "entity",
    "run_name",
    "run_id",
    "resume",
    "tags",
    "group",
    "job_type",
    "mode",
    "dir",
)


class WandbSinkConfig(SinkConfig):
    """``sink_config={"wandb": {...}}`` or ``EVALSINK_WANDB__<FIELD>=...`` (docs/sinks/wandb.md)."""

    project: str | None = Field(default=None, min_length=1)
    """W&B project; default env ``WANDB_PROJECT``. Required unless ``attach``."""
    entity: str | None = Field(default=None, min_length=1)
    """User or team; default wandb's own (``WANDB_ENTITY``, else the account's default)."""
    run_name: str | None = Field(default=None, min_length=1)
    """Display name; default ``nanotron_run_info.run``, else the model name, else one W&B generates."""
    run_id: str | None = Field(default=None, min_length=1, max_length=128, pattern=r"^[^/\\#?%:]+$")
    """W&B run id, to resume a run (with ``resume``); default a new id."""
    resume: Literal["allow", "must", "never", "auto"] | None = None
    """wandb.init's ``resume``: continue the run ``run_id`` (``must``), or create it if missing
    (``allow``). Offline it needs a ``step``: wandb cannot tell the resumed run's step there."""
    tags: list[str] = Field(default_factory=list)
    """Run tags; in the environment a comma-separated list."""
    group: str | None = Field(default=None, min_length=1)
    """Run group (e.g. the training run an evaluation belongs to)."""
    job_type: str = Field(default="eval", min_length=1)
    """Run job type."""
    mode: Literal["online", "offline", "disabled"] | None = None
    """wandb mode; default wandb's own (``WANDB_MODE``, ``wandb offline``), else online."""
    dir: str | None = Field(default=None, min_length=1)
    """Folder wandb writes the run's local files in; default wandb's (``WANDB_DIR``, else ``./wandb``)."""
    attach: bool = False
    """Log into the active ``wandb.run`` (e.g. a training script's) instead of creating a run.

    The sink never finishes a run it did not create."""
    step: int | None = Field(default=None, ge=0)
    """Step of every value logged, when ``nanotron_run_info`` gives none; default the run's current
    step (0 for a new run; an attached run's current row)."""
    max_rows: int | None = Field(default=None, ge=0)
    """Row cap of each task's details table; None (default) logs every sample, 0 logs no details."""
    rows_per_increment: int = Field(default=DEFAULT_ROWS_PER_INCREMENT, ge=1)
    """Details rows buffered before they are sent as one increment of the tables; bounds memory."""
    max_cell_chars: int = Field(default=DEFAULT_MAX_CELL_CHARS, ge=16)
    """Longest text kept in one details cell; longer text keeps its start and says what was cut."""

    @field_validator("tags", mode="before")
    @classmethod
    def _split_tags(cls, value: Any) -> Any:
        """``EVALSINK_WANDB__TAGS=a,b`` arrives as one string: split it on commas."""
        if isinstance(value, str):
            return [tag.strip() for tag in value.split(",") if tag.strip()]
        return value

    @model_validator(mode="after")
    def _check_run_options(self) -> WandbSinkConfig:
        """A run to create needs a project; a run to attach to takes none of the run options.

        Checked in the model, so ``evalsink sinks --check`` reports it too.
        """
        if self.attach:
            given = [name for name in _RUN_OPTIONS if name in self.model_fields_set]
            if given:
                raise ValueError(
                    f"{', '.join(given)} cannot be combined with attach=True: the sink logs into the "
                    "active wandb.run as it was created"
                )
        elif self.resolved_project() is None:
            raise ValueError(
                "the wandb sink needs a project: "
                'sink_config={"wandb": {"project": "my-evals"}}, EVALSINK_WANDB__PROJECT=my-evals or '
                f"{PROJECT_ENV}=my-evals (or attach=True to log into the active wandb.run)"
            )
        return self

    def resolved_project(self) -> str | None:
        """The project to create runs in: the option, else ``WANDB_PROJECT``."""
        return self.project or os.environ.get(PROJECT_ENV) or None
