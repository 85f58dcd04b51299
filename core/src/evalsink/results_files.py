"""Finding and loading results files (``results_{date_id}.json``) below a path a user gives.

The ``show``, ``diff`` and ``push`` commands read runs through here, so one module decides what
counts as a results file and turns every problem a user can cause — a missing path, a folder
without runs, invalid JSON, a JSON that is not a results file — into a one-line
:class:`ResultsFileError` instead of a traceback.

A path is a results JSON file (any name) or a folder, given as a path or a ``file://`` URL (read as
the tracker reads one: the rest of the URL is the path). A folder is searched recursively for files
named as lighteval and evalsink name them, ``results_<date_id>.json``; hidden folders (the
``.evalsink`` spool, ``.git``) are skipped. So an output dir, its ``results/`` folder, one model's
folder, a ``results_path_template`` layout, and a folder holding several output dirs all work.

A run's model is the model name it recorded (``config_general.model_name``), else the folder it was
found in, so the runs of one model saved to several output dirs group as one model. The
``date_id`` in the file name orders a model's runs: it is local ISO time, so sorting the strings
sorts the runs. Only each file's model name is read to group the runs; only the runs picked are
loaded and validated, so a damaged file that is not picked does not stop the others.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsink.errors import EvalsinkError

if TYPE_CHECKING:
    from evalsink.models import EvaluationResults

RESULTS_NAME = re.compile(r"results_(\d{4}-\d{2}-\d{2}T\d{2}-\d{2}-\d{2}(?:\.\d+)?)\.json")


class ResultsFileError(EvalsinkError):
    """A path does not lead to a readable results file; the message names the path and the reason."""


@dataclass(frozen=True)
class ResultsFile:
    """One results file found on disk, not loaded yet.

    ``folder`` names the folder holding it: its path relative to the searched folder ('/'-separated,
    up to a ``results/`` folder dropped: lighteval's ``{output_dir}/results/{model}``), so the
    model's name in lighteval's layout; the folder's own name when the file is directly in the
    searched folder or was given as a file.
    ``date_id`` is None for a file whose name is not ``results_<date_id>.json``.
    """

    path: Path
    folder: str
    date_id: str | None

    @cached_property
    def model(self) -> str:
        """The model name the run recorded (``config_general.model_name``), else ``folder``.

        Read on first use (the file is parsed, not validated); a file that cannot be read or parsed
        falls back to ``folder``, and loading it reports what is wrong with it.
        """
        return _recorded_model(self.path) or self.folder

    def matches_model(self, pattern: str) -> bool:
        """Whether the model name ends with ``pattern`` (a glob: ``org/model``, ``model``, ``'org/*'``)."""
        return fnmatchcase(self.model, pattern) or fnmatchcase(self.model, f"*/{pattern}")

    def order(self) -> tuple[str, str, str]:
        """Sort key: by model, then oldest first."""
        return (self.model, self.date_id or "", self.path.as_posix())


def _recorded_model(path: Path) -> str | None:
    try:
        name = json.loads(path.read_bytes())["config_general"]["model_name"]
    except (OSError, ValueError, RecursionError, LookupError, TypeError):
        return None
    return name if isinstance(name, str) and name else None


@dataclass(frozen=True)
class LoadedResults:
    """A results file and its validated content."""

    file: ResultsFile
    results: EvaluationResults

    @property
    def model(self) -> str:
        """The model name the run recorded, else the folder it was found in."""
        name = self.results.config_general.model_name
        if name:
            return name
        return self.file.folder

    def describe(self) -> dict[str, Any]:
        """Where the run comes from, as plain JSON."""
        return {"path": str(self.file.path), "model": self.model, "date_id": self.file.date_id}


def local_path(path: str | os.PathLike[str]) -> Path:
    """The local path a user gave as a path or a ``file://`` URL, read as the tracker reads it
    (``file:///tmp/out`` is ``/tmp/out``); any other URL is an error."""
    text = os.fspath(path)
    if text.startswith("file://"):
        return Path(text[len("file://") :])
    if "://" in text:
        raise ResultsFileError(f"{text}: not a local path: runs are read from local files and folders")
    return Path(text)


def _shown(path: str | os.PathLike[str], root: Path) -> str:
    """What to call the path in a message: a URL as the user typed it."""
    text = os.fspath(path)
    return text if "://" in text else str(root)


def find_results_files(path: str | os.PathLike[str]) -> list[ResultsFile]:
    """Every results file at or below ``path`` (a path or a ``file://`` URL), sorted by folder then
    date (oldest first)."""
    root = local_path(path)
    if not root.exists():
        raise ResultsFileError(f"{_shown(path, root)}: no such file or directory")
    if not root.is_dir():
        match = RESULTS_NAME.fullmatch(root.name)
        return [ResultsFile(root, root.absolute().parent.name, match.group(1) if match else None)]
    problems: list[OSError] = []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=problems.append):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        folder = _model_folder(Path(dirpath).relative_to(root).parts) or root.absolute().name
        for name in filenames:
            match = RESULTS_NAME.fullmatch(name)
            if match:
                found.append(ResultsFile(Path(dirpath) / name, folder, match.group(1)))
    if not found:
        reason = f" (cannot read {problems[0].filename}: {problems[0].strerror})" if problems else ""
        raise ResultsFileError(
            f"{_shown(path, root)}: no results files (results_<date_id>.json) found{reason}"
        )
    return sorted(found, key=lambda f: (f.folder, f.date_id or "", f.path.name))


def _model_folder(parts: tuple[str, ...]) -> str:
    """A folder's relative path without what precedes the model's folders in lighteval's layout
    (``{output_dir}/results/{org}/{model}``): up to the last ``results`` folder that has folders
    below it, so an output dir found below the searched folder does not end up in the name."""
    for index in range(len(parts) - 2, -1, -1):
        if parts[index] == "results":
            return "/".join(parts[index + 1 :])
    return "/".join(parts)


def select_runs(
    files: Iterable[ResultsFile], *, model: str | None = None, date: str | None = None, every: bool = False
) -> list[ResultsFile]:
    """The files to use: those matching ``date`` (date_id prefix) and ``model`` (a glob on the model
    name), then only the newest run of each model unless ``every``; sorted by model, then oldest
    first. Raises when the filters leave nothing.

    Each remaining file's model name is read (the date needs no reading, so it filters first).
    """
    candidates = list(files)
    dated = [f for f in candidates if date is None or (f.date_id is not None and f.date_id.startswith(date))]
    chosen = sorted((f for f in dated if model is None or f.matches_model(model)), key=ResultsFile.order)
    if not chosen:
        asked = " and ".join(
            part
            for part in (
                f"model {model!r}" if model is not None else "",
                f"date {date!r}" if date is not None else "",
            )
            if part
        )
        runs = ", ".join(f"{f.model} {f.date_id or f.path.name}" for f in candidates[-5:])
        more = f" (and {len(candidates) - 5} more)" if len(candidates) > 5 else ""
        raise ResultsFileError(f"no run matches {asked}; runs found: {runs}{more}")
    if every:
        return chosen
    newest: dict[str, ResultsFile] = {}
    for f in chosen:  # oldest first within a model, so the last one seen is the newest
        newest[f.model] = f
    return list(newest.values())


def newest_run(path: str | os.PathLike[str], *, model: str | None = None) -> LoadedResults:
    """The newest run at ``path``; a folder holding several models' runs needs ``model``."""
    runs = select_runs(find_results_files(path), model=model)
    if len(runs) > 1:
        models = ", ".join(f.model for f in runs)
        raise ResultsFileError(
            f"{path} holds runs of {len(runs)} models ({models}): pick one with --model "
            "or pass a results file"
        )
    return load_results(runs[0])


def load_results(file: ResultsFile | str | os.PathLike[str]) -> LoadedResults:
    """Read and validate one results file (lighteval's bare ``NaN`` and ``Infinity`` accepted)."""
    if not isinstance(file, ResultsFile):
        if local_path(file).is_dir():
            raise ResultsFileError(f"{file}: is a directory, not a results file")
        (file,) = find_results_files(file)  # one file, or the error for a missing path
    path = file.path
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ResultsFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = json.loads(data)
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path}: not a results file: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ResultsFileError(
            f"{path}: invalid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})"
        ) from None
    except RecursionError:
        raise ResultsFileError(f"{path}: not a results file: JSON nested too deeply") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("results"), dict):
        raise ResultsFileError(f"{path}: not a results file: it has no 'results' object")
    from pydantic import ValidationError

    from evalsink.models import EvaluationResults

    try:
        results = EvaluationResults.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        where = ".".join(str(part) for part in first["loc"])
        more = f" (and {len(errors) - 1} more problems)" if len(errors) > 1 else ""
        raise ResultsFileError(f"{path}: not a results file: {where}: {first['msg']}{more}") from None
    return LoadedResults(file, results)
