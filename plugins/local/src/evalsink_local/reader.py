"""Reading saved details back: lighteval's ``load_details_datasets``, with a filter that works."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from evalsink.storage import OutputDir
from evalsink_local.layout import layout_for


def saved_tasks(
    output: OutputDir, model_name: str | None, date_id: str, results_path_template: str | None = None
) -> tuple[str, dict[str, str]]:
    """(resolved date_id, {task name: file path}) of a saved run; date_id may be 'first'/'last'."""
    layout = layout_for(output, model_name, results_path_template)
    if date_id in {"first", "last"}:
        folders = [name for name, is_dir in layout.details.listdir(layout.details_prefix) if is_dir]
        if not folders:
            raise FileNotFoundError(f"no saved details under {layout.details.display(layout.details_prefix)}")
        date_id = max(folders) if date_id == "last" else min(folders)
    folder = layout.details_folder(date_id)
    prefix, suffix = "details_", f"_{date_id}.parquet"
    files = {
        unquote(name[len(prefix) : -len(suffix)]): layout.details.path(f"{folder}/{name}")
        for name, is_dir in layout.details.listdir(folder)
        if not is_dir and name.startswith(prefix) and name.endswith(suffix)
    }
    if not files:
        raise FileNotFoundError(f"no details files in {layout.details.display(folder)}")
    return date_id, files


def _matches(saved: str, requested: str) -> bool:
    return saved == requested or saved.rsplit("|", 1)[0] == requested


def load_details_datasets(
    output: OutputDir,
    model_name: str | None,
    date_id: str,
    task_names: list[str],
    *,
    results_path_template: str | None = None,
) -> dict[str, Any]:
    """``{task: datasets.Dataset}`` for the requested tasks; a requested task not saved is an error."""
    try:
        from datasets import load_dataset
    except ImportError as exc:
        raise ImportError(
            "load_details_datasets returns datasets.Dataset objects: pip install datasets "
            "(or read the parquet files with pyarrow directly)"
        ) from exc
    date_id, files = saved_tasks(output, model_name, date_id, results_path_template)
    chosen = {task: path for task, path in files.items() if any(_matches(task, want) for want in task_names)}
    missing = [want for want in task_names if not any(_matches(task, want) for task in chosen)]
    if missing:
        raise ValueError(
            f"task(s) {', '.join(missing)} not found in the details of run {date_id} "
            f"(saved: {', '.join(sorted(files))})"
        )
    data_files = {task: path if output.is_local else output.display(path) for task, path in chosen.items()}
    return {
        task: load_dataset("parquet", data_files=path, split="train") for task, path in data_files.items()
    }
