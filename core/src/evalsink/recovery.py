"""Turning what a killed run left on disk (spool + manifest) into a saved run, marked partial.

A run killed before ``save()`` leaves ``.evalsink/runs/<run_id>/details-<id>.jsonl`` (every sample
flushed before the kill) and its ``.meta.json`` manifest (:mod:`evalsink.manifest`). Recovering
resumes that run in a new tracker — the loggers are rebuilt from the spool — and saves it at
once: the results JSON says ``"evalsink_recovery": {"partial": true, ...}`` and holds the metrics
of the recovered samples, aggregated as means (a task's own ``aggregation()`` needs the task
objects, which only the evaluation has).

An output folder that is not on local disk (``s3://...``) cannot hold a spool that is appended to
and fsynced, so its runs' spools are on local disk, where the tracker puts them:
``$EVALSINK_SPOOL_DIR/evalsink-runs/<run_id>/`` (the system temp folder without the variable),
shared by every such output; each manifest names its run's output. Such a run can also be saved
and still need recovering: when the store failed during ``save()`` the local sink did not write
the run's results file, its commit marker (see :mod:`evalsink_local`). The manifest says
``saved``, but with no results file under the output the run is re-saved from its spool, which
``save()`` had flushed whole: ``"partial": false``.

A run can also stop after publishing its results file and before its details: on local disk the
local sink writes the results first (a details failure must not cost them), so a kill, or a
details file that failed, leaves ``results_<date_id>.json`` without its details. Saving such a run
under a new date id would leave two results files for one run; it is published again under the
date id its manifest records, with the results that file holds (computed by the evaluation from
every sample, with the tasks' own aggregations), and the details from the spool.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from evalsink.errors import EvalsinkError
from evalsink.manifest import RunManifest, RunState, manifest_path, read_manifest
from evalsink.report import SaveReport
from evalsink.storage import OutputDir


@dataclass
class RunOnDisk:
    """A run folder under ``.evalsink/runs``: its spools and what their manifests say."""

    run_id: str
    folder: Path
    spools: list[Path]
    manifests: list[RunManifest | None] = field(default_factory=list)
    unpublished: bool = False
    """Saved, but its results file is not in its (non-local) output: the store failed during save()."""

    @property
    def state(self) -> RunState:
        """RUNNING if any spool's writer may still be at work, else the worst state recorded.

        SAVED needs a manifest that says so: a run whose only spools are other ranks' finished
        shards (rank 0 stopped before its first flush, so it left none) was never saved, and is
        SHARD_DONE — recoverable, not a run to re-push.
        """
        states = [m.state if m is not None else RunState.FAILED for m in self.manifests]
        for state in (RunState.RUNNING, RunState.FAILED, RunState.SAVED, RunState.SHARD_DONE):
            if state in states:
                return state
        return states[0] if states else RunState.FAILED

    @property
    def writer(self) -> RunManifest | None:
        """The manifest of a process that may still be writing the run (running, and alive)."""
        return next(
            (
                m
                for m in self.manifests
                if m is not None and m.state is RunState.RUNNING and m.process_alive()
            ),
            None,
        )

    @property
    def alive(self) -> bool:
        return self.writer is not None

    @property
    def recoverable(self) -> bool:
        """Whether :func:`recover_run` can save it: see :func:`why_not_recoverable`."""
        return why_not_recoverable(self) is None


def why_not_recoverable(run: RunOnDisk) -> str | None:
    """Why :func:`recover_run` would refuse ``run``, in words that say what to do; None if it would not.

    One place for the rule, so that ``--list``, :func:`recover_all` and :func:`recover_run` agree:
    ``--list`` used to call a run of several spools recoverable, which the recovery then refused.
    """
    writer = run.writer
    if writer is not None:
        return f"run {run.run_id!r} is still being written by process {writer.pid} on {writer.host}"
    if run.state is RunState.SAVED and not run.unpublished:
        return (
            f"run {run.run_id!r} was saved (a sink failed after the local files were written): "
            "re-push it with `evalsink push` instead of recovering it"
        )
    if len(run.spools) > 1 and ranks_of_one_launch(run) is None:
        return _several_spools(run)
    return None


def left_alone(run: RunOnDisk) -> bool:
    """Still being written, or saved: a run that recovering everything skips, losing nothing.

    Any other run a recovery cannot save is a failure to report: its samples are only on disk.
    """
    return run.alive or (run.state is RunState.SAVED and not run.unpublished)


def _several_spools(run: RunOnDisk) -> str:
    """What to do with a run of several spools that are not the ranks of one launch (two attempts
    sharing a run id, say), which a recovery cannot merge: the safe advice recovers one, never a
    concatenation that could repeat samples."""
    names = ", ".join(path.name for path in run.spools)
    return (
        f"run {run.run_id!r} has {len(run.spools)} spools in {run.folder} ({names}), written by "
        "several trackers that are not the ranks of one launch (runs sharing its id, or spools "
        "without a manifest); `evalsink recover` cannot merge them, so all are left in place. To "
        "save the samples of one of them, move the others and their .meta.json files out of that "
        "folder, then recover the run again; or evaluate again"
    )


@dataclass
class RankSpools:
    """The spools of one launch of several ranks: the lowest rank's (rank 0's, unless it stopped
    before its first flush), which a recovery resumes, and the others', merged into it unless
    rank 0's save() had merged them already."""

    base: Path
    others: list[RunManifest]
    merged: bool
    """Rank 0's save() had begun (its manifest has a date id): it had merged every other rank."""


def ranks_of_one_launch(run: RunOnDisk) -> RankSpools | None:
    """The run's spools as the ranks of one launch, or None when they are not: every spool has a
    manifest, and they are distinct ranks of the same launch and evaluation (world size,
    launcher identity, sequence).

    A one-process run with a date id is not enough: two attempts sharing a run id each leave a
    spool with their own samples, and neither holds the other's.
    """
    if any(m is None for m in run.manifests):
        return None
    ranked = sorted(
        ((m.rank, spool, m) for spool, m in zip(run.spools, run.manifests, strict=True) if m is not None),
        key=lambda item: item[0],
    )
    _, base, first = ranked[0]
    one_launch = len({rank for rank, _, _ in ranked}) == len(ranked) and all(
        m.world_size > 1
        and 0 <= rank < m.world_size
        and (m.world_size, m.launch, m.sequence) == (first.world_size, first.launch, first.sequence)
        for rank, _, m in ranked
    )
    if not one_launch:
        return None
    merged = first.rank == 0 and first.date_id is not None
    return RankSpools(base, [m for _, _, m in ranked[1:]], merged=merged)


def missing_run_error(output_dir: str | Path, run_ids: Sequence[str]) -> EvalsinkError:
    """The error for run ids with no spool left for ``output_dir``, from recover_run and the CLI alike.

    For an output that is not a local folder the usual cause is the spool folder, not the run:
    the error says where runs are looked for and how to point there.
    """
    names = ", ".join(map(repr, run_ids))
    where = runs_folder(output_dir)
    if not OutputDir(output_dir).is_local:
        return EvalsinkError(
            f"no run {names} of {output_dir} to recover in {where} (runs of an output that is "
            "not a local folder are looked for in $EVALSINK_SPOOL_DIR/evalsink-runs, else in the "
            "temp folder: set EVALSINK_SPOOL_DIR as the run had it; a run leaves that folder once "
            "saved or recovered)"
        )
    return EvalsinkError(
        f"no run {names} to recover in {where}; a run leaves that folder once saved or "
        f"recovered: `evalsink show {output_dir}` lists saved runs"
    )


def spool_root() -> Path:
    """The folder of the runs whose output is not a local folder (the tracker's rule, see module doc)."""
    return Path(os.environ.get("EVALSINK_SPOOL_DIR") or tempfile.gettempdir()) / "evalsink-runs"


def runs_folder(output_dir: str | Path) -> Path:
    """Where the runs of ``output_dir`` keep their spools: in it, or under :func:`spool_root`."""
    output = OutputDir(output_dir)
    if output.is_local:
        return Path(output.root) / ".evalsink" / "runs"
    return spool_root()


def find_runs(output_dir: str | Path) -> list[RunOnDisk]:
    """Every run with a spool left for ``output_dir``, oldest first.

    For a non-local output this asks the store whether each saved run's results file is there
    (:attr:`RunOnDisk.unpublished`); a store that cannot be reached is an error.
    """
    output = OutputDir(output_dir)
    root = runs_folder(output_dir)
    if not root.is_dir():
        return []
    runs = []
    for folder in sorted(root.iterdir(), key=lambda path: path.stat().st_mtime):
        spools = sorted(folder.glob("details-*.jsonl"))
        if not (folder.is_dir() and spools):
            continue
        manifests = [read_manifest(manifest_path(spool)) for spool in spools]
        run = RunOnDisk(folder.name, folder, spools, manifests)
        if not output.is_local:
            if not any(_writes_to(manifest, output) for manifest in manifests):
                continue  # the spool folder is shared: a run of another output (or one without manifest)
            run.unpublished = run.state is RunState.SAVED and not run.alive and not _published(output, run)
        runs.append(run)
    return runs


def _writes_to(manifest: RunManifest | None, output: OutputDir) -> bool:
    """Whether the manifest's run was saving to ``output`` (URLs compared as given, without a final '/')."""
    if manifest is None:
        return False
    return str(manifest.settings.get("output_dir", "")).rstrip("/") == output.url.rstrip("/")


def _published(output: OutputDir, run: RunOnDisk) -> bool:
    """Whether a saved run's results file, the local sink's commit marker, is in ``output``.

    A run saved without the local sink never had one there: it counts as published.
    """
    for manifest in run.manifests:
        if manifest is None or "local" not in manifest.sinks:
            continue
        if manifest.date_id is None:
            return False
        folder, results_file = _results_file(output, manifest, manifest.date_id)
        return folder.exists(results_file)
    return True


def _results_file(output: OutputDir, manifest: RunManifest, date_id: str) -> tuple[OutputDir, str]:
    """Where the local sink put the run's results file for ``date_id``: its folder, and its name there."""
    from evalsink_local.layout import layout_for

    layout = layout_for(
        output, manifest.config_general.get("model_name"), manifest.settings.get("results_path_template")
    )
    return layout.results, layout.results_file(date_id)


def recover_run(
    output_dir: str | Path,
    run_id: str,
    *,
    sinks: Sequence[str] = ("local",),
    sink_config: Mapping[str, Any] | None = None,
) -> SaveReport:
    """Save the run ``run_id`` from its spool, marked partial, to ``sinks`` (default: local files).

    A run whose save() began but whose local files were not all written (the local sink failed:
    manifest ``failed`` with a date id), or whose results file never reached its non-local output
    (:attr:`RunOnDisk.unpublished`), is saved again the same way, marked ``"partial": false``: its
    spool holds every sample. If its results file was published (see the module doc), the run is
    published again under that file's date id, with that file's results.
    """
    from evalsink.models import EvaluationResults  # pydantic: imported when a run is recovered
    from evalsink.tracker import RESUME_SPOOL, EvaluationTracker

    _check_sinks(sinks)
    run = next((found for found in find_runs(output_dir) if found.run_id == run_id), None)
    if run is None:
        raise missing_run_error(output_dir, [run_id])
    why_not = why_not_recoverable(run)
    if why_not is not None:
        raise EvalsinkError(why_not)
    ranks = ranks_of_one_launch(run) if len(run.spools) > 1 else None
    manifest = next((m for m in run.manifests if m is not None), None)
    if ranks is not None:  # the lowest rank resumed, the others merged into it
        manifest = run.manifests[run.spools.index(ranks.base)]
    settings = manifest.settings if manifest is not None else {}
    chosen = RESUME_SPOOL.set(ranks.base if ranks is not None else None)
    try:
        tracker = EvaluationTracker(
            output_dir,
            results_path_template=settings.get("results_path_template"),
            save_details=bool(settings.get("save_details", True)),
            sinks=list(sinks),
            sink_config=_as_the_run_had_them(sinks, sink_config, manifest),
            run_id=run_id,
            resume=True,
        )
    finally:
        RESUME_SPOOL.reset(chosen)
    assert tracker.recovery is not None
    # a run whose save() began (its manifest has a date id) had flushed every sample: it is whole
    tracker.recovery["partial"] = not all(m is not None and m.date_id is not None for m in run.manifests)
    if ranks is not None:
        # whole when rank 0's save() had begun, or when it had flushed its own samples to merge
        # finished shards (logging is over by then; a stopped recovery records whether it was)
        whole = ranks.merged or (
            manifest is not None
            and bool(manifest.premerge)
            and not manifest.premerge.get("partial", False)
            and all(other.state is RunState.SHARD_DONE for other in ranks.others)
        )
        if ranks.merged:  # rank 0's spool holds theirs: they are deleted once it is saved
            tracker.drop_after_save([run.folder / other.spool for other in ranks.others])
        else:
            tracker.merge_rank_spools(ranks.others, partial=not whole)
        tracker.recovery["partial"] = not whole
        tracker.recovery["ranks_merged"] = 1 + len(ranks.others)
        tracker.recovery["samples_recovered"] = len(tracker.details_logger.spool)
    published = _published_results(OutputDir(output_dir), manifest)
    if published is None:
        return tracker.save()
    date_id, results = published
    results.setdefault("evalsink_recovery", tracker.recovery)  # one already there says how it was made
    try:
        validated = EvaluationResults.model_validate(results)
    except ValueError as exc:  # pydantic's ValidationError
        raise EvalsinkError(
            f"run {run_id!r}: its published results file (date id {date_id}) does not validate: {exc}"
        ) from exc
    return tracker.publish(validated, date_id)


def _check_sinks(sinks: Sequence[str]) -> None:
    """Refuse a recovery to no sink: it would "succeed" writing nothing, then delete the spool,
    the run's only copy (``evalsink recover --to ''`` did)."""
    if not sinks:
        raise EvalsinkError(
            "no sink to recover to: a recovery removes the run's spool once the run is saved, so "
            "saving it nowhere would lose it; name at least one sink (the default is ['local'])"
        )


def _as_the_run_had_them(
    sinks: Sequence[str], sink_config: Mapping[str, Any] | None, manifest: RunManifest | None
) -> dict[str, Any]:
    """Each sink's config for the recovery: the run's own options (its manifest), under the
    environment's, under what the recovery is given. A run with a ``details_path_template`` or
    ``zstd`` compression was otherwise recovered to the default place and codec.

    The environment is left to :func:`evalsink.config.build_config`, as in any run (JSON for a
    list or a model, errors naming the variable): a stored option it sets is only left out here.
    """
    from evalsink.config import env_values

    given = dict(sink_config or {})
    stored = manifest.sink_options if manifest is not None else {}
    for name in sinks:
        own = given.get(name)
        if name in stored and (own is None or isinstance(own, Mapping)):
            from_env = env_values(name)
            run_had = {key: value for key, value in stored[name].items() if key not in from_env}
            given[name] = {**_still_known(name, run_had), **(own or {})}
    return given


def _still_known(sink_name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """The run's stored options that the installed version of the sink still has.

    A sink upgraded between the run and its recovery may have dropped or renamed an option; the
    stored value is only a default the user never typed again, so it is left out (with a warning)
    rather than failing the recovery as an unknown option, which only editing the manifest could fix.
    """
    from evalsink.discovery import find_sink
    from evalsink.sink import SinkConfig

    fields = getattr(find_sink(sink_name).load(), "config_model", SinkConfig).model_fields
    gone = sorted(set(options) - set(fields))
    if gone:
        logging.getLogger("evalsink").warning(
            "sink %r no longer has the option(s) %s that run stored; recovering without them",
            sink_name,
            ", ".join(gone),
        )
    return {key: value for key, value in options.items() if key in fields}


def _published_results(output: OutputDir, manifest: RunManifest | None) -> tuple[str, dict[str, Any]] | None:
    """The date id and contents of the results file the run's save() published, if it did.

    Only the manifest's date id names it: a results file is not tied to its run otherwise.
    """
    if manifest is None or manifest.date_id is None:
        return None
    folder, results_file = _results_file(output, manifest, manifest.date_id)
    if not folder.exists(results_file):
        return None
    try:
        results = orjson.loads(folder.read_bytes(results_file))
    except orjson.JSONDecodeError as exc:
        raise EvalsinkError(
            f"run {manifest.run_id!r} published {folder.display(results_file)}, which is not valid JSON "
            f"({exc}): restore or delete that file, then recover again"
        ) from exc
    if not isinstance(results, dict):
        raise EvalsinkError(
            f"{folder.display(results_file)} of run {manifest.run_id!r} is not a results file"
        )
    return manifest.date_id, results


class RecoveryError(EvalsinkError):
    """Some runs could not be recovered; the others were (their reports are in ``reports``)."""

    def __init__(self, reports: dict[str, SaveReport], failures: dict[str, str]) -> None:
        self.reports = reports
        self.failures = failures
        """Run id -> why it was not recovered."""
        saved = f"{len(reports)} other run(s) recovered" if reports else "no run recovered"
        super().__init__(f"{len(failures)} run(s) not recovered ({saved}): " + "; ".join(failures.values()))


def recover_runs(
    output_dir: str | Path, runs: Sequence[RunOnDisk], **options: Any
) -> tuple[dict[str, SaveReport], dict[str, str]]:
    """Recover each of ``runs`` that can be; (run id -> report, run id -> why it was not recovered).

    A run still being written or saved already is left out of both (nothing is lost). Any other
    run that cannot be recovered (several spools), or whose recovery raised, is a failure: the
    runs after it are still recovered — one bad run used to abort the recovery of every other.
    """
    if "sinks" in options:  # refused once for all the runs, not reported as each run's failure
        _check_sinks(options["sinks"])
    reports: dict[str, SaveReport] = {}
    failures: dict[str, str] = {}
    for run in runs:
        if left_alone(run):
            continue
        why_not = why_not_recoverable(run)
        if why_not is not None:
            failures[run.run_id] = why_not
            continue
        try:
            reports[run.run_id] = recover_run(output_dir, run.run_id, **options)
        except Exception as exc:  # one run's failure (EIO on its spool, say) never stops the others
            failures[run.run_id] = (
                str(exc) if isinstance(exc, EvalsinkError) else f"{type(exc).__name__}: {exc}"
            )
    return reports, failures


def recover_all(output_dir: str | Path, **options: Any) -> dict[str, SaveReport]:
    """Recover every recoverable run of ``output_dir``; run id -> report.

    Raises :class:`RecoveryError` once every other run was recovered if some could not be.
    """
    reports, failures = recover_runs(output_dir, find_runs(output_dir), **options)
    if failures:
        raise RecoveryError(reports, failures)
    return reports
