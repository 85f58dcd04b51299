"""In-memory repositories with the Hub's git semantics, independent of HTTP.

Every commit keeps a full snapshot of the tree (a dict of path -> bytes). That costs memory the
real Hub would not spend, but test repositories are small, and it makes three things trivial:
atomic commits (build the next snapshot, swap it in only when every operation succeeded),
reading any revision by commit id, and telling a test exactly what each commit changed.

The store does no locking of its own: ``LoopbackHub`` holds one lock around every call, so each
request sees and leaves a consistent state.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .models import Commit

REPO_TYPES = ("model", "dataset")
URL_PREFIXES = {"model": "", "dataset": "datasets/", "space": "spaces/"}
DEFAULT_BRANCH = "main"

# What the Hub puts in the ``initial commit`` of a new repository: Git LFS rules for the usual
# binary formats. The loopback Hub never routes files to LFS (preupload answers "regular"), the
# file is only here so that a fresh repository looks like one on the Hub.
DEFAULT_GITATTRIBUTES = "".join(
    f"{pattern} filter=lfs diff=lfs merge=lfs -text\n"
    for pattern in (
        "*.7z",
        "*.arrow",
        "*.bin",
        "*.bz2",
        "*.ckpt",
        "*.gz",
        "*.h5",
        "*.joblib",
        "*.lz4",
        "*.mds",
        "*.msgpack",
        "*.npy",
        "*.npz",
        "*.onnx",
        "*.parquet",
        "*.pickle",
        "*.pkl",
        "*.pt",
        "*.pth",
        "*.safetensors",
        "*.tar",
        "*.tflite",
        "*.wasm",
        "*.xz",
        "*.zip",
        "*.zst",
        "*tfevents*",
    )
).encode()

_REPO_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")
_YAML_BLOCK = re.compile(r"\A\ufeff?\s*---[ \t]*\r?\n(.*?)(?:\r?\n)?---[ \t]*(?:\r?\n|\Z)", re.DOTALL)
_oid_counter = itertools.count()


class HubError(Exception):
    """A request the Hub refuses: the HTTP layer turns it into a status, headers and JSON body.

    ``code`` becomes the ``X-Error-Code`` header huggingface_hub maps to its exception classes
    (RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo); ``extra`` is merged into the JSON
    body (the 409 of ``repos/create`` carries the existing repo's ``url``, for instance).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.extra = extra or {}
        self.headers = headers or {}


def git_blob_oid(data: bytes) -> str:
    """The git object id of a file, which is what the Hub reports as a regular file's ``oid``/ETag.

    huggingface_hub compares it with its own ``sha.git_hash`` to skip unchanged files, so it has to
    be the real git formula, not any hash.
    """
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


def iso_date(moment: datetime) -> str:
    """The Hub's timestamp format (milliseconds, ``Z``), which huggingface_hub's parser expects."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def now() -> datetime:
    return datetime.now(timezone.utc)


def front_matter(text: str) -> str | None:
    """The YAML block at the top of a README, or None when there is none."""
    match = _YAML_BLOCK.match(text)
    return match.group(1) if match else None


def parse_card_yaml(block: str) -> tuple[dict[str, Any] | None, str | None]:
    """Parse README front matter: (metadata, error). (None, None) when PyYAML is unavailable.

    PyYAML is not stdlib, but it is a hard dependency of huggingface_hub, so it is present wherever
    the client under test is. Without it the server skips ``cardData`` and YAML validation rather
    than guess with a home-made parser.
    """
    try:
        import yaml
    except ImportError:  # pragma: no cover - huggingface_hub depends on PyYAML
        return None, None
    try:
        data = yaml.safe_load(block)
    except yaml.YAMLError as exc:
        return None, f"Invalid YAML in README.md metadata: {exc}"
    if data is None:
        return {}, None
    if not isinstance(data, dict):
        return None, "README.md metadata must be a YAML mapping (key: value), not a " + type(data).__name__
    return data, None


def validate_path(path: Any) -> str:
    """Refuse paths git (and the Hub) cannot store, with the reason in the message."""
    if not isinstance(path, str) or not path:
        raise HubError(400, f"Invalid path in commit: {path!r}")
    parts = path.split("/")
    if path.startswith("/") or any(part in ("", ".", "..") for part in parts):
        raise HubError(400, f"Invalid path in commit: {path!r} (empty, absolute or relative segment)")
    if parts[0] == ".git":
        raise HubError(400, f"Invalid path in commit: {path!r} (inside .git)")
    return path


@dataclass
class CommitRecord:
    """A commit plus the full tree it produced."""

    commit: Commit
    files: dict[str, bytes]


@dataclass
class Repo:
    repo_type: str
    repo_id: str
    private: bool
    created_at: datetime
    object_id: str
    gated: str | bool = False
    history: list[CommitRecord] = field(default_factory=list)

    @property
    def head(self) -> CommitRecord:
        return self.history[-1]

    def resolve(self, revision: str) -> CommitRecord:
        """A revision is ``main`` or a commit id (full, or a prefix of at least 7 characters)."""
        if revision == DEFAULT_BRANCH:
            return self.head
        if re.fullmatch(r"[0-9a-f]{7,40}", revision):
            for record in reversed(self.history):
                if record.commit.oid.startswith(revision):
                    return record
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")

    def last_commit_touching(self, path: str, record: CommitRecord) -> Commit:
        """The newest commit, up to ``record``, that changed ``path`` (a file, or anything below a folder)."""

        def view(files: dict[str, bytes]) -> dict[str, bytes]:
            prefix = path + "/"
            return {p: data for p, data in files.items() if p == path or p.startswith(prefix)}

        newest = self.history.index(record)
        newer = view(record.files)
        for index in range(newest, 0, -1):
            older = view(self.history[index - 1].files)
            if older != newer:
                return self.history[index].commit
            newer = older
        return self.history[0].commit


def new_commit(
    parent: CommitRecord | None,
    files: dict[str, bytes],
    *,
    summary: str,
    description: str,
    author: str,
    added: list[str],
    deleted: list[str],
) -> CommitRecord:
    """Build a commit record; the id is unique even for two identical commits (like git's dates)."""
    moment = now()
    digest = hashlib.sha1()
    digest.update((parent.commit.oid if parent else "").encode())
    digest.update(
        f"\n{summary}\n{description}\n{author}\n{moment.isoformat()}\n{next(_oid_counter)}\n".encode()
    )
    for path in sorted(files):
        digest.update(f"{path}\0{git_blob_oid(files[path])}\n".encode())
    commit = Commit(
        oid=digest.hexdigest(),
        summary=summary,
        description=description,
        added=list(added),
        deleted=list(deleted),
        parent=parent.commit.oid if parent else None,
        author=author,
        date=moment,
    )
    return CommitRecord(commit=commit, files=files)


class Store:
    """All repositories, keyed by (repo_type, repo_id)."""

    def __init__(self) -> None:
        self.repos: dict[tuple[str, str], Repo] = {}

    def get(self, repo_type: str, repo_id: str) -> Repo | None:
        return self.repos.get((repo_type, repo_id))

    def describe(self) -> str:
        """For error messages in test helpers: which repositories exist."""
        if not self.repos:
            return "no repositories exist"
        return "existing: " + ", ".join(f"{kind} {rid}" for kind, rid in sorted(self.repos))

    def create(self, repo_type: str, namespace: str, name: str, *, private: bool, author: str) -> Repo:
        if repo_type not in REPO_TYPES:
            raise HubError(
                400, f"The loopback Hub only serves model and dataset repositories, not {repo_type!r}."
            )
        for label, value in (("namespace", namespace), ("name", name)):
            if not _REPO_NAME.match(value) or "--" in value or ".." in value or value.endswith(".git"):
                raise HubError(400, f"Invalid repository {label}: {value!r}")
        repo_id = f"{namespace}/{name}"
        if (repo_type, repo_id) in self.repos:
            raise HubError(409, f"You already created this {repo_type} repo")
        moment = now()
        repo = Repo(
            repo_type=repo_type,
            repo_id=repo_id,
            private=private,
            created_at=moment,
            object_id=hashlib.sha1(f"{repo_type}/{repo_id}/{moment.isoformat()}".encode()).hexdigest()[:24],
        )
        repo.history.append(
            new_commit(
                None,
                {".gitattributes": DEFAULT_GITATTRIBUTES},
                summary="initial commit",
                description="",
                author="system",
                added=[".gitattributes"],
                deleted=[],
            )
        )
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def delete(self, repo_type: str, repo_id: str) -> None:
        del self.repos[(repo_type, repo_id)]

    @staticmethod
    def apply_commit(
        repo: Repo,
        header: dict[str, Any],
        operations: list[tuple[str, dict[str, Any]]],
        *,
        author: str,
        decoded: dict[int, bytes],
    ) -> CommitRecord:
        """Apply every operation to a copy of the head; the repo changes only if all succeed.

        ``decoded`` maps the index of each ``file`` operation to its already-decoded content.
        The parent check comes first, like on the Hub: a stale ``parentCommit`` is refused even
        if the operations would not conflict.
        """
        parent_commit = header.get("parentCommit")
        if parent_commit is not None:
            if not isinstance(parent_commit, str) or not re.fullmatch(r"[0-9a-fA-F]{5,40}", parent_commit):
                raise HubError(400, f"Invalid parentCommit: {parent_commit!r}")
            if not repo.head.commit.oid.startswith(parent_commit.lower()):
                raise HubError(412, "A commit has happened since. Please refresh and try again.")
        summary = header.get("summary")
        if not isinstance(summary, str) or not summary.strip():
            raise HubError(400, "The commit summary (title) is required")
        description = header.get("description") or ""
        if not isinstance(description, str):
            raise HubError(400, "The commit description must be a string")

        files = dict(repo.head.files)
        added: list[str] = []
        deleted: list[str] = []
        for index, (key, value) in enumerate(operations):
            raw_path = value.get("path")
            if key == "deletedFolder" and isinstance(raw_path, str):
                raw_path = raw_path.rstrip("/")  # huggingface_hub marks folders with a trailing slash
            path = validate_path(raw_path)
            if key == "file":
                _check_no_file_dir_clash(files, path)
                files[path] = decoded[index]
                added.append(path)
            elif key == "deletedFile":
                if path not in files:
                    raise HubError(404, f"A file with this name doesn't exist: {path}", code="EntryNotFound")
                del files[path]
                deleted.append(path)
            elif key == "deletedFolder":
                folder = path
                inside = sorted(p for p in files if p.startswith(folder + "/"))
                if not inside:
                    raise HubError(
                        404, f"A folder with this name doesn't exist: {folder}", code="EntryNotFound"
                    )
                for member in inside:
                    del files[member]
                deleted.extend(inside)
            else:  # pragma: no cover - the HTTP layer only passes the keys above
                raise HubError(400, f"Unknown commit operation {key!r}")

        record = new_commit(
            repo.head,
            files,
            summary=summary,
            description=description,
            author=author,
            added=added,
            deleted=deleted,
        )
        repo.history.append(record)
        return record


def _check_no_file_dir_clash(files: dict[str, bytes], path: str) -> None:
    """Git cannot hold ``a`` as a file and ``a/b`` at once; the Hub refuses such commits."""
    if any(p.startswith(path + "/") for p in files):
        raise HubError(400, f"Cannot write file {path!r}: a folder with this name exists")
    parts = path.split("/")
    for depth in range(1, len(parts)):
        parent = "/".join(parts[:depth])
        if parent in files:
            raise HubError(400, f"Cannot write file {path!r}: {parent!r} is a file")


def tree_oid(files: dict[str, bytes], folder: str) -> str:
    """A stable id for a folder: changes exactly when something below it changes."""
    digest = hashlib.sha1(b"tree\0")
    prefix = folder + "/"
    for path in sorted(p for p in files if p.startswith(prefix)):
        digest.update(f"{path}\0{git_blob_oid(files[path])}\n".encode())
    return digest.hexdigest()


def tree_entries(files: dict[str, bytes], folder: str, *, recursive: bool) -> list[dict[str, Any]]:
    """The entries of ``GET /tree``: files and folders directly in (or, recursively, below) ``folder``.

    Raises EntryNotFound when ``folder`` is not a folder of the tree, like the Hub.
    """
    folder = folder.strip("/")
    prefix = folder + "/" if folder else ""
    below = sorted(p for p in files if p.startswith(prefix))
    if folder and not below:
        raise HubError(404, f"{folder} does not exist on the revision", code="EntryNotFound")
    folders: set[str] = set()
    entries: dict[str, dict[str, Any]] = {}
    for path in below:
        parts = path[len(prefix) :].split("/")
        if len(parts) > 1 and not recursive:
            folders.add(prefix + parts[0])
            continue
        for depth in range(1, len(parts)):
            folders.add(prefix + "/".join(parts[:depth]))
        data = files[path]
        entries[path] = {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
    for name in folders:
        entries[name] = {"type": "directory", "oid": tree_oid(files, name), "size": 0, "path": name}
    return [entries[name] for name in sorted(entries)]


def path_entry(files: dict[str, bytes], path: str) -> dict[str, Any] | None:
    """The entry of one path for ``paths-info``: a file, a folder, or None when absent."""
    path = path.strip("/")
    if path in files:
        data = files[path]
        return {"type": "file", "oid": git_blob_oid(data), "size": len(data), "path": path}
    if path and any(p.startswith(path + "/") for p in files):
        return {"type": "directory", "oid": tree_oid(files, path), "size": 0, "path": path}
    return None
