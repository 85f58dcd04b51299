"""The sink contract: the four hooks a sink may implement, in the order they fire.

A sink is a class registered under the ``evalsink.sinks`` entry-point group. Its methods marked with
:data:`hookimpl` and named like the specs below are called by the tracker. A sink implements only the
hooks it needs and may accept any subset of a hook's arguments. docs/hooks.md documents the same
hooks for sink authors; a test keeps the two in step.

Guarantees the core gives every sink (see :mod:`evalsink.tracker`):

* ``evalsink_run_started`` fires once, before any other hook of the run;
* ``evalsink_details_batch`` fires zero or more times, with samples in the order they were logged,
  and every batch has been delivered before ``evalsink_results_saved`` fires;
* ``evalsink_run_finished`` fires exactly once for a started run, even after an exception;
* an exception raised by one sink is recorded against that sink and never reaches the others.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults
    from evalsink.run import DetailsBatch, Run, RunStatus

PROJECT = "evalsink"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def evalsink_run_started(run: Run) -> None:
    """The evaluation run has started: open connections, create remote runs, check credentials.

    Fires once per run, on the first of: entering the tracker's ``with`` block, the first batch of
    details, or ``save()``. Model information logged before that point is available on
    ``run.config_general``; ``run.date_id`` is not set yet.

    :param run: the run being tracked (ids, output location, tracker settings, live loggers).
    """


@hookspec
def evalsink_details_batch(run: Run, batch: DetailsBatch) -> None:
    """A batch of per-sample details was logged and is already safe in the on-disk spool.

    Fires every ``flush_every`` samples (or 16 MB of them), when a sample is logged while the
    oldest buffered one has waited ``flush_seconds``, and once more before results are saved;
    never once per sample. A
    sink may stream the rows (``batch.records()`` decodes them lazily) or ignore batches and read
    everything from ``run.details`` at the end; it must not keep every batch in memory.

    :param run: the run being tracked.
    :param batch: the samples of this batch, possibly from several tasks, in logging order.
    """


@hookspec
def evalsink_results_saved(run: Run, results: EvaluationResults) -> list[str] | None:
    """Metrics are aggregated and every details batch has been delivered: write or publish.

    Fires once, from ``save()``. ``run.date_id`` is set. Local sinks are called before remote ones.
    Write the results before converting details, so a details problem never costs the results.

    :param run: the run being tracked; ``run.details`` reads back every logged sample, task by task.
    :param results: the validated results model (lighteval's results JSON layout), this sink's
        own copy.
    :return: the paths or URLs written (a list of ``str``), shown in ``save()``'s report, or
        None; anything else is left out of the report's outputs, with a warning.
    """


@hookspec
def evalsink_run_finished(run: Run, status: RunStatus, error: BaseException | None) -> None:
    """The run is over: flush, close, finish remote runs. Always fires for a started run.

    Fires after ``save()`` (or when the tracker's ``with`` block is left, or at interpreter exit
    for a run that was started and never saved), also when the evaluation raised. It is called even
    for a sink whose earlier hook failed, so the sink can release what it opened.

    :param run: the run being tracked.
    :param status: ``RunStatus.OK`` or ``RunStatus.FAILED``.
    :param error: the exception that failed the run, if any.
    """


HOOK_NAMES: tuple[str, ...] = (
    "evalsink_run_started",
    "evalsink_details_batch",
    "evalsink_results_saved",
    "evalsink_run_finished",
)
