"""Logging a small lighteval-shaped evaluation, and reading a Trackio run back from its SQLite file.

(Not in conftest.py: ``from conftest import`` would pick whichever conftest was imported first
when several test folders run in one pytest session.)
"""

from __future__ import annotations

import uuid
from typing import Any

from sink_samples import log_accuracy_samples

from evalsink import EvaluationTracker

ANATOMY = "lighteval|mmlu:anatomy|5"
PLAIN = "custom|plain|0"

# per task: the acc of each sample
SAMPLES = {ANATOMY: [1.0, 0.0], PLAIN: [0.25, 0.75, 0.5]}


def new_project() -> str:
    """A project of its own per test: runs of other tests never show up."""
    return f"evalsink-test-{uuid.uuid4().hex[:10]}"


def log_evaluation(tracker: EvaluationTracker, samples: dict[str, list[float]] | None = None) -> None:
    """Each sample logged as details and as metrics."""
    log_accuracy_samples(tracker, samples or SAMPLES)


def read_run(project: str, run: str | None = None) -> tuple[str, list[dict[str, Any]], dict[str, Any]]:
    """(run name, logs, config) of the project's only run (or of ``run``)."""
    from trackio.sqlite_storage import SQLiteStorage

    if run is None:
        [run] = SQLiteStorage.get_runs(project)
    logs = SQLiteStorage.get_logs(project, run)
    config = SQLiteStorage.get_run_config(project, run)
    assert config is not None
    return run, logs, config


def merged(logs: list[dict[str, Any]]) -> dict[str, Any]:
    """Every logged key of a run's entries, later entries winning."""
    out: dict[str, Any] = {}
    for entry in logs:
        out.update(entry)
    return out


def table_rows(value: Any) -> list[dict[str, Any]]:
    """The rows of a logged trackio Table as stored."""
    assert isinstance(value, dict), value
    assert value["_type"] == "trackio.table", value
    rows: list[dict[str, Any]] = value["_value"]
    return rows


def details_rows(logs: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Every row logged under a details key: streamed tables hold only their own rows, in order."""
    return [row for entry in logs if key in entry for row in table_rows(entry[key])]
