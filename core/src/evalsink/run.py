"""What a sink receives: the run it works for, the batches of details, the final status."""

from __future__ import annotations

import enum
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from evalsink.loggers import GeneralConfigLogger
    from evalsink.spool import DetailSpool
    from evalsink.storage import OutputDir


class RunStatus(str, enum.Enum):
    OK = "ok"
    FAILED = "failed"


class DetailsBatch:
    """Samples logged since the previous flush, already written to the spool.

    Rows stay encoded (JSON bytes) until a sink asks for them, so sinks that read the spool at the
    end cost nothing per batch.

    Every sink is handed the same batch, one after the other, so a batch cannot be changed: a sink
    that rewrote a task name or ``first_index`` would have changed what every later sink received.
    ``task_names`` is a tuple, ``first_index`` a read-only property, and ``lines()`` an immutable
    sequence.
    """

    __slots__ = ("_first_index", "_lines", "_task_names")

    def __init__(self, task_names: Sequence[str], lines: Sequence[bytes], first_index: int = 0) -> None:
        self._task_names = tuple(task_names)
        # the spool's own lines (BufferLines) cannot be assigned to; a plain list could
        self._lines = tuple(lines) if isinstance(lines, list) else lines
        self._first_index = first_index

    @property
    def task_names(self) -> tuple[str, ...]:
        """The task of each sample, in logging order, beside :meth:`lines`."""
        return self._task_names

    @property
    def first_index(self) -> int:
        """The position in the run of the batch's first sample (0 for the run's first sample)."""
        return self._first_index

    def __len__(self) -> int:
        return len(self._lines)

    @property
    def tasks(self) -> list[str]:
        """Distinct task names in this batch, in first-seen order."""
        return list(dict.fromkeys(self.task_names))

    def lines(self) -> Sequence[bytes]:
        """The raw JSON lines (one object per sample, see :mod:`evalsink.spool`)."""
        return self._lines

    def records(self, task_name: str | None = None) -> Iterator[dict[str, Any]]:
        """Decoded rows: dicts with ``task_name``, ``doc``, ``model_response`` and ``metric``."""
        for task, line in zip(self.task_names, self._lines, strict=True):
            if task_name is None or task == task_name:
                yield orjson.loads(line)


def nanotron_run_and_step(info: Any) -> tuple[str | None, int | None]:
    """(run, step) of a nanotron_run_info-like object; missing attributes read as None.

    Shared by the sinks that line eval points up with training curves (Trackio, W&B).
    """
    if info is None:
        return None, None
    run, step = getattr(info, "run", None), getattr(info, "step", None)
    if step is not None and (isinstance(step, bool) or not isinstance(step, int) or step < 0):
        raise ValueError(f"nanotron_run_info.step must be an int >= 0, not {step!r}")
    return (str(run) if run is not None else None), step


@dataclass
class TrackerSettings:
    """The tracker's constructor arguments, as every sink sees them (lighteval's names)."""

    output_dir: str
    results_path_template: str | None = None
    save_details: bool = True
    push_to_hub: bool = False
    push_to_tensorboard: bool = False
    hub_results_org: str | None = ""
    tensorboard_metric_prefix: str = "eval"
    public: bool = False
    nanotron_run_info: Any = None
    use_wandb: bool = False


@dataclass
class Run:
    """One evaluation run, shared by every sink of a tracker."""

    run_id: str
    settings: TrackerSettings
    output: OutputDir
    details: DetailSpool
    general_config: GeneralConfigLogger
    date_id: str | None = None

    @property
    def model_name(self) -> str | None:
        return self.general_config.model_name

    @property
    def config_general(self) -> dict[str, Any]:
        """A JSON-ready snapshot of the general config as logged so far."""
        return self.general_config.to_dict()
