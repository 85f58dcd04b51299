"""The Hub's HTTP API as huggingface_hub 2.4 calls it: routing, authorization, response shapes.

Request and response shapes were taken from what huggingface_hub sends and parses (hf_api.py,
_commit_api.py, file_download.py, utils/_http.py), and status codes and error headers from how
its ``hf_raise_for_status`` maps them to exceptions: ``X-Error-Code`` RepoNotFound,
RevisionNotFound, EntryNotFound and GatedRepo become the matching exception classes, so the
server must send the same codes the Hub sends for a client to react the same way.

Authorization model (simplified, see README): any bearer token is the one user ``hub.user``, who
may read every repository and, unless ``hub.strict_namespaces``, write to any namespace. Without
a token, public repositories are readable and private ones answer like missing ones (401 +
RepoNotFound), as on the Hub.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
import mimetypes
import re
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, urlencode

from .store import (
    DEFAULT_BRANCH,
    REPO_TYPES,
    URL_PREFIXES,
    CommitRecord,
    HubError,
    Repo,
    Store,
    front_matter,
    git_blob_oid,
    iso_date,
    parse_card_yaml,
    path_entry,
    tree_entries,
)

if TYPE_CHECKING:
    from .server import LoopbackHub

_API_REPO_TYPES = {"models": "model", "datasets": "dataset", "spaces": "space"}
_EXPAND_PAGE_SIZE = 50  # the Hub's page size for ``expand=true`` tree listings
_COMMIT_KEYS = ("file", "deletedFile", "deletedFolder")


@dataclass
class Request:
    """One parsed HTTP request; ``segments`` are the percent-decoded path segments."""

    method: str
    raw_path: str
    path: str
    segments: list[str]
    query: str
    headers: Message
    body: bytes
    token: str | None
    base_url: str
    params: dict[str, list[str]] = field(init=False)

    def __post_init__(self) -> None:
        self.params = parse_qs(self.query, keep_blank_values=True)

    def param(self, name: str) -> str | None:
        values = self.params.get(name)
        return values[-1] if values else None

    def flag(self, name: str) -> bool:
        return (self.param(name) or "").lower() in ("1", "true")

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HubError(400, f"Expected a JSON body: {exc}") from exc

    def json_object(self) -> dict[str, Any]:
        data = self.json()
        if not isinstance(data, dict):
            raise HubError(400, "Expected a JSON object as body")
        return data


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, payload: Any, headers: dict[str, str] | None = None) -> Response:
    """JSON with the Hub's content type; ``default=str`` because card metadata may hold dates."""
    body = json.dumps(payload, default=str).encode()
    return Response(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})


def error_response(error: HubError) -> Response:
    """The Hub's error shape: ``{"error": ...}`` plus X-Error-Code / X-Error-Message headers."""
    headers = dict(error.headers)
    if error.code:
        headers["X-Error-Code"] = error.code
    if error.message.isascii() and "\n" not in error.message:
        headers["X-Error-Message"] = error.message
    return json_response(error.status, {"error": error.message, **error.extra}, headers)


def repo_url(base_url: str, repo_type: str, repo_id: str) -> str:
    return f"{base_url}/{URL_PREFIXES[repo_type]}{repo_id}"


def handle(hub: LoopbackHub, req: Request) -> Response:
    """Answer one request. Called with the hub's lock held, so each request is atomic."""
    try:
        if req.token is not None and hub.valid_tokens is not None and req.token not in hub.valid_tokens:
            raise HubError(401, "Invalid credentials in Authorization header")
        return _dispatch(hub, req)
    except HubError as error:
        return error_response(error)


def _dispatch(hub: LoopbackHub, req: Request) -> Response:
    seg, method = req.segments, req.method
    if seg[:1] == ["api"]:
        rest = seg[1:]
        if rest == ["whoami-v2"] and method == "GET":
            return _whoami(hub, req)
        if rest == ["repos", "create"] and method == "POST":
            return _create_repo(hub, req)
        if rest == ["repos", "delete"] and method == "DELETE":
            return _delete_repo(hub, req)
        if rest == ["validate-yaml"] and method == "POST":
            return _validate_yaml(req)
        if rest == ["agent-harnesses"] and method == "GET":
            # huggingface_hub fetches this registry once per process for its user agent, unless
            # telemetry is disabled; an empty registry means "no agent detected"
            return json_response(200, {"standardEnvVars": [], "harnesses": {}})
        if len(rest) >= 3 and rest[0] in _API_REPO_TYPES:
            response = _repo_api(hub, req, _API_REPO_TYPES[rest[0]], f"{rest[1]}/{rest[2]}", rest[3:])
            if response is not None:
                return response
    elif method in ("GET", "HEAD"):
        if len(seg) >= 6 and seg[0] in ("datasets", "spaces") and seg[3] == "resolve":
            kind = "dataset" if seg[0] == "datasets" else "space"
            return _resolve(hub, req, kind, f"{seg[1]}/{seg[2]}", seg[4], "/".join(seg[5:]))
        if len(seg) >= 5 and seg[2] == "resolve":
            return _resolve(hub, req, "model", f"{seg[0]}/{seg[1]}", seg[3], "/".join(seg[4:]))
    raise HubError(
        404,
        f"LoopbackHub has no route for {method} {req.path} (not implemented, or not a Hub endpoint)",
    )


def _repo_api(hub: LoopbackHub, req: Request, kind: str, repo_id: str, tail: list[str]) -> Response | None:
    method = req.method
    if not tail and method == "GET":
        return _repo_info(hub, req, kind, repo_id, None)
    if not tail:
        return None
    action, args = tail[0], tail[1:]
    if action == "revision" and args and method == "GET":
        return _repo_info(hub, req, kind, repo_id, "/".join(args))
    if action == "settings" and not args and method == "PUT":
        return _settings(hub, req, kind, repo_id)
    if action == "refs" and not args and method == "GET":
        return _refs(hub, req, kind, repo_id)
    if action == "tree" and args and method == "GET":
        return _tree(hub, req, kind, repo_id, args[0], "/".join(args[1:]))
    if len(args) != 1:
        return None
    if action == "preupload" and method == "POST":
        return _preupload(hub, req, kind, repo_id, args[0])
    if action == "commit" and method == "POST":
        return _commit(hub, req, kind, repo_id, args[0])
    if action == "commits" and method == "GET":
        return _list_commits(hub, req, kind, repo_id, args[0])
    if action == "paths-info" and method == "POST":
        return _paths_info(hub, req, kind, repo_id, args[0])
    return None


def _refs(hub: LoopbackHub, req: Request, kind: str, repo_id: str) -> Response:
    """One branch, ``main``; no tags, converts or pull requests."""
    repo = _readable(hub, req, kind, repo_id)
    main = {
        "name": DEFAULT_BRANCH,
        "ref": f"refs/heads/{DEFAULT_BRANCH}",
        "targetCommit": repo.head.commit.oid,
    }
    refs: dict[str, Any] = {"branches": [main], "converts": [], "tags": []}
    if req.flag("include_prs"):
        refs["pullRequests"] = []
    return json_response(200, refs)


# ---------------------------------------------------------------- authorization


def _require_token(req: Request) -> str:
    if req.token is None:
        raise HubError(401, "Invalid username or password.")
    return req.token


def _readable(hub: LoopbackHub, req: Request, kind: str, repo_id: str) -> Repo:
    """A missing repo and a private one seen without a token look the same, like on the Hub."""
    repo = hub._store.get(kind, repo_id)
    if repo is None or (repo.private and req.token is None):
        status = 401 if req.token is None else 404
        raise HubError(status, "Repository not found", code="RepoNotFound")
    return repo


def _writable(hub: LoopbackHub, req: Request, kind: str, repo_id: str) -> Repo:
    if req.token is None:
        raise HubError(401, "Repository not found", code="RepoNotFound")
    repo = _readable(hub, req, kind, repo_id)
    _check_namespace(hub, repo_id.split("/", 1)[0], f"write to {kind} {repo_id}")
    return repo


def _check_namespace(hub: LoopbackHub, namespace: str, action: str) -> None:
    if hub.strict_namespaces and namespace not in (hub.user, *hub.orgs):
        raise HubError(
            403, f"You don't have the rights to {action}: {hub.user} is not a member of {namespace}"
        )


def _branch(revision: str) -> None:
    """Writes go to a branch, and the loopback Hub has exactly one."""
    if revision != DEFAULT_BRANCH:
        raise HubError(404, f"Invalid rev id: {revision}", code="RevisionNotFound")


def _no_pull_requests(req: Request) -> None:
    if req.flag("create_pr"):
        raise HubError(400, "LoopbackHub does not support pull requests (create_pr=1)")


# ---------------------------------------------------------------- account and repositories


def _whoami(hub: LoopbackHub, req: Request) -> Response:
    _require_token(req)

    def object_id(name: str) -> str:
        return hashlib.sha1(name.encode()).hexdigest()[:24]

    return json_response(
        200,
        {
            "type": "user",
            "id": object_id(hub.user),
            "name": hub.user,
            "fullname": "Evalsink Tester",
            "email": f"{hub.user}@example.invalid",
            "emailVerified": True,
            "canPay": False,
            "isPro": False,
            "periodEnd": None,
            "avatarUrl": "",
            "orgs": [
                {
                    "type": "org",
                    "name": org,
                    "fullname": org,
                    "id": object_id(org),
                    "roleInOrg": "write",
                    "isEnterprise": False,
                }
                for org in hub.orgs
            ],
            "auth": {"type": "access_token", "accessToken": {"displayName": "loopback", "role": "write"}},
        },
    )


def _private_flag(body: dict[str, Any]) -> bool | None:
    """huggingface_hub 2.x sends ``visibility``; older clients sent ``private``. Accept both."""
    visibility = body.get("visibility")
    if visibility is not None:
        if visibility not in ("public", "private"):
            raise HubError(400, f"Invalid visibility {visibility!r}: expected 'public' or 'private'")
        return bool(visibility == "private")
    private = body.get("private")
    if private is None:
        return None
    if not isinstance(private, bool):
        raise HubError(400, f"Invalid private flag {private!r}: expected a boolean")
    return private


def _create_repo(hub: LoopbackHub, req: Request) -> Response:
    _require_token(req)
    body = req.json_object()
    name, namespace = body.get("name"), body.get("organization") or hub.user
    kind = body.get("type") or "model"
    if not isinstance(name, str) or not isinstance(namespace, str):
        raise HubError(400, "Fields 'name' (and optional 'organization') must be strings")
    if kind not in REPO_TYPES:
        raise HubError(400, f"The loopback Hub only serves model and dataset repositories, not {kind!r}.")
    _check_namespace(hub, namespace, f"create a {kind} under the namespace {namespace!r}")
    repo_id = f"{namespace}/{name}"
    url = repo_url(req.base_url, kind, repo_id)
    try:
        repo = hub._store.create(kind, namespace, name, private=bool(_private_flag(body)), author=hub.user)
    except HubError as error:
        if error.status == 409:
            error.extra["url"] = url  # huggingface_hub reads it when exist_ok=True
        raise
    return json_response(200, {"url": url, "name": repo_id, "id": repo.object_id})


def _delete_repo(hub: LoopbackHub, req: Request) -> Response:
    _require_token(req)
    body = req.json_object()
    name, namespace = body.get("name"), body.get("organization") or hub.user
    kind = body.get("type") or "model"
    repo_id = f"{namespace}/{name}"
    _writable(hub, req, kind, repo_id)
    hub._store.delete(kind, repo_id)
    return json_response(200, {})


def _settings(hub: LoopbackHub, req: Request, kind: str, repo_id: str) -> Response:
    repo = _writable(hub, req, kind, repo_id)
    body = req.json_object()
    private = _private_flag(body)
    gated: str | bool | None = None
    if "gated" in body:
        value = body["gated"]
        if not (value is False or value in ("auto", "manual")):
            raise HubError(400, f"Invalid gated value {value!r}: expected 'auto', 'manual' or false")
        gated = value
    if private is None and gated is None:
        raise HubError(400, "Nothing to update: expected 'gated' and/or 'visibility'")
    if private is not None:
        repo.private = private
    if gated is not None:
        repo.gated = gated
    return json_response(200, {})


def _card_data(record: CommitRecord) -> dict[str, Any] | None:
    readme = record.files.get("README.md")
    if readme is None:
        return None
    block = front_matter(readme.decode("utf-8", errors="replace"))
    if block is None:
        return None
    data, _error = parse_card_yaml(block)
    return data


def _repo_info(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str | None) -> Response:
    repo = _readable(hub, req, kind, repo_id)
    record = repo.resolve(revision or DEFAULT_BRANCH)
    blobs = req.flag("blobs")
    siblings: list[dict[str, Any]] = []
    for path in sorted(record.files):
        sibling: dict[str, Any] = {"rfilename": path}
        if blobs:
            sibling["size"] = len(record.files[path])
            sibling["blobId"] = git_blob_oid(record.files[path])
        siblings.append(sibling)
    assert record.commit.date is not None
    info: dict[str, Any] = {
        "_id": repo.object_id,
        "id": repo.repo_id,
        "author": repo.repo_id.split("/")[0],
        "sha": record.commit.oid,
        "lastModified": iso_date(record.commit.date),
        "createdAt": iso_date(repo.created_at),
        "private": repo.private,
        "gated": repo.gated,
        "disabled": False,
        "downloads": 0,
        "likes": 0,
        "tags": [],
        "siblings": siblings,
        "usedStorage": sum(len(data) for data in record.files.values()),
    }
    card_data = _card_data(record)
    if card_data is not None:
        info["cardData"] = card_data
    expand = req.params.get("expand", []) + req.params.get("expand[]", [])
    if expand:  # like the Hub: only the requested properties (plus the ids)
        info = {key: value for key, value in info.items() if key in ("_id", "id", *expand)}
    return json_response(200, info)


# ---------------------------------------------------------------- trees and history


def _last_commit(repo: Repo, record: CommitRecord, path: str) -> dict[str, Any]:
    commit = repo.last_commit_touching(path, record)
    assert commit.date is not None
    return {"id": commit.oid, "title": commit.summary, "date": iso_date(commit.date)}


def _tree(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str, folder: str) -> Response:
    repo = _readable(hub, req, kind, repo_id)
    record = repo.resolve(revision)
    entries = tree_entries(record.files, folder, recursive=req.flag("recursive"))
    expand = req.flag("expand")
    page_size = max(1, hub.tree_page_size)
    if expand:
        page_size = min(page_size, _EXPAND_PAGE_SIZE)
    cursor_text = req.param("cursor") or "0"
    if not cursor_text.isdigit():
        raise HubError(400, f"Invalid cursor {cursor_text!r}")
    cursor = int(cursor_text)
    page = entries[cursor : cursor + page_size]
    if expand:
        for entry in page:
            entry["lastCommit"] = _last_commit(repo, record, entry["path"])
    headers: dict[str, str] = {}
    if cursor + page_size < len(entries):
        params = {key: values[-1] for key, values in req.params.items()}
        params["cursor"] = str(cursor + page_size)
        headers["Link"] = f'<{req.base_url}{req.raw_path}?{urlencode(params)}>; rel="next"'
    return json_response(200, page, headers)


def _paths_info(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str) -> Response:
    repo = _readable(hub, req, kind, repo_id)
    record = repo.resolve(revision)
    content_type = req.headers.get("Content-Type", "")
    if "json" in content_type:
        body = req.json_object()
        paths, expand = body.get("paths", []), bool(body.get("expand"))
    else:
        form = parse_qs(req.body.decode(), keep_blank_values=True)
        paths, expand = form.get("paths", []), form.get("expand", ["false"])[-1].lower() == "true"
    if isinstance(paths, str):
        paths = [paths]
    entries = [entry for path in paths if (entry := path_entry(record.files, str(path))) is not None]
    if expand:
        for entry in entries:
            entry["lastCommit"] = _last_commit(repo, record, entry["path"])
    return json_response(200, entries)


def _list_commits(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str) -> Response:
    repo = _readable(hub, req, kind, repo_id)
    record = repo.resolve(revision)
    formatted = "formatted" in req.params.get("expand[]", []) + req.params.get("expand", [])
    items = []
    for entry in reversed(repo.history[: repo.history.index(record) + 1]):
        commit = entry.commit
        assert commit.date is not None
        item: dict[str, Any] = {
            "id": commit.oid,
            "title": commit.summary,
            "message": commit.description,
            "authors": [{"user": commit.author, "avatar": None}],
            "date": iso_date(commit.date),
        }
        if formatted:
            item["formatted"] = {
                "title": html.escape(commit.summary),
                "message": html.escape(commit.description),
            }
        items.append(item)
    return json_response(200, items)


# ---------------------------------------------------------------- uploads


def _preupload(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str) -> Response:
    """Every file is "regular": the client then sends it inline, base64, in the commit.

    ``oid`` is the git id of the file already at that path, which lets huggingface_hub skip
    unchanged files exactly as it does against the Hub.
    """
    repo = _writable(hub, req, kind, repo_id)
    _branch(revision)
    _no_pull_requests(req)
    files = req.json_object().get("files")
    if not isinstance(files, list) or not all(
        isinstance(f, dict) and isinstance(f.get("path"), str) for f in files
    ):
        raise HubError(400, "Expected {'files': [{'path', 'sample', 'size'}, ...]}")
    head = repo.head.files
    answer = [
        {
            "path": f["path"],
            "uploadMode": "regular",
            "shouldIgnore": False,
            "oid": git_blob_oid(head[f["path"]]) if f["path"] in head else None,
        }
        for f in files
    ]
    return json_response(200, {"files": answer})


def _parse_ndjson(body: bytes) -> tuple[dict[str, Any], list[tuple[str, dict[str, Any]]], dict[int, bytes]]:
    header: dict[str, Any] | None = None
    operations: list[tuple[str, dict[str, Any]]] = []
    decoded: dict[int, bytes] = {}
    for number, line in enumerate(body.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise HubError(400, f"Malformed commit payload, line {number} is not JSON: {exc}") from exc
        key = item.get("key") if isinstance(item, dict) else None
        value = item.get("value") if isinstance(item, dict) else None
        if not isinstance(value, dict):
            raise HubError(
                400, f"Malformed commit payload, line {number}: expected {{'key', 'value': {{...}}}}"
            )
        if key == "header":
            if header is not None or operations:
                raise HubError(
                    400, f"Malformed commit payload, line {number}: the header must come first, once"
                )
            header = value
        elif key == "lfsFile":
            raise HubError(
                400,
                f"LoopbackHub does not store LFS files (lfsFile {value.get('path')!r}): its preupload "
                "answers 'regular' for every file, so the client should have sent the content inline",
            )
        elif key in _COMMIT_KEYS:
            if header is None:
                raise HubError(400, f"Malformed commit payload, line {number}: the header must come first")
            if key == "file":
                if value.get("encoding") != "base64" or not isinstance(value.get("content"), str):
                    raise HubError(400, f"Malformed commit payload, line {number}: expected base64 content")
                try:
                    decoded[len(operations)] = base64.b64decode(value["content"], validate=True)
                except (binascii.Error, ValueError) as exc:
                    raise HubError(
                        400, f"Malformed commit payload, line {number}: bad base64: {exc}"
                    ) from exc
            operations.append((key, value))
        else:
            raise HubError(400, f"Malformed commit payload, line {number}: unknown key {key!r}")
    if header is None:
        raise HubError(400, "Malformed commit payload: no header line")
    return header, operations, decoded


def _commit(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str) -> Response:
    repo = _writable(hub, req, kind, repo_id)
    _branch(revision)
    _no_pull_requests(req)
    header, operations, decoded = _parse_ndjson(req.body)
    record = Store.apply_commit(repo, header, operations, author=hub.user, decoded=decoded)
    oid = record.commit.oid
    return json_response(
        200,
        {
            "success": True,
            "commitOid": oid,
            "commitUrl": f"{repo_url(req.base_url, kind, repo_id)}/commit/{oid}",
            "hookOutput": "",
        },
    )


def _validate_yaml(req: Request) -> Response:
    """Real check of the README front matter: it must parse as YAML and be a mapping."""
    content = req.json_object().get("content")
    if not isinstance(content, str):
        raise HubError(400, "Expected {'content': <README text>, 'repoType': ...}")
    errors: list[dict[str, str]] = []
    block = front_matter(content)
    if block is not None:
        _data, error = parse_card_yaml(block)
        if error is not None:
            errors.append({"message": error})
    if not errors:
        return json_response(200, {"errors": [], "warnings": []})
    if "text/plain" in req.headers.get("Accept", ""):  # RepoCard.validate asks for text
        text = "\n".join(e["message"] for e in errors)
        return Response(400, text.encode(), {"Content-Type": "text/plain; charset=utf-8"})
    return json_response(400, {"errors": errors, "warnings": []})


# ---------------------------------------------------------------- downloads

_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


def _resolve(hub: LoopbackHub, req: Request, kind: str, repo_id: str, revision: str, path: str) -> Response:
    repo = _readable(hub, req, kind, repo_id)
    if repo.gated and req.token is None:
        raise HubError(
            401,
            f"Access to {kind} {repo_id} is restricted. You must have access to it and be authenticated "
            "to access it. Please log in.",
            code="GatedRepo",
        )
    record = repo.resolve(revision)
    commit_header = {"X-Repo-Commit": record.commit.oid}
    data = record.files.get(path)
    if data is None:
        raise HubError(404, "Entry not found", code="EntryNotFound", headers=commit_header)
    content_type = mimetypes.guess_type(path)[0]
    if content_type is None:
        content_type = (
            "text/plain" if path.endswith((".md", ".jsonl", ".yaml", ".yml")) else "application/octet-stream"
        )
    if content_type.startswith("text/") or content_type == "application/json":
        content_type += "; charset=utf-8"
    name = path.rsplit("/", 1)[-1]
    headers = {
        **commit_header,
        "ETag": f'"{git_blob_oid(data)}"',
        "Content-Type": content_type,
        "Accept-Ranges": "bytes",
        "Content-Disposition": f"inline; filename*=UTF-8''{quote(name)}",
    }
    status = 200
    range_header = req.headers.get("Range")
    if range_header:
        match = _RANGE.match(range_header.strip())
        size = len(data)
        start, end = -1, -1
        if match and (match.group(1) or match.group(2)):
            if match.group(1):
                start = int(match.group(1))
                end = min(int(match.group(2)), size - 1) if match.group(2) else size - 1
            else:  # suffix range: the last N bytes
                start, end = max(0, size - int(match.group(2))), size - 1
        if start < 0 or start >= size or end < start:
            raise HubError(
                416, f"Range not satisfiable: {range_header}", headers={"Content-Range": f"bytes */{size}"}
            )
        data = data[start : end + 1]
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        status = 206
    return Response(status, data, headers)
