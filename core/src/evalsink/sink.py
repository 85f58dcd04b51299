"""What a sink author subclasses: :class:`Sink` and its typed :class:`SinkConfig`."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

from evalsink.sink_thread import WARNINGS_LOCK

if TYPE_CHECKING:
    from evalsink.run import TrackerSettings


class SinkConfig(BaseModel):
    """Base of every sink's config: unknown keys are rejected, values are validated on assignment.

    Secrets belong in ``pydantic.SecretStr`` fields, which evalsink never writes out; a sink
    typically falls back to its backend's own environment variable (``HF_TOKEN``...) when the
    field is not given.
    """

    model_config = ConfigDict(extra="forbid", validate_assignment=True)

    required: bool = False
    """When True, a failure of this sink fails ``save()`` (after every other sink has run)."""
    hook_timeout: float | None = Field(default=1800.0, gt=0)
    """Seconds one hook call may take; past it the sink is marked failed (hung) and the run goes on
    without it. ``inf`` waits forever on the sink's thread; None waits forever and calls the sink
    on the evaluation's own thread (from the environment: ``none``). There too, a ``sys.exit()`` in
    a hook fails only the sink; a Ctrl-C while the sink runs marks it failed and stops the
    evaluation."""

    @field_validator("hook_timeout", mode="before")
    @classmethod
    def _none_from_text(cls, value: object) -> object:
        """The environment can only say None in words."""
        if isinstance(value, str) and value.strip().lower() in {"none", "null"}:
            return None
        return value


class Sink:
    """Base class for sinks. Subclasses set ``config_model`` and implement hooks with ``@hookimpl``.

    The entry point ``[project.entry-points."evalsink.sinks"] <name> = "pkg:Class"`` registers it;
    the entry-point name is the sink name users enable. ``remote = False`` marks sinks that write
    local files: they run before remote ones, so results are on disk before anything is uploaded.
    """

    config_model: ClassVar[type[SinkConfig]] = SinkConfig
    remote: ClassVar[bool] = True
    all_ranks: ClassVar[bool] = False
    """With several processes (RANK/WORLD_SIZE), only rank 0 calls a sink's hooks — it writes the
    merged run — unless the sink sets this: it then also gets the hooks of every other rank's
    own samples (``run_started``, ``details_batch``, ``run_finished``; ``results_saved`` is rank 0's)."""

    def __init__(self, config: SinkConfig, settings: TrackerSettings) -> None:
        self.config = config
        self.settings = settings
        self.warnings: list[str] = []

    def warn(self, message: str) -> None:
        """Tell the user something that is not a failure: data kept in another form than it was
        logged, a value shortened, an option that had no effect.

        The message goes to ``save()``'s ``report.warnings`` as ``"<sink>: <message>"`` (for
        warnings given until the end of ``evalsink_results_saved``) and to the sink's outcome
        (``report[name].warnings``). Safe to call from the sink's own threads, also once the run
        is finished: such a late warning is logged at once and still added to the sink's outcome.
        """
        with WARNINGS_LOCK:  # the manager swaps the list once the run is finished: none is lost
            self.__dict__.setdefault("warnings", []).append(message)  # even if __init__ was overridden
