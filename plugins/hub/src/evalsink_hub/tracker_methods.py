"""lighteval's three Hub methods of ``EvaluationTracker``, done properly.

``EvaluationTracker.push_results_to_hub``, ``push_details_to_hub`` and ``recreate_metadata_card``
(core/src/evalsink/tracker.py) import this module lazily and delegate here. They use the tracker's
hub sink when it is enabled (its token, endpoint and retry options), else the options from
``EVALSINK_HUB__*`` and huggingface_hub's defaults. Like the sink, they do nothing on processes
other than the main one, and create a missing repository private unless told otherwise
(``private=None``: the tracker's ``public`` decides).
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING, Any

from evalsink import current_rank
from evalsink.storage import OutputDir
from evalsink_hub.config import HubSinkConfig
from evalsink_hub.local import LocalFile
from evalsink_hub.push import HubPusher

if TYPE_CHECKING:
    from evalsink.tracker import EvaluationTracker

logger = logging.getLogger("evalsink.hub")

_DATE_SUFFIX = re.compile(r"_(?P<date>\d{4}-\d{2}-\d{2}T[0-9.\-]+)\.parquet")


def _pusher(tracker: EvaluationTracker, sink: Any) -> HubPusher:
    pusher = getattr(sink, "pusher", None)
    if isinstance(pusher, HubPusher):
        return pusher
    from evalsink.config import build_config

    config = build_config("hub", HubSinkConfig, None)
    assert isinstance(config, HubSinkConfig)
    # the tracker's methods name their repository: its hub_results_org is checked where it is used
    return HubPusher(
        config, org=tracker.settings.hub_results_org, public=tracker.settings.public, check_org=False
    )


def _skip(method: str) -> bool:
    rank = current_rank()
    if not rank.is_main:
        logger.info("hub: %s skipped on rank %d (the main process pushes)", method, rank.rank)
    return not rank.is_main


def push_results_to_hub(
    tracker: EvaluationTracker,
    repo_id: str,
    path_in_repo: str,
    private: bool | None = None,
    *,
    sink: Any = None,
) -> str | None:
    """Upload the tracker's results JSON as ``path_in_repo`` of dataset ``repo_id``; the commit URL."""
    if _skip("push_results_to_hub"):
        return None
    from evalsink import jsonsafe

    data = jsonsafe.dumps(tracker.results, indent=True)
    result = _pusher(tracker, sink).upload(
        repo_id, {path_in_repo: data}, message=f"Upload {path_in_repo}", private=private
    )
    return result.commit_url


def details_files(details_folder_path: str | os.PathLike[str]) -> dict[str, LocalFile]:
    """``{path in repo: file}`` of a details folder: ``{date_id}/details_{task}_{date_id}.parquet``.

    The folder is one run's (``details/{model}/{date_id}``, as the local sink and lighteval write
    it), or a model's folder holding several ``{date_id}/`` folders.
    """
    output = OutputDir(details_folder_path)
    found: dict[str, LocalFile] = {}

    def add(folder: str) -> None:
        name_of_folder = folder.rsplit("/", 1)[-1] if folder else output.root.rstrip("/").rsplit("/", 1)[-1]
        for name, is_dir in output.listdir(folder):
            if is_dir or not (name.startswith("details_") and name.endswith(".parquet")):
                continue
            if name.endswith(f"_{name_of_folder}.parquet"):
                date_id = name_of_folder
            else:
                match = _DATE_SUFFIX.search(name)
                if match is None:
                    raise ValueError(f"{output.display(f'{folder}/{name}')}: no run date in the file name")
                date_id = match["date"]
            found[f"{date_id}/{name}"] = LocalFile(output, f"{folder}/{name}" if folder else name)

    add("")
    for name, is_dir in output.listdir(""):
        if is_dir:
            add(name)
    return found


def push_details_to_hub(
    tracker: EvaluationTracker,
    repo_id: str,
    details_folder_path: str | os.PathLike[str],
    private: bool | None = None,
    *,
    sink: Any = None,
) -> str | None:
    """Upload a details folder's parquet files and the regenerated card, in one commit."""
    if _skip("push_details_to_hub"):
        return None
    files = details_files(details_folder_path)
    if not files:
        raise FileNotFoundError(f"no details_*.parquet files in {os.fspath(details_folder_path)}")
    result = _pusher(tracker, sink).upload(
        repo_id,
        {path: local.content() for path, local in files.items()},
        message=f"Upload the details of {len(files)} task run(s)",
        private=private,
        update_card=True,
        model_name=tracker.general_config_logger.model_name,
    )
    return result.commit_url


def recreate_metadata_card(tracker: EvaluationTracker, repo_id: str, *, sink: Any = None) -> str | None:
    """Regenerate the README.md of details repository ``repo_id`` from its files; the commit URL."""
    if _skip("recreate_metadata_card"):
        return None
    result = _pusher(tracker, sink).recreate_card(repo_id, tracker.general_config_logger.model_name)
    return result.commit_url
