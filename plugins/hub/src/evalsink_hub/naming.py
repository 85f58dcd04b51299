"""Names on the Hub: lighteval's repository, file, config and split names, and reading them back.

A details repository holds, per run (``date_id`` in lighteval's format, e.g.
``2025-11-05T14-43-47.148527``):

* ``results_{date_id}.json`` and ``results_{date_id}.parquet`` at the root;
* ``{date_id}/details_{task}_{date_id}.parquet``, one per task.

``{task}`` is the task's file-name part as the local sink wrote it
(:func:`evalsink.paths.task_file_part`: lighteval's name, ``:`` and ``|`` included, with only ``/``,
``\\``, ``%``, ``~`` and control characters percent-encoded). Repositories written by lighteval itself
follow the same layout, so :func:`parse_repo_files` reads both.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

RESULTS_CONFIG = "results"
LATEST_SPLIT = "latest"

_REPO_NAME_CHARS = re.compile(r"[^\w.-]")
_REPO_NAME_MAX = 96
_RESULTS_FILE = re.compile(r"results_(?P<date>.+)\.(?P<ext>json|parquet)")


def details_repo_name(model_name: str, public: bool) -> str:
    """lighteval's repository name: ``details_{model with / -> __}``, ``_private`` unless public.

    Characters a Hub repository name cannot hold (anything but letters, digits, ``_``, ``-``,
    ``.``) become ``_``; lighteval passes them through and the Hub refuses the name.
    """
    name = f"details_{model_name.replace('/', '__')}{'' if public else '_private'}"
    return _REPO_NAME_CHARS.sub("_", name)


def details_repo_id(org: str, model_name: str, public: bool) -> str:
    """``{org}/details_{model}[_private]`` (see :func:`details_repo_name`)."""
    repo_id = f"{org}/{details_repo_name(model_name, public)}"
    if len(repo_id.split("/", 1)[1]) > _REPO_NAME_MAX:
        raise ValueError(
            f"the details repository name for model {model_name!r} would be longer than the Hub's "
            f"{_REPO_NAME_MAX} characters ({repo_id}); give the hub sink an explicit repo_id"
        )
    return repo_id


def config_name(task_name: str) -> str:
    """lighteval's config name of a task: every non-word character becomes ``_``.

    ``lighteval|mmlu:anatomy|5`` -> ``lighteval_mmlu_anatomy_5``.
    """
    return re.sub(r"\W", "_", task_name)


def split_name(date_id: str) -> str:
    """lighteval's split name of a run: every character but word characters and ``.`` becomes ``_``.

    ``2025-11-05T14-43-47.148527`` -> ``2025_11_05T14_43_47.148527`` (``datasets`` accepts split
    names matching ``\\w+(\\.\\w+)*``).
    """
    return re.sub(r"[^\w.]", "_", date_id)


def results_json_path(date_id: str) -> str:
    return f"results_{date_id}.json"


def results_parquet_path(date_id: str) -> str:
    return f"results_{date_id}.parquet"


def details_path(task_part: str, date_id: str) -> str:
    """Path in the repository of one task's details; ``task_part`` is the local file-name part."""
    return f"{date_id}/details_{task_part}_{date_id}.parquet"


def task_from_part(task_part: str) -> str:
    """The task name a file-name part stands for (percent-encoding undone)."""
    return unquote(task_part)


@dataclass
class RepoFiles:
    """What a repository's file list says about the runs it holds."""

    results_json: dict[str, str] = field(default_factory=dict)
    """date_id -> path of ``results_{date_id}.json``."""
    results_parquet: dict[str, str] = field(default_factory=dict)
    """date_id -> path of ``results_{date_id}.parquet``."""
    details: dict[str, dict[str, str]] = field(default_factory=dict)
    """task file-name part -> {date_id: path of its details parquet}."""

    def latest_results_date(self) -> str | None:
        """The newest run with a results JSON (lighteval's date ids sort chronologically)."""
        return max(self.results_json, default=None)

    def latest_date(self) -> str | None:
        """The newest run with anything in the repository."""
        dates = {*self.results_json, *self.results_parquet}
        for runs in self.details.values():
            dates.update(runs)
        return max(dates, default=None)


def parse_repo_files(paths: Iterable[str]) -> RepoFiles:
    """Sort a repository's file list into results and details files; other files are ignored."""
    found = RepoFiles()
    for path in paths:
        folder, _, name = path.rpartition("/")
        if not folder:
            match = _RESULTS_FILE.fullmatch(name)
            if match:
                target = found.results_json if match["ext"] == "json" else found.results_parquet
                target[match["date"]] = path
            continue
        date_id = folder.rsplit("/", 1)[-1]
        prefix, suffix = "details_", f"_{date_id}.parquet"
        if "/" in folder or not name.startswith(prefix) or not name.endswith(suffix):
            continue
        part = name[len(prefix) : -len(suffix)]
        if part:
            found.details.setdefault(part, {})[date_id] = path
    return found


def config_names(task_parts: Iterable[str]) -> dict[str, str]:
    """Config name of each task: lighteval's (:func:`config_name`), made unique.

    Two tasks whose names differ only in non-word characters (``a:b`` and ``a|b``), or a task that
    would be called ``results``, would share a config in lighteval (one silently hiding the other);
    here each such task gets a short hash of its name appended.
    """
    parts = sorted(set(task_parts))
    plain = {part: config_name(task_from_part(part)) for part in parts}
    counts: dict[str, int] = {}
    for name in plain.values():
        counts[name] = counts.get(name, 0) + 1
    names = {}
    for part, name in plain.items():
        if counts[name] > 1 or name == RESULTS_CONFIG:
            digest = hashlib.sha1(task_from_part(part).encode("utf-8")).hexdigest()[:8]
            names[part] = f"{name}_{digest}"
        else:
            names[part] = name
    return names
