"""Pushing a saved run to the Hub: one commit with every file and the regenerated card.

A push of run ``date_id`` of a model, from the local sink's files (:mod:`evalsink_hub.local`):

1. create the details repository if it is missing (private unless public; gated if asked);
2. list its files once (one paginated ``tree`` request, never one request per file);
3. build README.md from that list plus the files being added (:mod:`evalsink_hub.card`); the
   card shows the newest run's results, downloaded only when that run is not the one pushed;
4. commit ``results_{date_id}.json``, ``results_{date_id}.parquet``, every
   ``{date_id}/details_{task}_{date_id}.parquet`` and README.md together, in ONE commit.

With ``results_repo_id`` the two results files go to that repository instead (as
``{model}/results_{date_id}.*``, one commit, before the details one).

Every Hub request goes through :func:`evalsink_hub.retry.call_with_retry`. A push that still
fails raises :class:`HubPushError`, which says what was and was not committed and how to push
again: nothing on disk is changed by a push, so :func:`push_run` re-does it from the same files.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from evalsink.paths import model_path, task_file_part
from evalsink.storage import OutputDir
from evalsink_hub.card import LatestResults, build_card
from evalsink_hub.config import HubSinkConfig
from evalsink_hub.local import LocalRun, find_local_run, results_parquet
from evalsink_hub.naming import (
    RepoFiles,
    check_namespace,
    details_path,
    details_repo_id,
    details_repo_name,
    lighteval_repo_name,
    name_problem,
    parse_repo_files,
    results_json_path,
    results_parquet_path,
)
from evalsink_hub.retry import RetriesExhaustedError, call_with_retry, describe_error

if TYPE_CHECKING:
    from huggingface_hub import HfApi

__all__ = [
    "HubPushError",
    "HubPusher",
    "PushResult",
    "details_namespace",
    "push_run",
    "recreate_metadata_card",
]

logger = logging.getLogger("evalsink.hub")

T = TypeVar("T")
REPO_TYPE = "dataset"
CARD_PATH = "README.md"
PUSH_ID_LABEL = "evalsink-push-id"
"""Written in each commit's description: how a retried commit recognises that it already landed."""
MAX_CONFLICTS = 5
"""Commits refused because the repository moved on (412), before a push gives up."""

Content = str | bytes
"""A file to upload: a local path, or the bytes."""


class HubPushError(RuntimeError):
    """A push failed (after its retries). ``outputs`` lists what was committed before the failure."""

    def __init__(self, message: str, outputs: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.outputs = list(outputs)


@dataclass(frozen=True)
class PushResult:
    """Where a push landed."""

    repo_id: str
    repo_url: str
    commit_url: str
    paths: tuple[str, ...]
    """Paths committed to the details repository, README.md included."""
    results_repo_id: str | None = None
    results_commit_url: str | None = None

    def outputs(self) -> list[str]:
        """What ``save()``'s report shows: the repository, then each commit."""
        urls = [self.repo_url, self.commit_url]
        if self.results_commit_url is not None:
            urls.append(self.results_commit_url)
        return urls


def _library_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evalsink-hub")
    except PackageNotFoundError:  # a source tree that was never installed
        return "0+unknown"


MISSING_TOKEN = (
    "no Hugging Face token: set HF_TOKEN, log in once with `hf auth login`, or give the hub sink "
    "a token (sink_config={'hub': {'token': ...}} or EVALSINK_HUB__TOKEN)"
)
MISSING_NAMESPACE = (
    "the hub sink needs to know where to push: pass hub_results_org='my-org' to the tracker "
    "(lighteval's argument), or sink_config={'hub': {'org': 'my-org'}} / EVALSINK_HUB__ORG=my-org, "
    "or name the repository with sink_config={'hub': {'repo_id': 'my-org/my-details'}} "
    "(evalsink push: --org my-org)"
)


def details_namespace(config: HubSinkConfig, org: str | None, *, check: bool = True) -> str | None:
    """The org of the details repository (the ``org`` option, else the tracker's
    ``hub_results_org``), checked when it names the repository: a namespace the Hub refuses fails
    when the tracker is built, not at the push after the evaluation. ``check=False`` for pushes
    given their repository (``push_results_to_hub(repo_id, ...)``): an org they never use must not
    refuse them; a details repository built from it later is still checked (``details_repo_id``)."""
    namespace = config.org or (org.strip() if org else None) or None
    if check and namespace is not None and config.repo_id is None:
        check_namespace(namespace, "hub_results_org" if config.org is None else "the hub sink's org")
    return namespace


class HubPusher:
    """An ``HfApi`` with evalsink's retry rules, naming and card; shared by the sink and push_run."""

    def __init__(
        self, config: HubSinkConfig, *, org: str | None = None, public: bool = False, check_org: bool = True
    ) -> None:
        from huggingface_hub import HfApi, get_token

        self.config = config
        self.org = details_namespace(config, org, check=check_org)
        self.public = config.public if config.public is not None else public
        token = config.token.get_secret_value() if config.token is not None else None
        if token is None and get_token() is None:
            raise ValueError(MISSING_TOKEN)
        endpoint = config.endpoint or os.environ.get("HF_ENDPOINT") or None
        # token=None lets huggingface_hub read HF_TOKEN / the stored login at each request (a
        # refreshed OAuth login keeps working); the token is never logged nor written anywhere
        self.api: HfApi = HfApi(
            endpoint=endpoint.rstrip("/") if endpoint else None,
            token=token,
            library_name="evalsink",
            library_version=_library_version(),
        )
        self.policy = config.retry_policy()

    @property
    def endpoint(self) -> str:
        return str(self.api.endpoint)

    def repo_url(self, repo_id: str) -> str:
        return f"{self.endpoint}/datasets/{repo_id}"

    def file_url(self, repo_id: str, path: str) -> str:
        return f"{self.repo_url(repo_id)}/blob/main/{quote(path)}"

    def details_repo_id(self, model_name: str | None) -> str:
        """``repo_id`` when configured, else lighteval's ``{org}/details_{model}[_private]``."""
        if self.config.repo_id is not None:
            return self.config.repo_id
        if self.org is None:
            raise ValueError(MISSING_NAMESPACE)
        if not model_name:
            raise ValueError(
                "the run has no model name to name the details repository after: log it with "
                "general_config_logger.log_model_info(model_name=...) or give the hub sink a repo_id"
            )
        return details_repo_id(self.org, model_name, self.public)

    def renamed_repo_note(self, model_name: str | None) -> str | None:
        """What to tell the user when lighteval's repository name for ``model_name`` is one the Hub
        refuses, so the details go to another name (:func:`~evalsink_hub.naming.details_repo_name`):
        whoever looks for lighteval's name would not find them."""
        if self.config.repo_id is not None or self.org is None or not model_name:
            return None
        refused = lighteval_repo_name(model_name, self.public)
        used = details_repo_name(model_name, self.public)
        if used == refused:
            return None
        return (
            f"model name {model_name!r} gives lighteval's repository name {refused!r}, which the Hub "
            f"refuses (it {name_problem(refused)}); the details go to {self.org}/{used} instead"
        )

    # -- pushes -------------------------------------------------------------------------------
    def push(self, run: LocalRun, *, expected_tasks: Sequence[str] | None = None) -> PushResult:
        """Push a saved run (see the module docstring); raise :class:`HubPushError` on failure.

        ``expected_tasks``: the tasks whose details should be on disk. Those that are not (the
        local sink failed for them) are reported by a :class:`HubPushError` raised after the
        push of everything else succeeded.
        """
        repo_id = self.details_repo_id(run.model_name)
        model = run.model_name or "unknown-model"
        message = self.config.commit_message.format(model_name=model, date_id=run.date_id)
        results_repo_id = self.config.results_repo_id
        results_commit: str | None = None
        try:
            results_json = run.results_bytes()
            results = json.loads(results_json)
            results_files: dict[str, Content] = {
                results_json_path(run.date_id): results_json,
                results_parquet_path(run.date_id): results_parquet(results_json),
            }
            if results_repo_id is not None:  # results first: a details problem never costs them
                prefix = f"{model_path(run.model_name)}/"
                self._ensure_repo(results_repo_id, private=None)
                results_commit = self._publish(
                    results_repo_id, {prefix + path: data for path, data in results_files.items()}, message
                )
                link = self.file_url(results_repo_id, prefix + results_json_path(run.date_id))
                files: dict[str, Content] = {}
            else:
                link = self.file_url(repo_id, results_json_path(run.date_id))
                files = dict(results_files)
            for part, local in sorted(run.details.items()):
                files[details_path(part, run.date_id)] = local.content()
            known = {run.date_id: LatestResults(run.date_id, _results_section(results), link, model)}
            repo_url = self._ensure_repo(repo_id, private=None)
            commit_url = self._publish(repo_id, files, message, card=_Card(model, known))
        except Exception as error:
            raise HubPushError(
                self._failure(run, repo_id, error, results_commit),
                outputs=[results_commit] if results_commit else [],
            ) from error
        result = PushResult(
            repo_id=repo_id,
            repo_url=repo_url,
            commit_url=commit_url,
            paths=(*sorted(files), CARD_PATH),
            results_repo_id=results_repo_id,
            results_commit_url=results_commit,
        )
        missing = sorted(task for task in expected_tasks or () if task_file_part(task) not in run.details)
        if missing:
            raise HubPushError(
                f"pushed run {run.date_id} to {repo_id} ({result.commit_url}), but the details of "
                f"{len(missing)} task(s) were not on disk and were not pushed: {', '.join(missing)} "
                f"(looked in the folder of {run.results.display}; if the local sink has a "
                "details_path_template, give the hub sink the same one)",
                outputs=result.outputs(),
            )
        return result

    def upload(
        self,
        repo_id: str,
        files: Mapping[str, Content],
        *,
        message: str,
        private: bool | None = None,
        update_card: bool = False,
        model_name: str | None = None,
    ) -> PushResult:
        """Commit ``files`` (path in repo -> content) to ``repo_id``, creating it if missing;
        with ``update_card``, README.md is regenerated in the same commit."""
        repo_url = self._ensure_repo(repo_id, private=private)
        card = _Card(model_name, {}) if update_card else None
        commit_url = self._publish(repo_id, dict(files), message, card=card)
        paths = (*sorted(files), CARD_PATH) if update_card else tuple(sorted(files))
        return PushResult(repo_id=repo_id, repo_url=repo_url, commit_url=commit_url, paths=paths)

    def recreate_card(self, repo_id: str, model_name: str | None = None) -> PushResult:
        """Regenerate README.md of an existing details repository from its files, in one commit.

        The card names the model of the newest results file, else ``model_name``.
        """
        commit_url = self._publish(repo_id, {}, "Update the dataset card", card=_Card(model_name, {}, True))
        return PushResult(
            repo_id=repo_id, repo_url=self.repo_url(repo_id), commit_url=commit_url, paths=(CARD_PATH,)
        )

    # -- steps --------------------------------------------------------------------------------
    def _call(self, what: str, call: Callable[[], T]) -> T:
        return call_with_retry(call, self.policy, what=what)

    def _ensure_repo(self, repo_id: str, *, private: bool | None) -> str:
        private = (not self.public) if private is None else private
        url = self._call(
            f"create the dataset repository {repo_id}",
            lambda: self.api.create_repo(repo_id, repo_type=REPO_TYPE, private=private, exist_ok=True),
        )
        gated = self.config.gated
        if gated is not None:
            self._call(
                f"make {repo_id} gated",
                lambda: self.api.update_repo_settings(repo_id, gated=gated, repo_type=REPO_TYPE),
            )
        return str(url)

    def _head(self, repo_id: str) -> str:
        """The commit id at the head of ``main`` (one small request)."""
        info = self.api.dataset_info(repo_id, expand=["sha"])
        if not info.sha:
            raise RuntimeError(f"the Hub did not say which commit is the head of {repo_id}")
        return str(info.sha)

    def _publish(
        self, repo_id: str, files: Mapping[str, Content], message: str, *, card: _Card | None = None
    ) -> str:
        """Commit ``files`` (and the card built from the repository's files) on top of the head
        they were built from; the commit URL.

        The commit names its parent, so a commit made by someone else in between is never
        overwritten by a card that does not know its files: the Hub refuses ours (412) and the
        card is rebuilt from the new head, up to :data:`MAX_CONFLICTS` times.
        """
        push_id = uuid.uuid4().hex
        previous: str | None = None
        for _ in range(MAX_CONFLICTS):
            head = self._call(f"read the head commit of {repo_id}", lambda: self._head(repo_id))
            if previous is not None:  # a refused retry may follow our own commit, landed late
                landed = self._call(
                    f"read the history of {repo_id}",
                    functools.partial(self._find_push, repo_id, head, previous, push_id),
                )
                if landed is not None:
                    return landed
            previous = head
            payload = dict(files)
            if card is not None:
                payload[CARD_PATH] = self._card(repo_id, head, files, card).encode("utf-8")
            try:
                return self._commit(repo_id, payload, message, parent=head, push_id=push_id)
            except Exception as error:
                if not isinstance(error, _RepositoryChangedError) and _status_of(error) != 412:
                    raise
                logger.warning(
                    "%s changed while pushing to it; rebuilding the commit on the new head", repo_id
                )
        raise RuntimeError(
            f"{repo_id} changed under each of {MAX_CONFLICTS} attempts to commit to it (other "
            "pushes to the same repository); push again later"
        )

    def _card(self, repo_id: str, head: str, files: Mapping[str, Content], card: _Card) -> str:
        listing = self._call(
            f"list the files of {repo_id}",
            lambda: self.api.list_repo_files(repo_id, repo_type=REPO_TYPE, revision=head),
        )
        found = parse_repo_files([*listing, *files])
        latest = self._latest_results(repo_id, head, found, card.known)
        name = (latest.model_name if latest else None) if card.prefer_logged_model else None
        return build_card(repo_id, name or _model_name(latest, card.model_name, repo_id), found, latest)

    def _commit(
        self, repo_id: str, files: Mapping[str, Content], message: str, *, parent: str, push_id: str
    ) -> str:
        """One commit of ``files`` on ``parent``, retried; its URL.

        A commit whose answer was lost (a timeout, a dropped connection) may have been applied:
        before each retry, the commits above ``parent`` are searched for this push's id (in the
        description), so a retry never commits the same files twice.
        """
        from huggingface_hub import CommitOperationAdd

        description = (
            f"Pushed by evalsink-hub {_library_version()}: {len(files)} file(s).\n\n"
            f"{PUSH_ID_LABEL}: {push_id}"
        )
        attempts = 0

        def commit() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1:
                head = self._head(repo_id)
                if head != parent:
                    landed = self._find_push(repo_id, head, parent, push_id)
                    if landed is None:
                        raise _RepositoryChangedError(repo_id)
                    return landed
            # fresh operations at each attempt: huggingface_hub marks them as used
            operations = [
                CommitOperationAdd(path_in_repo=path, path_or_fileobj=data) for path, data in files.items()
            ]
            info = self.api.create_commit(
                repo_id,
                operations,
                commit_message=message,
                commit_description=description,
                repo_type=REPO_TYPE,
                parent_commit=parent,
            )
            return str(info.commit_url)

        return self._call(f"commit {len(files)} file(s) to {repo_id}", commit)

    def _find_push(self, repo_id: str, head: str, parent: str, push_id: str) -> str | None:
        """URL of the commit between ``parent`` and ``head`` that carries ``push_id``, if any."""
        for entry in self.api.list_repo_commits(repo_id, repo_type=REPO_TYPE, revision=head):
            if entry.commit_id == parent:
                break
            if f"{PUSH_ID_LABEL}: {push_id}" in (entry.message or ""):
                return f"{self.repo_url(repo_id)}/commit/{entry.commit_id}"
        return None

    def _latest_results(
        self, repo_id: str, head: str, found: RepoFiles, known: Mapping[str, LatestResults]
    ) -> LatestResults | None:
        """The newest run's results: from ``known`` (being pushed), else downloaded (one file)."""
        date_id = max({*found.results_json, *known}, default=None)
        if date_id is None:
            return None
        if date_id in known:
            return known[date_id]
        path = found.results_json[date_id]
        with tempfile.TemporaryDirectory(prefix="evalsink-hub-") as folder:
            local = self._call(
                f"download {path} from {repo_id}",
                lambda: self.api.hf_hub_download(
                    repo_id, path, repo_type=REPO_TYPE, revision=head, local_dir=folder
                ),
            )
            data = json.loads(Path(local).read_bytes())
        link = self.file_url(repo_id, path)
        return LatestResults(date_id, _results_section(data), link, _logged_model(data))

    def _failure(self, run: LocalRun, repo_id: str, error: BaseException, results_commit: str | None) -> str:
        done = (
            f"The results were committed to {self.config.results_repo_id} ({results_commit}); the details "
            f"repository {repo_id} was not changed."
            if results_commit is not None
            else f"Nothing was committed to {repo_id}."
        )
        why = str(error) if isinstance(error, RetriesExhaustedError) else describe_error(error)
        return (
            f"push of run {run.date_id} of {run.model_name!r} to {self.repo_url(repo_id)} failed: "
            f"{why}. {done} The local files are intact ({run.results.display}); push "
            f"them again with evalsink_hub.push_run({run.output.url!r}, {run.model_name!r}, "
            f"date_id={run.date_id!r}) and the same hub options."
        )


@dataclass(frozen=True)
class _Card:
    """What a commit's README.md is built from, besides the repository's files."""

    model_name: str | None
    known: Mapping[str, LatestResults]
    """Results of runs being pushed (date_id -> results), so they are not downloaded again."""
    prefer_logged_model: bool = False
    """Name the model of the newest results file rather than ``model_name`` (a rebuilt card)."""


class _RepositoryChangedError(Exception):
    """Someone else committed between our read of the head and our (retried) commit."""


def _status_of(error: BaseException) -> int | None:
    status = getattr(getattr(error, "response", None), "status_code", None)
    return status if isinstance(status, int) else None


def _results_section(data: Any) -> dict[str, Any]:
    section = data.get("results") if isinstance(data, dict) else None
    return section if isinstance(section, dict) else {}


def _logged_model(data: Any) -> str | None:
    general = data.get("config_general") if isinstance(data, dict) else None
    name = general.get("model_name") if isinstance(general, dict) else None
    return name if isinstance(name, str) and name else None


def _model_name(latest: LatestResults | None, model_name: str | None, repo_id: str) -> str:
    """The model the card is about: given, else the newest results', else the repository's name."""
    return model_name or (latest.model_name if latest else None) or repo_id.split("/", 1)[-1]


def _pusher(config: HubSinkConfig | Mapping[str, Any] | None, org: str | None, public: bool) -> HubPusher:
    from evalsink.config import build_config

    model = build_config("hub", HubSinkConfig, config)  # EVALSINK_HUB__* fill what is not given
    assert isinstance(model, HubSinkConfig)
    return HubPusher(model, org=org, public=public)


def push_run(
    output_dir: str | os.PathLike[str] | OutputDir,
    model_name: str | None,
    date_id: str | None = None,
    *,
    config: HubSinkConfig | Mapping[str, Any] | None = None,
    hub_results_org: str | None = None,
    public: bool = False,
    results_path_template: str | None = None,
) -> PushResult:
    """Push a saved run from disk, as the hub sink does at ``save()`` (the same code path).

    ``date_id`` None (or ``"latest"``) pushes the newest saved run of ``model_name``. ``config``
    takes the hub sink's options (a mapping or a :class:`HubSinkConfig`; ``EVALSINK_HUB__*``
    variables fill the rest); ``hub_results_org``, ``public`` and ``results_path_template`` are the
    tracker's arguments of the same name. Raises :class:`HubPushError` when the push fails.
    """
    pusher = _pusher(config, hub_results_org, public)
    run = find_local_run(
        output_dir,
        model_name,
        date_id,
        results_path_template=results_path_template,
        details_path_template=pusher.config.details_path_template,
    )
    return pusher.push(run)


def recreate_metadata_card(
    repo_id: str,
    *,
    config: HubSinkConfig | Mapping[str, Any] | None = None,
    model_name: str | None = None,
) -> PushResult:
    """Regenerate the README.md of details repository ``repo_id`` from the files it holds."""
    return _pusher(config, None, False).recreate_card(repo_id, model_name)
