"""Reading saved details back: lighteval's ``load_details_datasets``, with a filter that works."""

from __future__ import annotations

import glob
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import unquote

import orjson

from evalsink.jsonsafe import decode_bytes
from evalsink.paths import model_path, task_file_part
from evalsink.storage import OutputDir
from evalsink_local.layout import Layout, layout_for

_DATE_ID = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}")


def saved_tasks(
    output: OutputDir,
    model_name: str | None,
    date_id: str,
    results_path_template: str | None = None,
    details_path_template: str | None = None,
) -> tuple[str, dict[str, str]]:
    """(resolved date_id, {file-name part of the task: path or URL}) of a saved run.

    ``date_id`` may be ``first`` or ``last``: the first or last run whose results file exists.
    A details folder without its results file is a save that did not complete (on an object
    store the results file is written last, as the run's commit marker); it is read only when
    asked for by its date id. File-name parts are the task names as
    :func:`evalsink.paths.task_file_part` wrote them.

    With a path template the details folder may hold the runs of several models (a template
    without ``{model}``): a run is then read only when its results file shows it is this model's
    (see :func:`_check_owner`), so that re-scoring never reads another model's responses.
    """
    layout = layout_for(output, model_name, results_path_template, details_path_template)
    shared = bool(results_path_template or details_path_template)
    # results_{date_id}.json of a results_path_template's folder may be another model's: read it
    read_model = bool(results_path_template)
    picked = date_id in {"first", "last"}
    if picked:
        folders = sorted(
            (
                name
                for name, is_dir in layout.details.listdir(layout.details_prefix)
                if is_dir and _DATE_ID.match(name)  # not the folder of another model named org/<this>
            ),
            reverse=date_id == "last",
        )
        if not folders:
            raise FileNotFoundError(f"no saved details under {layout.details.display(layout.details_prefix)}")
        complete = next(
            (name for name in folders if _is_complete_run_of(layout, model_name, name, read_model)), None
        )
        if complete is None:
            where = layout.details.display(layout.details_prefix)
            results = layout.results.display(layout.results_file("<date_id>"))
            if shared:
                raise FileNotFoundError(
                    f"no complete run of model {model_name!r} under {where}: no details folder "
                    f"({', '.join(folders)}) has a results file {results} naming that model"
                )
            raise FileNotFoundError(
                f"no complete run under {where}: no details folder ({', '.join(folders)}) has its "
                f"results file {results}; pass a date id to read an incomplete save"
            )
        date_id = complete
    folder = layout.details_folder(date_id)
    prefix, suffix = "details_", f"_{date_id}.parquet"
    files = {
        name[len(prefix) : -len(suffix)]: layout.details.display(f"{folder}/{name}")
        for name, is_dir in layout.details.listdir(folder)
        if not is_dir and name.startswith(prefix) and name.endswith(suffix)
    }
    if not files:
        raise FileNotFoundError(f"no details files in {layout.details.display(folder)}")
    if shared and not picked:  # a run picked as first/last was checked to be this model's already
        _check_owner(layout, model_name, date_id, read_model)
    return date_id, files


def _is_complete_run_of(layout: Layout, model_name: str | None, date_id: str, read_model: bool) -> bool:
    """Whether run ``date_id`` has its results file, and (``read_model``) that file names this model."""
    if not layout.results.exists(layout.results_file(date_id)):
        return False
    return not read_model or _same_model(_recorded_model(layout, date_id), model_name)


def _check_owner(layout: Layout, model_name: str | None, date_id: str, read_model: bool) -> None:
    """Refuse run ``date_id`` of a template layout unless its results file shows it is this model's.

    A template may put several models' ``{date_id}/`` folders in one details folder, where nothing
    but the results file tells whose a run is: ``results_path_template``'s folder holds every
    model's results files (so the file's ``config_general.model_name`` decides), while with a
    ``details_path_template`` alone the results folder is the model's own (so the file's presence
    decides). A run without its results file (an incomplete save) cannot be attributed, so it is
    refused too, rather than risk handing back another model's responses.
    """
    results = layout.results_file(date_id)
    shown = layout.results.display(results)
    if not layout.results.exists(results):
        raise FileNotFoundError(
            f"run {date_id} has no results file {shown}: its details folder "
            f"{layout.details.display(layout.details_folder(date_id))} comes from a path template and "
            f"may hold other models' runs, so it cannot be told to be model {model_name!r}'s "
            "(an incomplete save is read by its date id only without path templates; read its parquet "
            "files directly)"
        )
    if read_model:
        recorded = _recorded_model(layout, date_id)
        if not _same_model(recorded, model_name):
            raise ValueError(
                f"run {date_id} is model {recorded!r}'s, not {model_name!r}'s (config_general.model_name "
                f"of {shown}): the results_path_template puts several models' runs in one folder"
            )


def _recorded_model(layout: Layout, date_id: str) -> str | None:
    """``config_general.model_name`` of run ``date_id``'s results file (None when not recorded)."""
    shown = layout.results.display(layout.results_file(date_id))
    try:
        recorded = orjson.loads(layout.results.read_bytes(layout.results_file(date_id)))["config_general"]
        name = recorded.get("model_name")
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError) as exc:
        raise ValueError(
            f"{shown} is not a results file ({type(exc).__name__}: {exc}), so whose run {date_id} is "
            "cannot be told"
        ) from exc
    if name is not None and not isinstance(name, str):
        raise ValueError(f"{shown}: config_general.model_name is {name!r}, not a string")
    return name


def _same_model(recorded: str | None, model_name: str | None) -> bool:
    """Same model as the default layout sees it: names filed in the same ``details/{model}/`` folder
    (``None``, ``""`` and ``unknown-model`` alike), so a template layout reads exactly the runs the
    default layout would."""
    return model_path(recorded) == model_path(model_name)


_FEWSHOT = re.compile(r"(.+)\|[0-9]+")
"""A file-name part ending with a few-shot count: lighteval names tasks ``suite|task|k``."""


def _match(part: str, requested: str) -> bool:
    """A saved file matches a requested task name exactly or without its ``|<fewshot>`` suffix.

    Only a trailing integer may be left out (``mmlu:anatomy`` finds ``mmlu:anatomy|5``): dropping
    any last segment let ``lighteval`` select ``lighteval|gsm8k``. Both sides are compared as
    file-name parts, so the request goes through the same mapping the saved name went through.
    """
    wanted = task_file_part(requested)
    if part == wanted:
        return True
    fewshot = _FEWSHOT.fullmatch(part)
    return fewshot is not None and fewshot.group(1) == wanted


def load_details_datasets(
    output: OutputDir,
    model_name: str | None,
    date_id: str,
    task_names: list[str],
    *,
    results_path_template: str | None = None,
    details_path_template: str | None = None,
) -> dict[str, Any]:
    """``{task: datasets.Dataset}`` for the requested tasks; a requested task not saved is an error."""
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise ImportError(
            "load_details_datasets returns datasets.Dataset objects: pip install datasets "
            "(or read the parquet files with pyarrow directly)"
        ) from exc
    date_id, files = saved_tasks(output, model_name, date_id, results_path_template, details_path_template)
    chosen: dict[str, str] = {}
    missing = []
    for requested in task_names:
        parts = [part for part in files if _match(part, requested)]
        if not parts:
            missing.append(requested)
        for part in parts:
            name = unquote(part)
            chosen[requested if task_file_part(name) != part else name] = files[part]
    if missing:
        saved = ", ".join(sorted(unquote(part) for part in files))
        raise ValueError(
            f"task(s) {', '.join(missing)} not found in the details of run {date_id} (saved: {saved})"
        )
    # data_files are glob patterns: a task named "br[a]" or "q?x" must match its own file only
    return {
        task: _decoding(output, load_dataset("parquet", data_files=glob.escape(path), split="train"), path)
        for task, path in chosen.items()
    }


def _decoding(output: OutputDir, dataset: Any, path: str) -> Any:
    """The dataset, decoding its JSON-text fields as rows are read (``Dataset.with_transform``).

    Their values have no common type, so no Arrow column can hold them decoded; a transform hands
    them to Python as they were logged, so that a run rebuilt from its details (lighteval rebuilds
    ``ModelResponse(**row["model_response"])``) gets a chat-list ``input`` back, not its JSON text.
    Arrow-level reads (``to_pandas()``, ``data``) still see the text.
    """
    import pyarrow.parquet as pq

    from evalsink_local.parquet import json_text_fields

    with open(path, "rb") if output.is_local else output.fs.open(path, "rb") as handle:
        schema = pq.read_schema(handle)
    if not json_text_fields(schema):
        return dataset
    fields = {field.name: field for field in schema}

    def decode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        return {
            name: [_decoded(value, fields[name]) for value in values] if name in fields else values
            for name, values in batch.items()
        }

    return dataset.with_transform(decode)


def iter_details(output: OutputDir, path: str, batch_rows: int = 500) -> Iterator[dict[str, Any]]:
    """The records of one details file as they were logged: JSON-text columns decoded again.

    The local sink stores a field whose values have no common Arrow type as JSON text, marked with
    the field metadata ``evalsink.encoding = json`` (see :mod:`evalsink_local.parquet`); reading it
    back must undo that, or a re-published run would carry strings where numbers were. Files
    written by lighteval have no such fields and read as they are. Memory: one batch of rows.
    """
    import pyarrow.parquet as pq

    with open(path, "rb") if output.is_local else output.fs.open(path, "rb") as handle:
        parquet = pq.ParquetFile(handle)
        fields = {field.name: field for field in parquet.schema_arrow}
        for batch in parquet.iter_batches(batch_size=batch_rows):
            for row in batch.to_pylist():
                yield {name: _decoded(value, fields[name]) for name, value in row.items()}


def _decoded(value: Any, field: Any) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    kind = field.type
    metadata = field.metadata or {}
    if metadata.get(b"evalsink.encoding") == b"json" and (
        pa.types.is_string(kind) or pa.types.is_large_string(kind)
    ):
        return decode_bytes(orjson.loads(value))
    if pa.types.is_struct(kind):
        return {
            kind.field(i).name: _decoded(value.get(kind.field(i).name), kind.field(i))
            for i in range(kind.num_fields)
        }
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return [_decoded(item, kind.value_field) for item in value]
    return value
