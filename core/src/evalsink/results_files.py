"""Finding and loading results files (``results_{date_id}.json``) below a path a user gives.

The ``show`` and ``diff`` commands read runs through here (and so will ``push`` and ``recover``),
so one module decides what counts as a results file and turns every problem a user can cause — a
missing path, a folder without runs, invalid JSON, a JSON that is not a results file — into a
one-line :class:`ResultsFileError` instead of a traceback.

A path is a results JSON file (any name) or a folder. A folder is searched recursively for files
named as lighteval and evalsink name them, ``results_<date_id>.json``; hidden folders (the
``.evalsink`` spool, ``.git``) are skipped. So an output dir, its ``results/`` folder, one model's
folder and a ``results_path_template`` layout all work. Each model's runs share a folder
(``results/{org}/{model}/``), and the ``date_id`` in the file name orders them: it is local ISO
time, so sorting the strings sorts the runs. Only the files picked are read, so listing a folder
with many runs stays cheap.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from fnmatch import fnmatchcase
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
    """One results file found on disk, not read yet.

    ``folder`` names the folder holding it: its path relative to the searched folder ('/'-separated,
    a leading ``results/`` dropped), so the model's name in lighteval's layout; the folder's own
    name when the file is directly in the searched folder or was given as a file.
    ``date_id`` is None for a file whose name is not ``results_<date_id>.json``.
    """

    path: Path
    folder: str
    date_id: str | None

    def matches_model(self, pattern: str) -> bool:
        """Whether the model folder's path ends with ``pattern`` (a glob: ``org/model``, ``'org/*'``)."""
        folder = self.path.parent.absolute().as_posix()
        return fnmatchcase(folder, pattern) or fnmatchcase(folder, f"*/{pattern}")


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


def find_results_files(path: str | os.PathLike[str]) -> list[ResultsFile]:
    """Every results file at or below ``path``, sorted by folder then date (oldest first)."""
    root = Path(path)
    if not root.exists():
        raise ResultsFileError(f"{root}: no such file or directory")
    if not root.is_dir():
        match = RESULTS_NAME.fullmatch(root.name)
        return [ResultsFile(root, root.absolute().parent.name, match.group(1) if match else None)]
    problems: list[OSError] = []
    found = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=problems.append):
        dirnames[:] = sorted(name for name in dirnames if not name.startswith("."))
        folder = Path(dirpath).relative_to(root).as_posix()
        if folder == "results" or folder.startswith("results/"):
            folder = folder[len("results/") :]
        folder = folder if folder not in {"", "."} else root.absolute().name
        for name in filenames:
            match = RESULTS_NAME.fullmatch(name)
            if match:
                found.append(ResultsFile(Path(dirpath) / name, folder, match.group(1)))
    if not found:
        reason = f" (cannot read {problems[0].filename}: {problems[0].strerror})" if problems else ""
        raise ResultsFileError(f"{root}: no results files (results_<date_id>.json) found{reason}")
    return sorted(found, key=lambda f: (f.folder, f.date_id or "", f.path.name))


def select_runs(
    files: Iterable[ResultsFile], *, model: str | None = None, date: str | None = None, every: bool = False
) -> list[ResultsFile]:
    """The files to use: those matching ``model`` (folder glob) and ``date`` (date_id prefix), then
    only the newest of each folder unless ``every``. Raises when the filters leave nothing."""
    candidates = list(files)
    chosen = [
        f
        for f in candidates
        if (model is None or f.matches_model(model))
        and (date is None or (f.date_id is not None and f.date_id.startswith(date)))
    ]
    if not chosen:
        asked = " and ".join(
            part
            for part in (
                f"model {model!r}" if model is not None else "",
                f"date {date!r}" if date is not None else "",
            )
            if part
        )
        runs = ", ".join(f"{f.folder} {f.date_id or f.path.name}" for f in candidates[-5:])
        more = f" (and {len(candidates) - 5} more)" if len(candidates) > 5 else ""
        raise ResultsFileError(f"no run matches {asked}; runs found: {runs}{more}")
    if every:
        return chosen
    newest: dict[Path, ResultsFile] = {}
    for f in chosen:  # sorted oldest first within a folder, so the last one seen is the newest
        newest[f.path.parent] = f
    return sorted(newest.values(), key=lambda f: (f.folder, f.date_id or ""))


def newest_run(path: str | os.PathLike[str], *, model: str | None = None) -> LoadedResults:
    """The newest run at ``path``; a folder holding several models' runs needs ``model``."""
    runs = select_runs(find_results_files(path), model=model)
    if len(runs) > 1:
        folders = ", ".join(f.folder for f in runs)
        raise ResultsFileError(
            f"{path} holds runs of {len(runs)} models ({folders}): pick one with --model "
            "or pass a results file"
        )
    return load_results(runs[0])


def load_results(file: ResultsFile | str | os.PathLike[str]) -> LoadedResults:
    """Read and validate one results file (lighteval's bare ``NaN`` and ``Infinity`` accepted)."""
    if not isinstance(file, ResultsFile):
        if Path(file).is_dir():
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
