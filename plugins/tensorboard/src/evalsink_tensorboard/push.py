"""Pushing TensorBoard run folders to the Hub: the event files the repository lacks, in one commit.

lighteval's ``push_to_tensorboard`` uploaded ``{output_dir}/tb/{run}`` to the private model
repository ``{hub_results_org}/tensorboard_logs``, as ``tb/{run}/...``, with huggingface_hub's
``HFSummaryWriter`` (a background scheduler, triggered once by hand). This module makes the same
upload directly, run by run, with the Hub sink's retry rules:

1. create the repository if it is missing (a model repository, like lighteval's: the Hub shows
   the event files of a model repository in its TensorBoard tab), private unless ``public``;
2. read the head commit of ``main`` and list each run's folder of the repository at that commit
   (one paginated ``tree`` request per run folder);
3. commit, in ONE commit whose parent is that head, every local event file that the folder lacks
   or holds with other bytes (compared by git blob id, or by sha256 for files the Hub stores in
   LFS/Xet, as it does ``*tfevents*`` files). The files of earlier checkpoints that are already
   there are not uploaded again, nothing is renamed, and nothing in the repository is deleted.

Every request goes through :func:`evalsink_hub.retry.call_with_retry`; steps 2 and 3 are retried
together, so each attempt compares the local files with the repository as it is at that moment.
That makes a lost answer harmless: a commit that landed although its answer never came back
leaves nothing to upload at the next attempt, which finds its URL through the push id written in
the commit's description. A commit refused because someone else committed in between (412) is
compared again and rebuilt on the new head, up to :data:`MAX_CONFLICTS` times.

A push that still fails raises :class:`TensorBoardPushError`. A push never changes the local
files, so :func:`push_logs` can push the same run folders again later.

huggingface_hub and evalsink-hub (the optional extra ``evalsink-tensorboard[hub]``) are imported
when a pusher is constructed, never by importing this module.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import logging
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evalsink_tensorboard.config import DEFAULT_REPO_NAME, TensorBoardSinkConfig
from evalsink_tensorboard.layout import event_files, local_path, run_folder, run_names, run_parts

if TYPE_CHECKING:
    from huggingface_hub import HfApi, RepoFile

    from evalsink_hub.retry import RetryPolicy

__all__ = [
    "TensorBoardPushError",
    "TensorBoardPushResult",
    "TensorBoardPusher",
    "push_logs",
    "push_repo_id",
    "require_hub_extra",
]

logger = logging.getLogger("evalsink.tensorboard")

REPO_TYPE = "model"
MAX_CONFLICTS = 5
"""Commits refused because the repository moved on (412), before a push gives up."""
PUSH_ID_LABEL = "evalsink-push-id"
"""Written in each commit's description: how a retry recognises a commit that already landed."""

INSTALL_HUB = 'pip install "evalsink-tensorboard[hub]" (or "evalsink[hub]")'
MISSING_EXTRA = (
    "pushing TensorBoard logs to the Hub needs evalsink-hub (huggingface_hub and the Hub sink's "
    f"retry rules), which is not installed: {INSTALL_HUB}; or turn the push off with "
    "sink_config={'tensorboard': {'push': False}} / EVALSINK_TENSORBOARD__PUSH=false"
)
MISSING_TOKEN = (
    "no Hugging Face token to push the TensorBoard logs: set HF_TOKEN, log in once with "
    "`hf auth login`, or give the tensorboard sink a token (sink_config={'tensorboard': {'token': "
    "...}} or EVALSINK_TENSORBOARD__TOKEN); or turn the push off with push=False"
)
MISSING_NAMESPACE = (
    "the TensorBoard push needs to know where to push: pass hub_results_org='my-org' to the "
    "tracker (lighteval's argument), or sink_config={'tensorboard': {'org': 'my-org'}} / "
    "EVALSINK_TENSORBOARD__ORG=my-org, or name the repository with "
    "sink_config={'tensorboard': {'repo_id': 'my-org/tensorboard_logs'}} (evalsink push: --org my-org)"
)


class TensorBoardPushError(RuntimeError):
    """A push failed (after its retries). ``outputs`` lists what the sink did write (its event file)."""

    def __init__(self, message: str, outputs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.outputs = list(outputs)


@dataclass(frozen=True)
class TensorBoardPushResult:
    """Where a push landed and what it uploaded."""

    repo_id: str
    repo_url: str
    commit_url: str | None
    """The commit made by this push; None when the repository already held every file."""
    uploaded: tuple[str, ...]
    """Paths in the repository written by the commit."""
    unchanged: tuple[str, ...]
    """Paths already in the repository with the same bytes: not uploaded again."""

    @property
    def tensorboard_url(self) -> str:
        """The Hub's TensorBoard page of the repository."""
        return f"{self.repo_url}/tensorboard"

    def outputs(self) -> list[str]:
        """What ``save()``'s report shows: the repository, then the commit (if one was made)."""
        return [self.repo_url] if self.commit_url is None else [self.repo_url, self.commit_url]


def require_hub_extra() -> None:
    """Raise ImportError naming the extra to install when evalsink-hub is not importable."""
    try:
        importlib.import_module("evalsink_hub.retry")
    except ImportError as error:
        raise ImportError(MISSING_EXTRA) from error


def push_repo_id(config: TensorBoardSinkConfig, hub_results_org: str | None) -> str | None:
    """The repository the sink pushes to, or None when it does not push.

    ``push=None`` (the default) pushes when an org is known or a repository is named: lighteval
    pushed whenever ``push_to_tensorboard`` was on, and required ``hub_results_org`` for it.
    """
    org = config.org or (hub_results_org or "").strip() or None
    enabled = config.push if config.push is not None else bool(org or config.repo_id)
    if not enabled:
        return None
    if config.repo_id is not None:
        return config.repo_id
    if org is None:
        raise ValueError(MISSING_NAMESPACE)
    return f"{org}/{DEFAULT_REPO_NAME}"


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evalsink-tensorboard")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


def git_blob_id(data: bytes) -> str:
    """The git object id of a file with these bytes: what the Hub reports for a regular file."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def repo_file_matches(entry: RepoFile | None, data: bytes) -> bool:
    """Whether the repository's file ``entry`` (from a tree listing) holds exactly ``data``."""
    if entry is None:
        return False
    if entry.lfs is not None:  # stored in LFS/Xet: the git blob is a pointer, the sha256 is the file's
        return entry.lfs.size == len(data) and entry.lfs.sha256 == hashlib.sha256(data).hexdigest()
    return entry.size == len(data) and entry.blob_id == git_blob_id(data)


def _status(error: BaseException) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


LOST_ANSWER_STATUSES = frozenset({502, 504})
"""Gateway errors: the proxy in front of the Hub lost (502) or waited in vain for (504) the Hub's
answer, so the request may have been applied behind it."""


NOT_SENT_ERRORS = frozenset({"ConnectError", "ConnectTimeout", "ConnectionRefusedError"})
"""Network errors raised before a connection existed (httpx's, Python's): nothing reached the Hub."""


def answer_lost(error: BaseException) -> bool:
    """Whether a failed commit request may still have landed, so the failure message must not say
    nothing was committed: the answer never came back (a timeout, a connection dropped once the
    request was out), or a gateway answered for a Hub it did not hear from. Any other HTTP status is
    the Hub's own answer that the commit was not made; a refused connection or a local error means
    the request never reached it."""
    from evalsink_hub.retry import transient_reason

    status = _status(error)
    if status is not None:
        return status in LOST_ANSWER_STATUSES
    if type(error).__name__ in NOT_SENT_ERRORS:
        return False
    return transient_reason(error) is not None  # a timeout, a dropped connection, a garbled answer


@dataclass
class _PushState:
    """What the attempts of one push share: the head of the first one, and the last commit sent."""

    push_id: str
    base: str | None = None
    """Head of ``main`` when the push started: the search for a landed commit stops there."""
    sent: tuple[str, ...] = ()
    """Paths of the last commit request sent."""
    unanswered: bool = False
    """A commit request ended without a refusal (no answer, or a 5xx): the next attempts look for
    it in the history (a cheap check, worth making even after a 5xx)."""
    lost: bool = False
    """The last commit request got no answer (a timeout, a dropped connection, a gateway that lost
    the Hub's answer): it may have landed. After a definite answer (a 4xx, a 500 or 503) it did not."""


class TensorBoardPusher:
    """An ``HfApi`` with the Hub sink's retry rules, pushing run folders to one model repository.

    Shared by the sink (after each save) and :func:`push_logs` (later, from disk).
    """

    def __init__(self, config: TensorBoardSinkConfig, repo_id: str) -> None:
        require_hub_extra()
        from huggingface_hub import HfApi, get_token

        from evalsink_hub.naming import check_repo_id

        # an org or repo_id the Hub refuses fails here, when the tracker is built, not at the push
        check_repo_id(repo_id, "the TensorBoard repository")

        token = config.token.get_secret_value() if config.token is not None else None
        if token is None and get_token() is None:
            raise ValueError(MISSING_TOKEN)
        endpoint = config.endpoint or os.environ.get("HF_ENDPOINT") or None
        # token=None lets huggingface_hub read HF_TOKEN / the stored login at each request; the
        # token is never logged nor written anywhere (commits carry only paths and a push id)
        self.api: HfApi = HfApi(
            endpoint=endpoint.rstrip("/") if endpoint else None,
            token=token,
            library_name="evalsink-tensorboard",
            library_version=_library_version(),
        )
        self.repo_id = repo_id
        self.path_in_repo = config.path_in_repo
        self.private = not config.public
        self.policy: RetryPolicy = config.retry_policy()

    @property
    def repo_url(self) -> str:
        return f"{str(self.api.endpoint).rstrip('/')}/{self.repo_id}"

    def folder_in_repo(self, run_name: str) -> str:
        """``{path_in_repo}/{run}``: where a run's event files go in the repository."""
        return "/".join([part for part in [self.path_in_repo] if part] + run_parts(run_name))

    def push(self, root: Path, runs: Sequence[str], *, message: str) -> TensorBoardPushResult:
        """Push the event files of ``runs`` (run folders below ``root``); see the module docstring.

        Raises :class:`TensorBoardPushError` when the push fails, with what to do next, and
        FileNotFoundError when the run folders hold no event file.
        """
        files = {
            f"{self.folder_in_repo(run)}/{path.name}": path
            for run in runs
            for path in event_files(run_folder(root, run))
        }
        if not files:  # nothing to push again later either: not a push failure
            raise FileNotFoundError(
                f"no TensorBoard event files in {', '.join(str(run_folder(root, run)) for run in runs)}"
            )
        state = _PushState(push_id=uuid.uuid4().hex)
        try:
            contents = {path: local.read_bytes() for path, local in files.items()}
            folders = [self.folder_in_repo(run) for run in runs]
            result = self._push(contents, folders, message, state)
        except Exception as error:
            raise TensorBoardPushError(self._failure(root, runs, error, state)) from error
        if result.commit_url is None:
            logger.info("tensorboard: %s already holds every event file of %s", self.repo_id, ", ".join(runs))
        else:
            logger.info(
                "tensorboard: pushed %d event file(s) to %s (%s)",
                len(result.uploaded),
                self.repo_id,
                result.commit_url,
            )
        return result

    # -- steps --------------------------------------------------------------------------------
    def _push(
        self, contents: Mapping[str, bytes], folders: Sequence[str], message: str, state: _PushState
    ) -> TensorBoardPushResult:
        from evalsink_hub.retry import call_with_retry

        repo_url = call_with_retry(
            lambda: self.api.create_repo(
                self.repo_id, repo_type=REPO_TYPE, private=self.private, exist_ok=True
            ),
            self.policy,
            what=f"create the model repository {self.repo_id}",
        )
        attempt = functools.partial(self._attempt, str(repo_url), contents, folders, message, state)
        for _ in range(MAX_CONFLICTS):
            try:
                return call_with_retry(
                    attempt, self.policy, what=f"push {len(contents)} event file(s) to {self.repo_id}"
                )
            except Exception as error:
                if _status(error) != 412:
                    raise
                logger.warning(
                    "%s changed while pushing to it; comparing again on its new head", self.repo_id
                )
        raise RuntimeError(
            f"{self.repo_id} changed under each of {MAX_CONFLICTS} attempts to commit to it (other "
            "pushes to the same repository); push again later"
        )

    def _attempt(
        self,
        repo_url: str,
        contents: Mapping[str, bytes],
        folders: Sequence[str],
        message: str,
        state: _PushState,
    ) -> TensorBoardPushResult:
        """One try: compare with the repository at its head, then commit the difference on that head."""
        from huggingface_hub import CommitOperationAdd

        head = self._head()
        if state.base is None:
            state.base = head
        remote = self._remote_files(folders, head)
        changed = tuple(
            sorted(path for path, data in contents.items() if not repo_file_matches(remote.get(path), data))
        )
        if not changed:
            landed = self._find_push(repo_url, head, state) if state.unanswered else None
            uploaded = state.sent if landed is not None else ()
            return TensorBoardPushResult(
                repo_id=self.repo_id,
                repo_url=repo_url,
                commit_url=landed,
                uploaded=uploaded,
                unchanged=tuple(sorted(set(contents) - set(uploaded))),
            )
        description = (
            f"Pushed by evalsink-tensorboard {_library_version()}: {len(changed)} event file(s).\n\n"
            f"{PUSH_ID_LABEL}: {state.push_id}"
        )
        # fresh operations at each attempt: huggingface_hub marks them as used
        operations = [
            CommitOperationAdd(path_in_repo=path, path_or_fileobj=contents[path]) for path in changed
        ]
        state.sent = changed
        try:
            info = self.api.create_commit(
                self.repo_id,
                operations,
                commit_message=message,
                commit_description=description,
                repo_type=REPO_TYPE,
                parent_commit=head,
            )
        except Exception as error:
            status = _status(error)
            # a 4xx is a refusal: nothing landed. Without an answer (or with a 5xx), it may have
            state.unanswered = state.unanswered or status is None or status >= 500
            # this attempt found the earlier commits' files missing: only this one's fate is open
            state.lost = answer_lost(error)
            raise
        return TensorBoardPushResult(
            repo_id=self.repo_id,
            repo_url=repo_url,
            commit_url=str(info.commit_url),
            uploaded=changed,
            unchanged=tuple(sorted(set(contents) - set(changed))),
        )

    def _head(self) -> str:
        """The commit id at the head of ``main`` (one small request)."""
        info = self.api.model_info(self.repo_id, expand=["sha"])  # REPO_TYPE is "model"
        if not info.sha:
            raise RuntimeError(f"the Hub did not say which commit is the head of {self.repo_id}")
        return str(info.sha)

    def _remote_files(self, folders: Sequence[str], head: str) -> dict[str, RepoFile]:
        """The files directly in each of ``folders`` at commit ``head``; a missing folder has none."""
        from huggingface_hub import RepoFile
        from huggingface_hub.errors import EntryNotFoundError

        found: dict[str, RepoFile] = {}
        for folder in folders:
            try:
                entries = list(
                    self.api.list_repo_tree(self.repo_id, folder, revision=head, repo_type=REPO_TYPE)
                )
            except EntryNotFoundError:  # the run's first push: its folder does not exist yet
                continue
            found.update({entry.path: entry for entry in entries if isinstance(entry, RepoFile)})
        return found

    def _find_push(self, repo_url: str, head: str, state: _PushState) -> str | None:
        """URL of this push's commit between the push's first head and ``head``, if one landed."""
        for entry in self.api.list_repo_commits(self.repo_id, repo_type=REPO_TYPE, revision=head):
            if entry.commit_id == state.base:
                break
            if f"{PUSH_ID_LABEL}: {state.push_id}" in (entry.message or ""):
                return f"{repo_url}/commit/{entry.commit_id}"
        return None

    def _failure(self, root: Path, runs: Sequence[str], error: BaseException, state: _PushState) -> str:
        from evalsink_hub.retry import RetriesExhaustedError, describe_error

        why = str(error) if isinstance(error, RetriesExhaustedError) else describe_error(error)
        what = f"run {runs[0]!r}" if len(runs) == 1 else f"{len(runs)} runs"
        done = (
            "A commit was sent and its answer was lost, so it may have landed; pushing again "
            "uploads only what the repository still lacks."
            if state.lost
            else f"Nothing was committed to {self.repo_id}."
        )
        run_argument = f", run_name={runs[0]!r}" if len(runs) == 1 else ""
        return (
            f"push of the TensorBoard logs of {what} to {self.repo_url} failed: {why}. {done} The event "
            f"files are intact in {root}; push them again with evalsink_tensorboard.push_logs("
            f"{str(root)!r}, {self.repo_id!r}{run_argument}) and the same tensorboard options."
        )


def push_logs(
    logdir: str | os.PathLike[str],
    repo_id: str | None = None,
    *,
    run_name: str | None = None,
    config: TensorBoardSinkConfig | Mapping[str, Any] | None = None,
    hub_results_org: str | None = None,
) -> TensorBoardPushResult:
    """Push TensorBoard run folders from disk, as the tensorboard sink does after a save (same code).

    ``logdir`` is the TensorBoard root (``{output_dir}/tb``, the sink's ``logdir``). ``run_name``
    pushes one run folder below it; None pushes every folder below it that holds event files.
    ``repo_id`` defaults to the ``repo_id`` option, else ``{org}/tensorboard_logs`` with the ``org``
    option or ``hub_results_org``. ``config`` takes the sink's options (a mapping or a
    :class:`TensorBoardSinkConfig`; ``EVALSINK_TENSORBOARD__*`` variables fill the rest): token,
    endpoint, ``path_in_repo``, ``public``, retries. Files already in the repository with the same
    bytes are not uploaded again; when none is missing, no commit is made (``commit_url`` None).
    Raises :class:`TensorBoardPushError` when the push fails.
    """
    from evalsink.config import build_config

    options = build_config("tensorboard", TensorBoardSinkConfig, config)
    assert isinstance(options, TensorBoardSinkConfig)
    root = local_path(os.fspath(logdir))
    if root is None:
        raise ValueError(
            f"logdir {os.fspath(logdir)!r} is a URL; TensorBoard logs are pushed from a local folder"
        )
    if repo_id is not None and repo_id.strip().count("/") != 1:
        raise ValueError(f"{repo_id!r} is not a repository id of the form 'org/name'")
    if repo_id is not None:
        target: str | None = repo_id.strip()
    else:  # push=True: the configured repository or {org}/tensorboard_logs, else MISSING_NAMESPACE
        target = push_repo_id(options.model_copy(update={"push": True}), hub_results_org)
    assert target is not None
    runs = [run_name] if run_name is not None else run_names(root) if root.is_dir() else []
    if not runs:
        raise FileNotFoundError(f"no TensorBoard run folder with event files below {root}")
    pusher = TensorBoardPusher(options, target)
    message = (
        f"Upload TensorBoard logs of {', '.join(runs)}"
        if len(runs) <= 3
        else f"Upload TensorBoard logs of {len(runs)} runs"
    )
    return pusher.push(root, runs, message=message)
