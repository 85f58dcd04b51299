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
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from urllib.parse import unquote

RESULTS_CONFIG = "results"
LATEST_SPLIT = "latest"

_REPO_NAME_MAX = 96
"""Longest namespace and longest repository name the Hub takes (huggingface_hub's REPO_ID_REGEX)."""
# ASCII only: the Hub refuses "café" although Python's \w matches it
_REFUSED_CHARS = re.compile(r"[^A-Za-z0-9_.-]")
_REFUSED_RUNS = re.compile(r"[^A-Za-z0-9_.-]+")
_REPEATED_PUNCTUATION = re.compile(r"-{2,}|\.{2,}")
_DIGEST_LENGTH = 8
_RESULTS_FILE = re.compile(r"results_(?P<date>.+)\.(?P<ext>json|parquet)")


def name_problem(name: str, *, repository: bool = True) -> str | None:
    """Why the Hub refuses ``name`` as a repository name (or, ``repository=False``, a namespace).

    The rules of ``huggingface_hub.utils.validate_repo_id``, repeated here so that names are
    checked and built without importing huggingface_hub (the tests check both agree): 1 to 96
    ASCII letters, digits, ``_``, ``-`` and ``.``; no ``--`` nor ``..``; neither starting nor
    ending with ``-`` or ``.``; a repository name not ending with ``.git``.
    """
    if not name:
        return "is empty"
    if len(name) > _REPO_NAME_MAX:
        return f"is longer than {_REPO_NAME_MAX} characters"
    refused = sorted(set(_REFUSED_CHARS.findall(name)))
    if refused:
        return f"holds {''.join(refused)!r}: only ASCII letters, digits, '_', '-' and '.' are allowed"
    if name[0] in "-." or name[-1] in "-.":
        return "starts or ends with '-' or '.'"
    if "--" in name or ".." in name:
        return "holds '--' or '..'"
    if repository and name.endswith(".git"):
        return "ends with '.git'"
    return None


def repo_id_problem(repo_id: str) -> str | None:
    """Why the Hub refuses ``repo_id`` (``org/name``), as a clause ("its name ... holds '/'"), or
    None; see :func:`name_problem`."""
    namespace, slash, name = repo_id.partition("/")
    if not slash or "/" in name:
        return "it is not of the form 'org/name'"
    for part, what, repository in ((namespace, "namespace", False), (name, "name", True)):
        problem = name_problem(part, repository=repository)
        if problem is not None:
            return f"its {what} {part!r} {problem}"
    return None


def check_repo_id(repo_id: str, what: str) -> str:
    """``repo_id`` when the Hub would take it; else a ValueError saying why, raised early.

    Called where a tracker or a pusher is built, so a namespace or ``repo_id`` the Hub refuses
    fails before the evaluation runs rather than at the push after it.
    """
    problem = repo_id_problem(repo_id)
    if problem is not None:
        raise ValueError(f"{what} {repo_id!r} cannot be a Hub repository id: {problem}")
    return repo_id


def check_namespace(namespace: str, what: str) -> str:
    """``namespace`` when the Hub takes it as an org or user name; else a ValueError saying why."""
    problem = name_problem(namespace, repository=False)
    if problem is not None:
        raise ValueError(f"{what} {namespace!r} cannot be a Hub namespace: it {problem}")
    return namespace


def details_repo_name(model_name: str, public: bool) -> str:
    """lighteval's repository name: ``details_{model with / -> __}``, ``_private`` unless public.

    When the Hub takes that name, it is used as is, so evalsink pushes to the repository lighteval
    pushed to. lighteval passed every other model name through and the Hub refused the push; here
    such a name is made one the Hub takes (:func:`_hub_safe`: accents dropped, other refused
    characters -> ``_``, ``--``/``..`` shortened, at most 96 characters) and, since two models
    could then share it, a short hash of the model name is added before ``_private``:
    ``org/模型`` -> ``details_org____acbf85d5_private``.
    """
    suffix = "" if public else "_private"
    name = lighteval_repo_name(model_name, public)
    if name_problem(name) is None:
        return name
    digest = hashlib.sha1(model_name.encode("utf-8", "surrogatepass")).hexdigest()[:_DIGEST_LENGTH]
    tail = f"_{digest}{suffix}"  # starts with "_": nothing the head ends with can make it invalid
    head = _hub_safe(f"details_{model_name.replace('/', '__')}")
    return head[: _REPO_NAME_MAX - len(tail)] + tail


def lighteval_repo_name(model_name: str, public: bool) -> str:
    """The details repository name lighteval builds, valid on the Hub or not."""
    return f"details_{model_name.replace('/', '__')}{'' if public else '_private'}"


def _hub_safe(text: str) -> str:
    """``text`` in the characters a repository name may hold, as readable as they allow.

    Accented letters keep their base letter (``ü`` -> ``u``, NFKD), each run of other refused
    characters becomes one ``_``, and ``--``/``..`` runs become one ``-``/``.`` (the Hub refuses
    them). Callers keep the first and last characters valid (``details_`` ahead, ``_hash`` after).
    """
    decomposed = unicodedata.normalize("NFKD", text)
    text = "".join(char for char in decomposed if not unicodedata.combining(char))
    text = _REFUSED_RUNS.sub("_", text)
    return _REPEATED_PUNCTUATION.sub(lambda match: match.group()[0], text)


def details_repo_id(org: str, model_name: str, public: bool) -> str:
    """``{org}/details_{model}[_private]`` (see :func:`details_repo_name`); a ValueError when the
    Hub refuses ``org`` as a namespace (every model name gives a valid repository name)."""
    return check_repo_id(f"{org}/{details_repo_name(model_name, public)}", "the details repository")


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
