"""``EvaluationTracker``: lighteval's tracker, rebuilt around sinks. The run's whole lifecycle is here.

1. **Construct** — choose the sinks (``sinks=``, else ``EVALSINK_SINKS``, else ``["local"]``, plus
   the sinks lighteval's flags ask for), find them by entry point, validate each config and build
   each sink. A missing sink or a bad config fails here, before any evaluation time is spent.
2. **Run started** — on entering ``with``, the first flushed batch of details, or ``save()``.
3. **Details batches** — ``details_logger.log()`` encodes each sample into the on-disk spool;
   every ``flush_every`` samples (or ``flush_seconds``) the spool is fsynced and the batch handed
   to every sink.
4. **Results saved** — ``save()`` flushes the last batch, aggregates what the caller did not,
   validates the results model and hands it to the sinks, local ones first.
5. **Run finished** — always, in a ``finally``: after ``save()``, on leaving ``with`` (status
   ``failed`` when an exception escapes), or at interpreter exit for a run never saved; a SIGTERM
   becomes an exception for this (:mod:`evalsink.termination`).

A sink's exception is recorded against that sink only (see :mod:`evalsink.manager`); ``save()``
returns a per-sink :class:`~evalsink.report.SaveReport` and raises only for ``required`` sinks.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import dataclasses
import itertools
import logging
import math
import os
import re
import sys
import uuid
import weakref
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from evalsink import jsonsafe, none_metrics, nonfinite, termination
from evalsink.discovery import discover, find_sinks
from evalsink.errors import EvalsinkError, SinkConfigError
from evalsink.loggers import (
    DetailsLogger,
    GeneralConfigLogger,
    MetricsLogger,
    TaskConfigLogger,
    VersionsLogger,
    stderr_collision,
)
from evalsink.manager import SinkManager
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest, write_manifest
from evalsink.paths import checked_date_id, new_date_id
from evalsink.ranks import current_rank
from evalsink.report import SaveReport, SinkOutcome
from evalsink.run import DetailsBatch, Run, RunStatus, TrackerSettings
from evalsink.shards import (
    Evaluation,
    launch_identity,
    launcher_run_id,
    next_sequence,
    superseded,
    wait_for_shards,
)
from evalsink.spool import DetailSpool
from evalsink.storage import OutputDir, OutputDirError, check_can_create

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults

logger = logging.getLogger("evalsink")

DEFAULT_SINKS = ("local",)
_FLAG_SINKS = (("push_to_hub", "hub"), ("push_to_tensorboard", "tensorboard"), ("use_wandb", "wandb"))


def select_sinks(
    sinks: Sequence[str] | None,
    *,
    push_to_hub: bool = False,
    push_to_tensorboard: bool = False,
    use_wandb: bool = False,
    environ: Mapping[str, str] | None = None,
) -> list[str]:
    """The sink names to enable, in order, without duplicates."""
    env = os.environ if environ is None else environ
    if sinks is not None:
        if not isinstance(sinks, (str, Iterable)):
            raise EvalsinkError(
                "sinks must be a list of sink names (or one comma-separated string), "
                f"not {type(sinks).__name__}"
            )
        if isinstance(sinks, str):
            sinks = sinks.split(",")
        names = [str(name).strip() for name in sinks if str(name).strip()]
    elif "EVALSINK_SINKS" in env:
        names = [name.strip() for name in env["EVALSINK_SINKS"].split(",") if name.strip()]
    else:
        names = list(DEFAULT_SINKS)
    flags = {"push_to_hub": push_to_hub, "push_to_tensorboard": push_to_tensorboard, "use_wandb": use_wandb}
    names += [sink for flag, sink in _FLAG_SINKS if flags[flag]]
    return list(dict.fromkeys(names))


_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


def _settings_snapshot(settings: TrackerSettings) -> dict[str, Any]:
    """The tracker arguments a recovery needs, JSON-ready (nanotron_run_info as its run and step)."""
    values = {f.name: getattr(settings, f.name) for f in dataclasses.fields(settings)}
    info = values.pop("nanotron_run_info", None)
    if info is not None:
        values["nanotron_run_info"] = {"run": getattr(info, "run", None), "step": getattr(info, "step", None)}
    data: dict[str, Any] = jsonsafe.to_jsonable(values)
    return data


def _check_run_id(run_id: str) -> str:
    """Run ids name folders: letters, digits, '.', '_' and '-' only, so they cannot escape."""
    if not _RUN_ID.fullmatch(run_id):
        raise EvalsinkError(
            f"invalid run id {run_id!r}: use up to 128 letters, digits, '.', '_' or '-', starting "
            "with a letter or digit"
        )
    return run_id


class _MetricsLogger(MetricsLogger):
    """Remembers whether values arrived since the last ``aggregate()`` and with which tasks, so
    ``save()`` can re-aggregate the same way."""

    def __init__(self) -> None:
        super().__init__()
        self.stale = False
        self.last_task_dict: Mapping[str, Any] | None = None
        self.last_bootstrap_iters = 1000
        self.called = False  # whether the caller aggregated (then its choice of tasks stands)
        self.closed: str | None = None  # as DetailsLogger.closed

    def log(self, task_name: str, metrics: Mapping[str, Any]) -> None:
        if self.closed is not None:
            raise EvalsinkError(self.closed)
        super().log(task_name, metrics)
        self.stale = True

    def aggregate(self, task_dict: Mapping[str, Any] | None = None, bootstrap_iters: int = 1000) -> None:
        # remembered first: should this call raise, save() retries with the same tasks (and fails
        # the same way) instead of quietly writing plain means
        self.last_task_dict, self.last_bootstrap_iters = task_dict, bootstrap_iters
        self.called = True
        super().aggregate(task_dict=task_dict, bootstrap_iters=bootstrap_iters)
        self.stale = False

    def refresh(self, logged_tasks: Mapping[str, Any]) -> None:
        """Aggregate for ``save()`` if needed. A caller that never aggregated gets the aggregations
        of the tasks it gave ``task_config_logger.log()`` (``logged_tasks``): a ``max`` or corpus
        metric was written as a plain mean, silently."""
        if self.stale or not self.metric_aggregated:
            task_dict = self.last_task_dict if self.called else (logged_tasks or None)
            super().aggregate(task_dict=task_dict, bootstrap_iters=self.last_bootstrap_iters)
            self.last_task_dict = task_dict
            self.stale = False


class EvaluationTracker:
    """Drop-in for ``lighteval.logging.evaluation_tracker.EvaluationTracker``.

    The first ten arguments are lighteval's. ``sinks`` is the exact list of sinks to enable
    (default: ``EVALSINK_SINKS`` or ``["local"]``); lighteval's ``push_to_hub``,
    ``push_to_tensorboard`` and ``use_wandb`` add the hub, tensorboard and wandb sinks.
    ``sink_config`` maps a sink name to its options (see each sink's config model);
    ``run_id`` names the run (default: ``EVALSINK_RUN_ID`` or a random id). Details are flushed to
    disk and delivered to sinks every ``flush_every`` samples or ``flush_seconds`` seconds.
    """

    def __init__(
        self,
        output_dir: str | os.PathLike[str],
        results_path_template: str | None = None,
        save_details: bool = True,
        push_to_hub: bool = False,
        push_to_tensorboard: bool = False,
        hub_results_org: str | None = "",
        tensorboard_metric_prefix: str = "eval",
        public: bool = False,
        nanotron_run_info: Any = None,
        use_wandb: bool = False,
        *,
        sinks: Sequence[str] | None = None,
        sink_config: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        flush_every: int = 1000,
        flush_seconds: float = 10.0,
        resume: bool = False,
        merge_timeout: float = 600.0,
    ) -> None:
        self.settings = TrackerSettings(
            output_dir=os.fspath(output_dir),
            results_path_template=results_path_template,
            save_details=save_details,
            push_to_hub=push_to_hub,
            push_to_tensorboard=push_to_tensorboard,
            hub_results_org=hub_results_org,
            tensorboard_metric_prefix=tensorboard_metric_prefix,
            public=public,
            nanotron_run_info=nanotron_run_info,
            use_wandb=use_wandb,
        )
        self.process = current_rank()
        self._pid = os.getpid()  # the exit handler leaves a forked child's copy of this tracker alone
        self.merge_timeout = _check_merge_timeout(merge_timeout)
        shared_run_id = self._shared_run_id(run_id)
        if resume and shared_run_id is None:
            raise EvalsinkError(
                "resume=True needs the id of the run to resume: pass run_id=... or set EVALSINK_RUN_ID "
                f"(`evalsink recover {self.settings.output_dir} --list` lists the runs left to resume)"
            )
        self.run_id = _check_run_id(shared_run_id or uuid.uuid4().hex[:16])
        self._sequence = 0  # which evaluation of this run id (see shards): set once construction succeeded
        self.sink_names = select_sinks(
            sinks, push_to_hub=push_to_hub, push_to_tensorboard=push_to_tensorboard, use_wandb=use_wandb
        )
        if not self.sink_names:
            logger.warning(
                "no sink is enabled (sinks=[] or EVALSINK_SINKS set but empty): save() will write nothing"
            )
        try:
            self.output = OutputDir(self.settings.output_dir)
        except OutputDirError as exc:
            raise OutputDirError(f"output_dir {exc}") from exc.__cause__
        try:  # the first flush creates the run's folder: say it cannot, before any evaluation
            check_can_create(self._run_folder())
        except OutputDirError as exc:
            raise OutputDirError(
                f"output_dir {self.settings.output_dir!r} cannot be used: the run's spool folder {exc}"
            ) from None
        _check_sink_config(sink_config)
        self._sink_options: dict[str, dict[str, Any]] = {}  # for the manifest, see _build_sinks
        self._manager = self._build_sinks(self.sink_names, sink_config or {})

        if resume:
            spool = self._reopen_spool(flush_every=flush_every, flush_seconds=flush_seconds)
        else:
            spool = DetailSpool(self._spool_path(), flush_every=flush_every, flush_seconds=flush_seconds)
        self.general_config_logger = GeneralConfigLogger()
        self.details_logger = DetailsLogger(spool, on_batch=self._deliver)
        spool.before_write = self._write_manifest  # the batch recoverable as soon as it is on disk
        self.metrics_logger = _MetricsLogger()
        self.versions_logger = VersionsLogger()
        self.task_config_logger = TaskConfigLogger()
        self.run = Run(
            run_id=self.run_id,
            settings=self.settings,
            output=self.output,
            details=spool,
            general_config=self.general_config_logger,
        )
        self._started = False
        self._finished = False
        self._in_context = False
        self._closed = False
        self._report: SaveReport | None = None
        self.recovery: dict[str, Any] | None = None
        """Set for a run rebuilt from a crashed run's spool; saved in the results (``evalsink_recovery``)."""
        self._manifest = RunManifest(
            run_id=self.run_id,
            spool=spool.path.name,
            settings=_settings_snapshot(self.settings),
            sinks=list(self.sink_names),
            sink_options=self._sink_options,
            rank=self.process.rank,
            world_size=self.process.world_size,
            launch=launch_identity(),
            sequence=self._sequence,
        )
        self._shard_marked = False  # a rank > 0 marked its shard done at save(): rank 0 may merge it
        self._save_failed = False
        self._merged: list[Path] = []  # other ranks' spools and manifests merged into this run
        self._manifest_bytes = b""
        self._replay: list[DetailsBatch] = []
        if resume:
            self._restore(spool)
        self._register_for_exit()

    # -- construction ---------------------------------------------------------------------
    def _register_for_exit(self) -> None:
        """What the exit handler looks at: every tracker, and holds on to: a rank > 0's, which
        lighteval drops long before the exit (see :meth:`_tell_rank_0`).

        Also where a tracker of several ranks takes its sequence number: only once construction
        succeeded, so that a construction that failed and was retried on one rank does not shift
        that rank's numbering. A resumed tracker is the evaluation its manifest recorded.
        """
        if self.process.world_size > 1 and self.recovery is None:
            self._sequence = self._manifest.sequence = next_sequence(self.run_id)
        _BUILT.add(self)
        if not self.process.is_main:
            _OTHER_RANKS.add(self)
        termination.hold(self)  # a scheduler's SIGTERM then finishes the run (see termination)
        _close_at_multiprocessing_exit()

    def _shared_run_id(self, run_id: str | None) -> str | None:
        """The run id; with several ranks, one they all share (else each would write its own run)."""
        explicit = run_id or os.environ.get("EVALSINK_RUN_ID")
        if explicit or self.process.world_size == 1:
            return explicit
        derived = launcher_run_id()
        if derived is None:
            raise EvalsinkError(
                f"this is rank {self.process.rank} of {self.process.world_size} processes, and every rank "
                "must write the same run: pass the same run_id=... to each, or set EVALSINK_RUN_ID "
                "(torchrun and Slurm runs get one from TORCHELASTIC_RUN_ID / SLURM_JOB_ID)"
            )
        return derived

    def _build_sinks(self, names: list[str], sink_config: Mapping[str, Any]) -> SinkManager:
        from evalsink.config import build_config, public_options  # pydantic: imported here, not at import
        from evalsink.sink import SinkConfig

        installed = discover()
        entries = find_sinks(names, installed)  # every missing sink reported, before importing any
        unknown = sorted(set(sink_config) - set(installed.names()))
        if unknown:
            raise SinkConfigError(
                f"sink_config names sink(s) that are not installed: {', '.join(unknown)} "
                f"(installed: {', '.join(installed.names())})"
            )
        for name in sorted(set(sink_config) - set(names)):
            logger.warning("sink_config[%r] is ignored: the sink %r is not enabled", name, name)
        manager = SinkManager()
        for entry in entries:
            sink_class = entry.load()
            model = getattr(sink_class, "config_model", SinkConfig)
            config = build_config(entry.name, model, sink_config.get(entry.name))
            self._sink_options[entry.name] = public_options(config)
            try:
                sink = sink_class(config=config, settings=self.settings)
            except OutputDirError as exc:  # a URL of the sink's own config
                raise SinkConfigError(f"sink {entry.name!r} could not start: {exc}") from exc
            except EvalsinkError:
                raise
            except Exception as exc:
                raise SinkConfigError(
                    f"sink {entry.name!r} could not start: {type(exc).__name__}: {exc}"
                ) from exc
            if not self.process.is_main and not getattr(sink_class, "all_ranks", False):
                continue  # constructed (so a bad config fails every rank), but rank 0 writes the run
            manager.register(
                entry.name,
                sink,
                required=bool(getattr(config, "required", False)),
                timeout=getattr(config, "hook_timeout", None),
            )
        return manager

    def _run_folder(self) -> Path:
        if self.output.is_local:
            return Path(self.output.root) / ".evalsink" / "runs" / self.run_id
        from evalsink.recovery import spool_root  # one rule for the tracker and `evalsink recover`

        return spool_root() / self.run_id

    def _reopen_spool(self, **options: Any) -> DetailSpool:
        """The spool of the run being resumed; the run must be one spool, not in use by a live process."""
        folder = self._run_folder()
        chosen = RESUME_SPOOL.get()
        spools = [chosen] if chosen is not None else sorted(folder.glob("details-*.jsonl"))
        if not spools:
            raise EvalsinkError(f"no run {self.run_id!r} to resume: no details spool in {folder}")
        if len(spools) > 1:
            names = ", ".join(path.name for path in spools)
            raise EvalsinkError(
                f"run {self.run_id!r} has {len(spools)} spools in {folder} ({names}), written by several "
                "trackers; resuming one of them is not supported"
            )
        manifest = read_manifest(manifest_path(spools[0]))
        self._check_resumed_output(spools[0], manifest)
        if (
            manifest is not None
            and manifest.state is RunState.RUNNING
            and manifest.pid != os.getpid()
            and manifest.process_alive()
        ):
            raise EvalsinkError(
                f"run {self.run_id!r} is still being written by process {manifest.pid} on {manifest.host}"
            )
        if manifest is not None and manifest.premerge and manifest.date_id is None:
            _cut_back_to_own_samples(spools[0], manifest)
        return DetailSpool.reopen(spools[0], **options)

    def _check_resumed_output(self, spool: Path, manifest: RunManifest | None) -> None:
        """Refuse to resume a run that saved to another output.

        Every URL output keeps its spools under the one spool root, so a run id alone may name a
        killed run of another output (an exported EVALSINK_RUN_ID): resuming it would publish that
        run's samples, under this model, to this output. A local output holds its own run folder.
        """
        if self.output.is_local:
            return
        theirs = None if manifest is None else str(manifest.settings.get("output_dir", "")).rstrip("/")
        if theirs == self.settings.output_dir.rstrip("/"):
            return
        whose = "has no manifest naming its output" if theirs is None else f"saves to {theirs}"
        raise EvalsinkError(
            f"cannot resume run {self.run_id!r} into {self.settings.output_dir}: its spool {spool} {whose} "
            f"(URL outputs share the spool folder {spool.parent.parent}); resume it with that "
            "output_dir, or use another run id"
        )

    def _restore(self, spool: DetailSpool) -> None:
        """Rebuild the loggers from the spool and manifest of a run that did not finish.

        Every record becomes a sample of the details logger (hashes) and of the metrics logger (its
        ``metric`` values, which lighteval passes to both), and is handed to the sinks again as
        batches once the run starts: the sinks of the crashed process are gone with it.
        """
        manifest = read_manifest(manifest_path(spool.path))
        if manifest is not None:
            self._manifest.date_id = manifest.date_id  # its results file may be published under it
            self._sequence = self._manifest.sequence = manifest.sequence  # the same evaluation
            # and the same rank of the same launch: a recovery stopped in the middle rewrites this
            # manifest, and the next one must still see the ranks of one launch (it saw world size 1)
            self._manifest.rank, self._manifest.world_size = manifest.rank, manifest.world_size
            self._manifest.launch = manifest.launch
            self.general_config_logger.restore(manifest.config_general)
            self.versions_logger.versions.update(manifest.versions)
            self.task_config_logger.tasks_configs.update(manifest.config_tasks)
        counts = {task: spool.count(task) for task in spool.tasks()}
        if manifest is not None:
            if manifest.nonfinite_at or not manifest.nonfinite:  # a manifest written before nonfinite_at
                # samples lost unflushed (or cut back, see _cut_back_to_own_samples) are not counted
                at = self.details_logger.nonfinite_at = nonfinite.below(manifest.nonfinite_at, counts)
                _add_counts(self.details_logger.nonfinite, nonfinite.totals(at))
            else:
                cut_back = manifest.premerge and manifest.date_id is None
                counted = manifest.premerge["nonfinite"] if cut_back else manifest.nonfinite
                _add_counts(self.details_logger.nonfinite, counted)
        # the same spool, the same positions: those of samples lost unflushed are dropped
        nones = self.details_logger.none_metrics = none_metrics.below(
            manifest.none_metrics if manifest is not None else {}, counts
        )
        seen: dict[str, int] = defaultdict(int)
        for batch in spool.flushed_batches(spool.flush_every):
            for task, record in zip(batch.task_names, batch.records(), strict=True):
                self.details_logger.replay(task, record)
                names = none_metrics.names_at(nones, task, seen[task])
                seen[task] += 1
                self.metrics_logger.log(task, _spooled_metrics(record, names))
            self._replay.append(batch)
        self.recovery = {
            "resumed_run_id": self.run_id,
            "samples_recovered": len(spool),
            "corrupt_lines_skipped": spool.corrupt_lines,
            "manifest_found": manifest is not None,
        }

    def _keep_unsaved_samples(self) -> None:
        """At exit, a run that never started: its buffered samples go to the spool, with a failed
        manifest, for ``evalsink recover``.

        No sink is called: at exit their libraries may have shut down already (wandb's own exit
        hooks run first), and a remote run would be opened only to be marked failed. A resumed run
        with nothing new logged is left as it was found.
        """
        if self.details_logger.spool.flush() is not None:
            self._write_manifest(RunState.FAILED, always=True)
            if termination.received():  # stopped before its first batch: say where the samples are
                self._say_where_the_stopped_run_is()
        elif not self.process.is_main and self.recovery is None and not len(self.details_logger.spool):
            self._tell_rank_0()

    def _tell_rank_0(self) -> None:
        """At exit, a rank > 0 that logged nothing: an empty shard for rank 0 to merge, or, when the
        program died of an exception or was stopped by SIGTERM, a failed one that ends rank 0's
        wait at once (an empty shard would let rank 0 save a run without this rank's samples).

        lighteval gathers every rank's responses on rank 0, which alone logs and saves them; the
        other ranks build a tracker and never use it. Without this, rank 0's save() waited
        ``merge_timeout`` for them, then failed.
        """
        crashed = getattr(sys, "last_value", None) is not None  # set for an uncaught exception
        crashed = crashed or termination.received()  # SystemExit: sys.last_value stays unset
        self._manifest.samples = 0
        self._write_manifest(RunState.FAILED if crashed else RunState.SHARD_DONE, always=True)

    def _write_manifest(self, state: RunState | None = None, *, always: bool = False) -> None:
        """Rewrite the run's manifest when what it records changed (atomic; see evalsink.manifest)."""
        manifest = self._manifest
        if state is not None:
            manifest.state = state
        manifest.config_general = self.general_config_logger.to_dict()
        manifest.versions = jsonsafe.to_jsonable(self.versions_logger.versions)
        manifest.config_tasks = self.task_config_logger.to_dict()
        manifest.nonfinite = dict(self.details_logger.nonfinite)
        manifest.none_metrics = self.details_logger.none_metrics
        manifest.nonfinite_at = self.details_logger.nonfinite_at
        if self.run.date_id is not None:  # a resumed run keeps the date id its first save chose
            manifest.date_id = self.run.date_id
        snapshot = manifest.to_json(updated_at=0.0)
        if always or snapshot != self._manifest_bytes:
            write_manifest(manifest_path(self.details_logger.spool.path), manifest)
            self._manifest_bytes = snapshot

    def _spool_path(self) -> Path:
        # one spool file per tracker: trackers sharing a run id (ranks, re-runs) never collide
        rank = f"rank{self.process.rank}-" if self.process.world_size > 1 else ""
        return self._run_folder() / f"details-{rank}{uuid.uuid4().hex[:8]}.jsonl"

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> None:
        """Start the run now (sinks open their remote runs); otherwise it starts on first use."""
        if self._finished:
            raise EvalsinkError(f"run {self.run_id!r} has already finished")
        if not self._started:
            self._started = True
            _OPEN.add(self)
            self._manager.run_started(self.run)
            replay, self._replay = self._replay, []
            for batch in replay:  # a resumed run: what the crashed process had flushed
                self._manager.details_batch(self.run, batch)

    def _deliver(self, batch: DetailsBatch) -> None:
        self.start()  # the manifest that makes the batch recoverable was written before it
        self._manager.details_batch(self.run, batch)

    def save(self) -> SaveReport:
        """Flush, aggregate what was not aggregated, hand the results to every sink, report.

        Outside a ``with`` block this also finishes the run (lighteval's ``save()`` is its last
        call) and, when every sink succeeded, drops the spool. Raises
        :class:`~evalsink.errors.SinkFailedError` if a ``required`` sink failed.

        With several ranks, a rank other than 0 only marks its details done, and rank 0 merges
        every rank's details first (waiting up to ``merge_timeout`` seconds for them).
        """
        if not self.process.is_main:
            return self._save_shard()
        return self._save(None, None)

    def publish(self, results: EvaluationResults, date_id: str) -> SaveReport:
        """Hand results aggregated earlier (a saved run) to the sinks, as ``save()`` would.

        For re-publishing a run from disk (``evalsink push``): the loggers' metrics are not
        aggregated, the details logged into this tracker are delivered as usual, and the run keeps
        its original ``date_id`` so sinks name files as the first save did.
        """
        return self._save(results, checked_date_id(date_id))  # refused before the run starts

    def _save(self, given: EvaluationResults | None, date_id: str | None) -> SaveReport:
        if self._report is not None:
            raise EvalsinkError(f"run {self.run_id!r} was already saved; a tracker saves one run")
        self.start()
        error: BaseException | None = None
        try:
            self.details_logger.flush()
            if given is None and self.process.world_size > 1:
                self._merge_shards()
            if given is None:
                self.metrics_logger.refresh(self.task_config_logger.aggregating_tasks)
                self.details_logger.aggregate()
                if self.general_config_logger.end_time is None:
                    self.general_config_logger.log_end_time()
            # a resumed run (or a second try) keeps the date id its manifest recorded: its results
            # file may be published under it already, and a new one would make it two runs
            self.run.date_id = checked_date_id(date_id or self._manifest.date_id or new_date_id())
            if self.details_logger.spool.path.exists():
                # the date id on disk before any sink writes under it: a kill between the results
                # file and the details is then recovered under that date id (evalsink.recovery)
                self._write_manifest()
            results = self._results_model() if given is None else given
            self._manager.results_saved(self.run, results)  # the last sink gets the model itself
            self._report = self._make_report()
            self._refuse_logging(f"run {self.run_id!r} was saved")
            # inside the try: run_finished then gets the error that fails save(), not None
            self._manager.raise_required()
        except BaseException as exc:
            error = exc
            self._save_failed = True
            raise
        finally:
            if not self._in_context:
                self.close(error)
        self._manager.raise_required()  # a required sink that failed in run_finished, just above
        return self._report

    def _save_shard(self) -> SaveReport:
        """A rank other than 0: flush, mark this rank's details done for rank 0 to merge."""
        if self._report is not None:
            raise EvalsinkError(f"run {self.run_id!r} was already saved; a tracker saves one run")
        self.start()
        self.details_logger.flush()
        self._report = SaveReport(run_id=self.run_id, date_id=None, sinks=self._manager.outcomes)
        self._refuse_logging(f"rank {self.process.rank} of run {self.run_id!r} handed its details to rank 0")
        self._mark_shard_done()
        if not self._in_context:
            self.close()
        return self._report

    def _mark_shard_done(self) -> None:
        """Tell rank 0 this rank's details are complete, at ``save()`` as documented.

        Not at ``close()``: inside a ``with`` block, code after ``save()`` (a barrier waiting for
        rank 0, the next step of the script) would make rank 0 wait out ``merge_timeout``. Once
        marked, rank 0 may merge and delete the shard at any moment: it is never rewritten here.
        """
        spool = self.details_logger.spool
        spool.close()
        self._manifest.samples = len(spool)
        self._write_manifest(RunState.SHARD_DONE, always=True)
        self._shard_marked = True

    def _merge_shards(self) -> None:
        """Take every other rank's samples into this run, as if they had been logged here.

        Only the shards of this evaluation (see :class:`evalsink.shards.Evaluation`): the run folder
        may also hold an earlier launch's, or those of the next model of a loop.
        """
        evaluation = Evaluation(
            launch=self._manifest.launch,
            sequence=self._sequence,
            model=self.general_config_logger.model_name,
            output=None if self.output.is_local else self.settings.output_dir,
        )
        shards = wait_for_shards(self._run_folder(), self.process.world_size, self.merge_timeout, evaluation)
        self._before_merging()
        for manifest in shards:
            self._merge_spool(manifest, whole=True)
        self.details_logger.flush()

    def _before_merging(self, *, partial: bool = False) -> None:
        """Record where this rank's own samples end in its spool, before the others' are appended.

        A kill in the middle of the merge left part of a shard in this spool, and ``evalsink
        recover`` merged that shard again: its samples came out twice. The recovery now cuts the
        spool back to this point first (see :meth:`_reopen_spool`).
        """
        self.details_logger.flush()
        spool = self.details_logger.spool
        if not spool.path.exists():  # no sample of its own (lighteval's rank 0 may log none)
            # an empty spool, not just a manifest: a recovery saw "rank 0 left no spool", called
            # the run partial and left this manifest behind
            spool.path.parent.mkdir(parents=True, exist_ok=True)
            spool.path.touch()
        own = {
            "bytes": spool.flushed_bytes,
            "nonfinite": dict(self.details_logger.nonfinite),
            "partial": partial,
        }
        self._manifest.premerge = own
        self._write_manifest(always=True)

    def merge_rank_spools(self, manifests: Sequence[RunManifest], *, partial: bool) -> None:
        """Take other ranks' spools into this resumed run (``evalsink recover`` of a run whose rank
        0 stopped before merging them): whatever each holds, finished shard or not. Like merged
        shards, they are deleted once the run is saved.

        ``partial``: whether the run lacks samples. It goes with the record of where this spool's
        own samples end: a recovery stopped in the middle of the merge leaves that record, and the
        next recovery would otherwise take it for rank 0's own, which only a finished evaluation
        writes."""
        self._before_merging(partial=partial)
        for manifest in manifests:
            self._merge_spool(manifest, whole=manifest.state is RunState.SHARD_DONE)
        self.details_logger.flush()

    def drop_after_save(self, spools: Sequence[Path]) -> None:
        """Spools (with their manifests) to delete with this run's own once it is saved: other
        ranks' that this run's spool already holds, merged by an earlier ``save()``."""
        for spool in spools:
            self._merged += [spool, manifest_path(spool)]

    def _merge_spool(self, manifest: RunManifest, *, whole: bool) -> None:
        """One other rank's samples, as if logged here; ``whole``: its manifest's sample count is
        final (a finished shard), and a spool holding another count is an error."""
        spool_path = self._run_folder() / manifest.spool
        merged = 0
        if spool_path.exists():
            shard = DetailSpool.reopen(spool_path, fsync=False)
            seen: dict[str, int] = defaultdict(int)
            for batch in shard.flushed_batches(1000):
                for task, line, record in zip(batch.task_names, batch.lines(), batch.records(), strict=True):
                    names = none_metrics.names_at(manifest.none_metrics, task, seen[task])
                    bad = nonfinite.count_at(manifest.nonfinite_at, task, seen[task])
                    seen[task] += 1
                    self.details_logger.merge(task, line, record, names, bad)
                    self.metrics_logger.log(task, _spooled_metrics(record, names))
                    merged += 1
            shard.close()
        if whole and merged != manifest.samples:
            raise EvalsinkError(
                f"rank {manifest.rank}'s spool {spool_path} holds {merged} samples, "
                f"its manifest says {manifest.samples}"
            )
        if not manifest.nonfinite_at:  # a manifest written before nonfinite_at: its counts as they are
            _add_counts(self.details_logger.nonfinite, manifest.nonfinite)
        for task, version in manifest.versions.items():
            self.versions_logger.versions.setdefault(task, version)
        for task, config in manifest.config_tasks.items():
            self.task_config_logger.tasks_configs.setdefault(task, config)
        self._merged += [spool_path, manifest_path(spool_path)]

    def _required_failed(self) -> bool:
        return any(o.required and not o.ok for o in self._manager.outcomes.values())

    def _finish(self, status: RunStatus, error: BaseException | None) -> None:
        if self._finished:
            return
        self._refuse_logging(f"run {self.run_id!r} has finished ({status.value})")
        if not self._started and error is None and not len(self.details_logger.spool):
            # closed before anything happened (a tracker built and dropped): no run to open and
            # finish — a remote sink would otherwise create an empty run just to close it
            self._finished = True
            return
        if not self._started:
            self.start()
        try:
            self.details_logger.flush()
        finally:
            self._finished = True
            self._manager.run_finished(self.run, status, error)

    def _refuse_logging(self, why: str) -> None:
        """Samples and metrics logged after this would reach no file and no sink: say so at once
        (they used to vanish, or fail later at a flush with a confusing spool error)."""
        if self.details_logger.closed is None:
            message = (
                f"{why}: what is logged now would be written nowhere "
                "(a new EvaluationTracker starts another run)"
            )
            self.details_logger.closed = self.metrics_logger.closed = message

    def close(self, error: BaseException | None = None) -> None:
        """Finish the run if needed; drop the spool once the run was saved and every sink succeeded.

        The spool is kept otherwise: it is what a failed push or a crashed run is recovered from.
        """
        failed = error is not None or self._required_failed()
        try:
            self._finish(RunStatus.FAILED if failed else RunStatus.OK, error)
        finally:  # SIGTERM or Ctrl-C in a sink's run_finished: the run is still put in order
            self._settle()

    def _settle(self) -> None:
        """After run_finished: drop what a fully saved run no longer needs, or record in the
        manifest what ``evalsink recover`` and ``evalsink push`` start from."""
        saved = self._report is not None and self._report.ok and not self._required_failed()
        if not self.process.is_main:  # rank 0 reads this spool: it is never removed here
            self.details_logger.spool.close()
            if not self._shard_marked:  # never saved: rank 0 stops waiting for it
                self._manifest.samples = len(self.details_logger.spool)
                self._write_manifest(RunState.FAILED, always=True)
        elif saved:  # even when the with block raised afterwards: nothing is left to recover
            spool = self.details_logger.spool
            own = {*self._merged, manifest_path(spool.path)}
            stale = superseded(self._run_folder(), self._manifest.launch, self._manifest.sequence, own)
            if stale:
                logger.info("run %r: removing what an earlier attempt left: %s", self.run_id, stale)
            for path in [*self._merged, *stale, manifest_path(spool.path)]:
                path.unlink(missing_ok=True)
            runs = self._run_folder().parent
            # and evalsink's own folders, when nothing else is left in them
            folders = [runs, runs.parent] if self.output.is_local else []
            if "local" in self._manager.sinks and not self.settings.save_details:
                self._keep_spool_readable(folders)
            else:
                if "local" in self._manager.sinks:  # else `details` says to read where the sinks wrote
                    self.details_logger.read_saved = self._saved_details
                _remove_spool(spool, folders)
        else:
            self.details_logger.spool.close()
            if self.details_logger.spool.path.exists():
                # saved means the local files exist (a re-push reads them); otherwise recover
                local = self._manager.outcomes.get("local")
                written = self._report is not None and (local is None or local.ok)
                self._write_manifest(RunState.SAVED if written else RunState.FAILED)
        self._closed = True
        _OPEN.discard(self)
        _OTHER_RANKS.discard(self)
        termination.release(self)
        # a saved run has nothing to recover (without details files, its spool was moved out of
        # the run folder to stay readable: it is not "kept for evalsink recover")
        if termination.received() and not saved and self.details_logger.spool.path.exists():
            self._say_where_the_stopped_run_is()

    def _say_where_the_stopped_run_is(self) -> None:
        if self._manifest.state is RunState.SAVED and self._report is not None:
            failed = ",".join(self._report.failed)
            logger.warning(
                "run %r was stopped by SIGTERM after its local files were written; sink(s) %s did "
                "not finish: `evalsink push %s --to %s --date %s` sends the saved run to them again",
                self.run_id,
                failed,
                self.settings.output_dir,
                failed,
                self.run.date_id,
            )
            return
        logger.warning(
            "run %r was stopped by SIGTERM and finished as failed; its %d logged sample(s) are "
            "kept for `evalsink recover %s --run-id %s`",
            self.run_id,
            len(self.details_logger.spool),
            self.settings.output_dir,
            self.run_id,
        )

    def _keep_spool_readable(self, folders: list[Path]) -> None:
        """No details file was written (save_details=False, lighteval's CLI default), yet
        lighteval's pipeline hands ``details`` to its caller after save(): the spool stays readable
        until nothing can read it (the logger is collected, or the process exits).

        The run itself is done and cleaned up as any saved run: the spool is moved out of the
        run's folder first, so neither `evalsink recover`, nor a later run of the same run id
        (ranks merging shards, ``resume=True``) ever sees it again.
        """
        spool = self.details_logger.spool
        spool.close()
        spool.before_write = None  # the finalizer below holds the spool: it must not hold the tracker
        old = spool.path
        spool.path = old.parent.parent / f"saved-details-{self.run_id}-{old.name.removeprefix('details-')}"
        os.replace(old, spool.path)
        _remove_empty([old.parent, *folders])
        weakref.finalize(self.details_logger, _remove_spool, spool, folders, os.getpid())

    def __enter__(self) -> EvaluationTracker:
        self._in_context = True
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._in_context = False
        if exc is None and self._report is None and not self._save_failed:  # a failed save() raised
            self._warn_not_saved()
        self.close(exc)
        if exc is None:
            self._manager.raise_required()  # e.g. a required sink that failed in run_finished

    def _warn_not_saved(self) -> None:
        """lighteval's tracker has no ``with`` block: someone moving to one may expect it to save."""
        samples = len(self.details_logger.spool)
        if not self.process.is_main or not (samples or self.metrics_logger.metrics_values):
            return
        logger.warning(
            "run %r: the with block ended without save(), so no results or details were written; "
            "its %d logged sample(s) are kept for `evalsink recover %s --run-id %s`",
            self.run_id,
            samples,
            self.settings.output_dir,
            self.run_id,
        )

    # -- results --------------------------------------------------------------------------
    def _results_dict(self) -> dict[str, Any]:
        details = self.details_logger
        return {
            "config_general": self.general_config_logger.to_dict(),
            "results": self.metrics_logger.metric_aggregated,
            "versions": self.versions_logger.versions,
            "config_tasks": self.task_config_logger.to_dict(),
            "summary_tasks": {name: dataclasses.asdict(d) for name, d in details.compiled_details.items()},
            "summary_general": dataclasses.asdict(details.compiled_details_over_all_tasks),
            **({"evalsink_recovery": self.recovery} if self.recovery is not None else {}),
        }

    def _results_model(self) -> EvaluationResults:
        from evalsink.models import EvaluationResults

        return EvaluationResults.model_validate(jsonsafe.to_jsonable(self._results_dict()))

    def _make_report(self) -> SaveReport:
        report = SaveReport(run_id=self.run_id, date_id=self.run.date_id, sinks=self._manager.outcomes)
        for task, metrics in self.metrics_logger.metric_aggregated.items():
            for metric, value in metrics.items():
                if isinstance(value, float) and not math.isfinite(value):
                    report.warnings.append(f"results[{task!r}][{metric!r}] is {value}; written as null")
        for task, count in self.details_logger.nonfinite.items():
            report.warnings.append(f"details of {task!r}: {count} NaN/inf value(s) written as null")
        for section, count in self._config_nonfinite().items():
            report.warnings.append(f"{section}: {count} NaN/inf value(s) written as null")
        for task, failures in self.metrics_logger.failed_aggregations.items():
            for metric, why in failures.items():
                report.warnings.append(
                    f"results[{task!r}][{metric!r}]: the task's aggregation failed ({why})"
                )
        for task, skipped in self.metrics_logger.skipped.items():
            for metric, count in skipped.items():
                report.warnings.append(
                    f"results[{task!r}][{metric!r}]: {count} value(s) that are not single numbers left out "
                    "of the mean"
                )
        for task, why in self.metrics_logger.mean_instead.items():
            report.warnings.append(f"results[{task!r}]: {why}")
        for task, names in self.metrics_logger.stderr_not_written.items():
            report.warnings.append(f"results[{task!r}]: {stderr_collision(names)}")
        for name, outcome in report.sinks.items():
            report.warnings.extend(f"{name}: {message}" for message in outcome.warnings)
        return report

    def _config_nonfinite(self) -> dict[str, int]:
        """NaN/inf in what was logged as configuration (a ``temperature=nan``, a task config's
        weight): written as null like any other, so reported like the others (they were not)."""
        general = self.general_config_logger
        sections = {
            "config_general": [general.model_config, general.generation_parameters, general.max_samples],
            "versions": self.versions_logger.versions,
            "config_tasks": self.task_config_logger.tasks_configs,
        }
        counts = {name: jsonsafe.count_nonfinite(value) for name, value in sections.items()}
        return {name: count for name, count in counts.items() if count}

    @property
    def results(self) -> dict[str, Any]:
        """The results dict as lighteval's ``results`` property returns it (JSON-ready)."""
        data: dict[str, Any] = jsonsafe.to_jsonable(self._results_dict())
        return data

    @property
    def details(self) -> Mapping[str, list[dict[str, Any]]]:
        """Task name -> list of {doc, model_response, metric}, read back from the spool.

        Once a saved run is closed its spool is gone: read the saved files with
        :meth:`load_details_datasets` instead.
        """
        if (
            self._closed
            and not self.details_logger.spool.path.exists()
            and self.details_logger.read_saved is None
        ):
            raise EvalsinkError(
                "the details spool was removed when the run closed, and the local sink did not save "
                "this run: read the details where its sinks wrote them"
            )
        return self.details_logger.details

    def _saved_details(self, task_name: str) -> list[dict[str, Any]]:
        """A task's details as the local sink saved them (JSON-text fields decoded): what
        :attr:`details` reads once a saved run has removed its spool."""
        from evalsink.paths import task_file_part
        from evalsink_local.reader import iter_details, saved_tasks

        _, files = saved_tasks(
            self.output,
            self.general_config_logger.model_name,
            self.run.date_id or "last",
            results_path_template=self.settings.results_path_template,
            details_path_template=self._details_path_template(),
        )
        path = files.get(task_file_part(task_name))
        if path is None:
            raise EvalsinkError(f"the saved details of {task_name!r} are not in {self.settings.output_dir}")
        return list(iter_details(self.output, path))

    @property
    def report(self) -> SaveReport | None:
        """The report of the last ``save()``."""
        return self._report

    @property
    def sink_outcomes(self) -> Mapping[str, SinkOutcome]:
        """How each sink fared so far, also for a run that failed or was never saved.

        ``report`` exists only after ``save()``; a sink that failed while a failed run was being
        finished is visible here.
        """
        return dict(self._manager.outcomes)

    def sink(self, name: str) -> Any:
        """The instance of an enabled sink (e.g. to reach the backend run it opened)."""
        try:
            return self._manager.sinks[name]
        except KeyError:
            raise KeyError(f"sink {name!r} is not enabled (enabled: {', '.join(self.sink_names)})") from None

    def generate_final_dict(self) -> dict[str, Any]:
        """The results dict with '|' shown as ':' in task names, as lighteval's.

        Metric values are the aggregated floats, NaN and inf included, as lighteval returns them:
        its pipeline prints this dict with a ``%.4f`` table, which a ``None`` (what the JSON-ready
        :attr:`results` holds for NaN) makes raise.
        """
        final = self.results
        final["results"] = {
            task: dict(metrics) for task, metrics in self.metrics_logger.metric_aggregated.items()
        }
        return {
            section: (
                {str(k).replace("|", ":"): v for k, v in value.items()} if isinstance(value, dict) else value
            )
            for section, value in final.items()
        }

    def preview_outputs(self, samples: int = 1) -> None:
        """Print the first samples of each task: query, gold, prediction and metrics."""
        spool = self.details_logger.spool
        for task_name in spool.tasks():
            print(f"=== {task_name} ===")
            if spool.path.exists() or not self._closed:  # lazily: the first samples only
                records: Iterable[Mapping[str, Any]] = itertools.islice(
                    spool.iter_records(task_name), samples
                )
            else:  # a saved run's spool is gone: its saved files
                records = self.details[task_name][:samples]
            for record in records:
                # any JSON value is kept as a doc or a response; only objects have these fields
                doc, response = record.get("doc"), record.get("model_response")
                doc = doc if isinstance(doc, Mapping) else {"query": doc if doc is not None else ""}
                response = response if isinstance(response, Mapping) else {"text": response or ""}
                print(f"query: {str(doc.get('query', ''))[:500]}")
                if doc.get("choices") is not None:
                    print(f"gold: {doc.get('gold_index')!r} of {doc.get('choices')!r}"[:500])
                print(f"prediction: {str(response.get('text', ''))[:500]}")
                print(f"metrics: {record.get('metric')}")

    def load_details_datasets(self, date_id: str, task_names: Sequence[str]) -> dict[str, Any]:
        """Load saved details parquet files as ``datasets.Dataset`` (``date_id`` may be first/last).

        A requested name matches a saved task exactly or without its ``|<fewshot>`` suffix.
        """
        from evalsink_local.reader import load_details_datasets

        return load_details_datasets(
            self.output,
            self.general_config_logger.model_name,
            date_id,
            list(task_names),
            results_path_template=self.settings.results_path_template,
            details_path_template=self._details_path_template(),
        )

    def _details_path_template(self) -> str | None:
        """The local sink's ``details_path_template`` option, where the saved details are."""
        local = self._manager.sinks.get("local")
        return getattr(getattr(local, "config", None), "details_path_template", None)

    # -- lighteval's Hub methods: the hub sink's distribution (evalsink-hub) does the work ----
    def push_results_to_hub(self, repo_id: str, path_in_repo: str, private: bool | None = None) -> str | None:
        """Upload this run's results JSON as ``path_in_repo`` of dataset ``repo_id``, in one commit.

        The repository is created if missing (private unless ``private=False`` or the tracker's
        ``public``). Returns the commit URL; None on processes other than the main one.
        """
        try:
            from evalsink_hub.tracker_methods import push_results_to_hub
        except ModuleNotFoundError as error:
            _hub_missing(error, "push_results_to_hub")
            raise
        return push_results_to_hub(self, repo_id, path_in_repo, private, sink=self._manager.sinks.get("hub"))

    def push_details_to_hub(
        self, repo_id: str, details_folder_path: str | os.PathLike[str], private: bool | None = None
    ) -> str | None:
        """Upload a saved details folder (``details/{model}/{date_id}``) to dataset ``repo_id`` as
        ``{date_id}/details_{task}_{date_id}.parquet``, with a regenerated card, in one commit.

        Returns the commit URL; None on processes other than the main one.
        """
        try:
            from evalsink_hub.tracker_methods import push_details_to_hub
        except ModuleNotFoundError as error:
            _hub_missing(error, "push_details_to_hub")
            raise
        return push_details_to_hub(
            self, repo_id, details_folder_path, private, sink=self._manager.sinks.get("hub")
        )

    def recreate_metadata_card(self, repo_id: str) -> str | None:
        """Regenerate the README.md (configs, latest results) of details repository ``repo_id``.

        Returns the commit URL; None on processes other than the main one.
        """
        try:
            from evalsink_hub.tracker_methods import recreate_metadata_card
        except ModuleNotFoundError as error:
            _hub_missing(error, "recreate_metadata_card")
            raise
        return recreate_metadata_card(self, repo_id, sink=self._manager.sinks.get("hub"))


def _check_merge_timeout(value: Any) -> float:
    """Refused at construction: a bad value only showed at rank 0's save(), after the evaluation."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise ValueError(
            f"merge_timeout must be a number of seconds, 0 or more (inf: wait forever); got {value!r}"
        )
    return float(value)


def _check_sink_config(sink_config: Any) -> None:
    """Name what is wrong with ``sink_config`` (it raised AttributeError or TypeError deep inside)."""
    if sink_config is None:
        return
    if not isinstance(sink_config, Mapping):
        raise SinkConfigError(
            "sink_config must map sink names to their options ({'local': {...}}), "
            f"not a {type(sink_config).__name__}"
        )
    odd_keys = [key for key in sink_config if not isinstance(key, str)]
    if odd_keys:
        raise SinkConfigError(
            f"sink_config keys are sink names (strings), not {', '.join(map(repr, odd_keys))}"
        )


def _add_counts(counts: dict[str, int], more: Mapping[str, Any]) -> None:
    for task, count in more.items():
        if isinstance(count, int) and count > 0:
            counts[task] += count


def _spooled_metrics(record: Mapping[str, Any], nones: set[str]) -> dict[str, Any]:
    """A sample's ``metric`` values as they were logged, read back from a spool (another rank's,
    or a resumed run's).

    JSON has no NaN or inf: the spool holds them, and None, as null. ``nones`` (from the spool's
    manifest, :mod:`evalsink.none_metrics`) says which were None, left out of the mean as in one
    process; every other null becomes NaN again, and the mean is NaN as in one process.
    """
    metrics = record.get("metric")
    if not isinstance(metrics, Mapping):
        return {}
    spooled = dict(metrics)
    for name, value in metrics.items():
        if value is None and name not in nones:
            spooled[name] = math.nan
    return spooled


def _hub_missing(error: ModuleNotFoundError, method: str) -> None:
    """Raise SinkNotInstalledError (with the install command) when evalsink-hub is what is missing."""
    if (error.name or "").split(".")[0] == "evalsink_hub":
        from evalsink.discovery import install_hint
        from evalsink.errors import SinkNotInstalledError

        raise SinkNotInstalledError(f"{method} needs the hub sink: {install_hint('hub')}") from error


RESUME_SPOOL: contextvars.ContextVar[Path | None] = contextvars.ContextVar("resume_spool", default=None)
"""The spool a ``resume=True`` tracker reopens when its run folder holds several: set by
`evalsink recover` for a run of several ranks, which resumes rank 0's and merges the others'."""

_OPEN: set[EvaluationTracker] = set()
_OTHER_RANKS: set[EvaluationTracker] = set()
"""The trackers of a rank > 0 not yet closed, held to the exit (see ``_tell_rank_0``)."""
_BUILT: weakref.WeakSet[EvaluationTracker] = weakref.WeakSet()
"""Every tracker: one that never started (fewer samples than a flush, no ``with`` block, a crash
before save()) still has its samples kept at exit; they were lost, unrecorded."""


def _remove_spool(spool: DetailSpool, folders: list[Path], owner: int | None = None) -> None:
    """Delete a saved run's spool (and its folder), then ``folders`` if empty.

    ``owner``: only that process deletes (a forked child inherits the finalizer that calls this)."""
    if owner is not None and os.getpid() != owner:
        return
    spool.remove()
    _remove_empty(folders)


def _cut_back_to_own_samples(spool: Path, manifest: RunManifest) -> None:
    """Rank 0 stopped while it merged the other ranks' shards into its spool (no date id yet: its
    save() had not gone further): the part of a shard it holds goes, and the shards, still on
    disk, are merged again whole."""
    own = int(manifest.premerge["bytes"])
    if spool.stat().st_size > own:
        logger.info(
            "run %r: rank 0 stopped while merging the other ranks' samples; its spool %s is cut back "
            "to its own samples (%d bytes) before they are merged again",
            manifest.run_id,
            spool,
            own,
        )
        with open(spool, "r+b") as handle:
            handle.truncate(own)
            os.fsync(handle.fileno())


def _remove_empty(folders: list[Path]) -> None:
    for folder in folders:
        with contextlib.suppress(OSError):  # not empty: another spool or run still lives there
            folder.rmdir()


@atexit.register
def _close_open_runs() -> None:
    """A run started and never saved (the program crashed or forgot save()) still gets run_finished;
    the samples of one that never started are kept (see :meth:`EvaluationTracker._keep_unsaved_samples`).

    Closing one run can fail (its last flush on a full disk): that is logged, with where the run's
    flushed samples wait, and the other runs are closed all the same — at exit there is no caller
    left to raise to, and Python would stop at the first error. Only this process's trackers are
    touched: a forked child inherits its parent's, whose runs are the parent's to finish.
    """
    here = os.getpid()
    for tracker in [t for t in list(_OPEN) if t._pid == here]:
        try:
            if not tracker._finished:
                tracker.close(EvalsinkError(_exit_reason()))
            else:
                tracker.close()
        except termination.Terminated:
            # SIGTERM while a sink finished its run: every sink was still told and the manifest
            # written, and close() said where the samples are (the exit status stays the program's:
            # only os._exit could change it now, and that would skip the other exit handlers)
            continue
        except Exception as exc:
            _log_exit_failure(tracker, "closing", exc)
    for tracker in {*_BUILT, *_OTHER_RANKS}:
        if tracker._pid == here and not tracker._started and not tracker._finished:
            # once only: a spawned multiprocessing child runs this at its multiprocessing exit,
            # then at its interpreter's (the second time rewrote a shard's manifest that rank 0
            # had merged and deleted in between)
            _BUILT.discard(tracker)
            _OTHER_RANKS.discard(tracker)
            try:
                tracker._keep_unsaved_samples()
            except Exception as exc:
                _log_exit_failure(tracker, "keeping the samples of", exc)


_MULTIPROCESSING_EXIT_IN: set[int] = set()
"""The processes whose ``multiprocessing`` exit runs the exit handler (see below)."""


def _close_at_multiprocessing_exit() -> None:
    """In a ``multiprocessing`` child, run the exit handler when the child ends, too.

    A forked child ends with ``os._exit()``, which skips ``atexit``: a tracker built there and
    never saved left its run "running", its last samples unflushed and its sinks never told.
    ``multiprocessing`` runs its own finalizers before that exit; the handler is registered there
    (once per process; it finishes each run once, whichever exit runs it first).
    """
    multiprocessing = sys.modules.get("multiprocessing")  # never imported for this
    if multiprocessing is None or os.getpid() in _MULTIPROCESSING_EXIT_IN:
        return
    if multiprocessing.parent_process() is None:
        return
    from multiprocessing import util

    util.Finalize(None, _close_open_runs, exitpriority=100)
    _MULTIPROCESSING_EXIT_IN.add(os.getpid())


def _exit_reason() -> str:
    if termination.received():
        return "the process received SIGTERM (the job was stopped) before the run was saved"
    return "the process exited before the run was saved"


def _log_exit_failure(tracker: EvaluationTracker, what: str, exc: Exception) -> None:
    logger.error(
        "%s run %r at exit failed (%s: %s); the samples flushed before stay in %s (evalsink recover)",
        what,
        tracker.run_id,
        type(exc).__name__,
        exc,
        tracker.details_logger.spool.path,
        exc_info=exc,
    )
