"""A saved run as the local sink left it on disk: what the hub sink uploads.

The hub sink never converts the spool itself: it uploads the local sink's results JSON and details
parquet files (found with :mod:`evalsink_local.layout`, the local sink's own path rules). So a push
that failed can be made again later from the same files, and the Hub holds byte for byte what the
output folder holds. The one file made here is ``results_{date_id}.parquet`` (lighteval's one-row
table of the results JSON), derived from the JSON at each push.
"""

from __future__ import annotations

import io
import json
import os
import re
from dataclasses import dataclass, field

from evalsink.storage import OutputDir
from evalsink_local.layout import Layout, layout_for

_RESULTS_NAME = re.compile(r"results_(?P<date>.+)\.json")


@dataclass(frozen=True)
class LocalFile:
    """One file below the output folder."""

    output: OutputDir
    relative: str

    @property
    def display(self) -> str:
        return self.output.display(self.relative)

    def content(self) -> str | bytes:
        """What ``CommitOperationAdd`` uploads: the local path (read as it is sent), else the bytes."""
        if self.output.is_local:
            return self.output.path(self.relative)
        return self.output.read_bytes(self.relative)


@dataclass(frozen=True)
class LocalRun:
    """The local files of one saved run of one model."""

    output: OutputDir
    """The output folder the run was saved in (the tracker's ``output_dir``)."""
    model_name: str | None
    date_id: str
    results: LocalFile
    details: dict[str, LocalFile] = field(default_factory=dict)
    """Task file-name part (:func:`evalsink.paths.task_file_part`) -> its details parquet."""

    def results_bytes(self) -> bytes:
        return self.results.output.read_bytes(self.results.relative)


def _saved_dates(layout: Layout) -> list[str]:
    return sorted(
        match["date"]
        for name, is_dir in layout.results.listdir(layout.results_prefix)
        if not is_dir and (match := _RESULTS_NAME.fullmatch(name))
    )


def find_local_run(
    output_dir: str | os.PathLike[str] | OutputDir,
    model_name: str | None,
    date_id: str | None = None,
    *,
    results_path_template: str | None = None,
    details_path_template: str | None = None,
) -> LocalRun:
    """The files of run ``date_id`` (None, ``"last"`` or ``"latest"``: the newest; ``"first"``).

    Raises ``FileNotFoundError`` naming the folder looked in when the run has no results file.
    """
    output = output_dir if isinstance(output_dir, OutputDir) else OutputDir(output_dir)
    layout = layout_for(output, model_name, results_path_template, details_path_template)
    folder = layout.results.display(layout.results_prefix)
    if date_id in {None, "last", "latest", "first"}:
        dates = _saved_dates(layout)
        if not dates:
            raise FileNotFoundError(
                f"no saved run of model {model_name!r} in {folder}: no results_<date_id>.json file"
            )
        date_id = dates[0] if date_id == "first" else dates[-1]
    assert date_id is not None
    results = LocalFile(layout.results, layout.results_file(date_id))
    if not layout.results.exists(results.relative):
        raise FileNotFoundError(
            f"no results file {results.display}: the hub sink uploads what the local sink saved, so "
            "enable it too (sinks=['local', 'hub']) and check that it succeeded"
        )
    details_folder = layout.details_folder(date_id)
    prefix, suffix = "details_", f"_{date_id}.parquet"
    details = {
        name[len(prefix) : -len(suffix)]: LocalFile(layout.details, f"{details_folder}/{name}")
        for name, is_dir in layout.details.listdir(details_folder)
        if not is_dir
        and name.startswith(prefix)
        and name.endswith(suffix)
        and len(name) > len(prefix) + len(suffix)
    }
    return LocalRun(output=output, model_name=model_name, date_id=date_id, results=results, details=details)


def results_parquet(results_json: bytes) -> bytes:
    """lighteval's ``results_{date_id}.parquet``: one row, each top-level key a JSON-string column."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = json.loads(results_json)
    if not isinstance(data, dict):
        raise ValueError(f"a results file holds a JSON object, not a {type(data).__name__}")
    table = pa.table(
        {
            str(key): pa.array([json.dumps(value, indent=2, ensure_ascii=False)], type=pa.string())
            for key, value in data.items()
        }
    )
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    return buffer.getvalue()
