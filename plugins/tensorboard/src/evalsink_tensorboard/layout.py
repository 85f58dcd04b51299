"""Where event files live on disk: the TensorBoard root, its run folders, and the event files in them.

Shared by the sink (which writes them) and :mod:`evalsink_tensorboard.push` (which uploads them,
also later from disk), so both agree on what a run folder and an event file are.
"""

from __future__ import annotations

from pathlib import Path

STAGING_FOLDER = ".evalsink-staging"
"""Below the TensorBoard root; holds a run's event file only while tensorboardX writes it."""

EVENT_FILE_MARK = "tfevents"
"""What TensorBoard looks for in a file name (its ``IsTensorFlowEventsFile``); lighteval's
renamed files (``0001000_events.out.tfevents...``) carry it too."""


def local_path(text: str) -> Path | None:
    """A local folder as evalsink's OutputDir reads it (``file://`` allowed), or None for a URL."""
    if text.startswith("file://"):
        text = text[len("file://") :]
    if "://" in text:
        return None
    return Path(text).expanduser().absolute()


def run_parts(run_name: str) -> list[str]:
    """The folder names of ``run_name`` below the root; ``/`` (or ``\\``) makes sub-folders.

    Raises ValueError for a name that would leave the root or write into the staging folder.
    """
    parts = [part for part in run_name.replace("\\", "/").split("/") if part]
    if not parts or any(part in {".", ".."} for part in parts) or parts[0] == STAGING_FOLDER:
        raise ValueError(f"run name {run_name!r} is not a folder name below the TensorBoard root")
    return parts


def run_folder(root: Path, run_name: str) -> Path:
    """``root/run_name``; a run name may hold ``/`` (sub-folders) but never leave the root."""
    try:
        return root.joinpath(*run_parts(run_name))
    except ValueError:
        raise ValueError(f"run name {run_name!r} is not a folder name below {root}") from None


def is_event_file(path: Path) -> bool:
    """An event file as the sink publishes it: a regular file, not hidden, ``tfevents`` in its name."""
    return not path.name.startswith(".") and EVENT_FILE_MARK in path.name and path.is_file()


def event_files(folder: Path) -> list[Path]:
    """The event files directly in ``folder`` (not in its sub-folders, which are other runs), by name."""
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if is_event_file(path))


def run_names(root: Path) -> list[str]:
    """Every run below ``root``: each folder (at any depth) that directly holds event files.

    Hidden folders and the staging folder are skipped: they only ever hold half-written files.
    """
    found: list[str] = []
    pending = [root]
    while pending:
        folder = pending.pop()
        for child in sorted(folder.iterdir()):
            # symbolic links are not followed: a link to a parent folder would never end
            if child.is_dir() and not child.is_symlink() and not child.name.startswith("."):
                pending.append(child)
        if folder != root and event_files(folder):
            found.append(folder.relative_to(root).as_posix())
    return sorted(found)
