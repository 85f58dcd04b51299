"""An evalsink sink: every logged sample as one JSON line, in one file per run, at any fsspec URL.

The sink docs/writing-a-sink.md walks through: small, but complete, tested and typed.
``sink_config={"jsonl": {"url": "s3://bucket/evals"}}`` writes, per run,

* ``{url}/{run_id}.jsonl``: one line per sample, in logging order, as the spool holds it
  (``task_name``, ``doc``, ``model_response``, ``metric``);
* ``{url}/{run_id}.results.json``: a small summary (ids, model, sample count, aggregated metrics).

The samples file is streamed batch by batch into a file that is published only at
``results_saved``: readers never see half a run, and memory stays at one batch.
"""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from typing import BinaryIO

from evalsink import (
    DetailsBatch,
    EvaluationResults,
    Run,
    RunStatus,
    Sink,
    SinkConfig,
    TrackerSettings,
    hookimpl,
)
from evalsink.storage import OutputDir

__all__ = ["JsonlConfig", "JsonlSink"]

NOT_STARTED = "the jsonl sink has no open samples file: evalsink_run_started did not run"


class JsonlConfig(SinkConfig):
    """``sink_config={"jsonl": {...}}`` or ``EVALSINK_JSONL__<FIELD>=...``."""

    url: str | None = None
    """Folder or fsspec URL (``/data``, ``file:///data``, ``memory://x``, ``s3://bucket/x``...);
    default ``{output_dir}/jsonl``. A remote protocol needs its fsspec package (s3fs, gcsfs...)."""
    include_results: bool = True
    """Also write ``{run_id}.results.json``, the run's aggregated metrics."""


class RunNotSavedError(Exception):
    """Thrown into the unfinished samples file of a run that ended before ``results_saved``."""


class JsonlSink(Sink):
    """Streams each details batch to ``{url}/{run_id}.jsonl``, published atomically at results time.

    ``remote`` keeps its default (True): the URL may be an object store, and running after the local
    sink costs nothing here.
    """

    config_model = JsonlConfig
    config: JsonlConfig

    def __init__(self, config: JsonlConfig, settings: TrackerSettings) -> None:
        super().__init__(config, settings)
        # resolved here, so an unknown protocol or a missing fsspec package fails the tracker's
        # construction, before any evaluation time is spent; nothing is opened yet
        self.output = OutputDir(config.url or f"{settings.output_dir.rstrip('/')}/jsonl")
        self._samples: AbstractContextManager[BinaryIO] | None = None
        self._file: BinaryIO | None = None
        self._count = 0

    @hookimpl
    def evalsink_run_started(self, run: Run) -> None:
        # OutputDir.open_atomic is a `with` block that this sink spreads over the run's hooks:
        # entered now, left at results_saved (publish) or run_finished (discard). Locally it writes
        # `.{run_id}.jsonl.tmp-*` and renames it; on object stores (s3, gs, az) it is one upload
        # that creates the object when completed, or is aborted; elsewhere a temporary name, moved.
        samples = self.output.open_atomic(f"{run.run_id}.jsonl")
        self._file = samples.__enter__()
        self._samples = samples
        self._count = 0

    @hookimpl
    def evalsink_details_batch(self, batch: DetailsBatch) -> None:
        file = self._file
        if file is None:
            raise RuntimeError(NOT_STARTED)
        # the spool's lines are already strict JSON objects: copied as they are, no decoding
        file.write(b"".join(line + b"\n" for line in batch.lines()))
        # a local partial file then holds every delivered batch (readable while the run goes on);
        # other stores buffer at most one upload part, whatever flush() does
        file.flush()
        self._count += len(batch)

    @hookimpl
    def evalsink_results_saved(self, run: Run, results: EvaluationResults) -> list[str]:
        written: list[str] = []
        if self.config.include_results:  # results first: a samples problem never costs them
            written.append(self.output.write_bytes(f"{run.run_id}.results.json", self._summary(run, results)))
        samples = self._take_samples()
        if samples is None:
            raise RuntimeError(NOT_STARTED)
        samples.__exit__(None, None, None)  # publishes the file, complete, under its final name
        written.append(self.output.display(f"{run.run_id}.jsonl"))
        return written

    @hookimpl
    def evalsink_run_finished(self, status: RunStatus, error: BaseException | None) -> None:
        samples = self._take_samples()
        if samples is None:  # published, never started, or already finished
            return
        # the run ended before results_saved (it failed, or was never saved): leaving the `with`
        # block with an exception discards the partial file; the spool keeps every sample for
        # `evalsink recover`
        abandoned = RunNotSavedError(f"run finished ({status.value}) before its results were saved")
        abandoned.__cause__ = error
        samples.__exit__(RunNotSavedError, abandoned, None)

    def _take_samples(self) -> AbstractContextManager[BinaryIO] | None:
        """The open samples file's `with` block, handed over once: the sink forgets it first."""
        samples, self._samples, self._file = self._samples, None, None
        return samples

    def _summary(self, run: Run, results: EvaluationResults) -> bytes:
        summary = {
            "run_id": run.run_id,
            "date_id": run.date_id,
            "model_name": run.model_name,
            "samples": self._count,
            "results": results.results,  # evalsink has already turned NaN and infinities into null
        }
        return json.dumps(summary, ensure_ascii=False, allow_nan=False, indent=2).encode() + b"\n"
