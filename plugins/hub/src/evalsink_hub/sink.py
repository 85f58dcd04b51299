"""The ``hub`` sink: pushes each saved run to a Hugging Face dataset repository, lighteval's way."""

from __future__ import annotations

import logging
from typing import ClassVar

from evalsink import Run, Sink, SinkConfig, TrackerSettings, current_rank, hookimpl
from evalsink_hub.config import HubSinkConfig
from evalsink_hub.local import find_local_run
from evalsink_hub.push import MISSING_NAMESPACE, HubPusher, details_namespace

logger = logging.getLogger("evalsink.hub")


class HubSink(Sink):
    """Uploads what the local sink saved (results, details, a regenerated card) in one commit.

    Enabled by ``sinks=[..., "hub"]`` or lighteval's ``push_to_hub=True``. Runs on the main process
    only (:func:`evalsink.current_rank`); on other ranks it does nothing and needs no token.
    """

    config_model: ClassVar[type[SinkConfig]] = HubSinkConfig
    remote: ClassVar[bool] = True  # after the local sink: its files are what gets uploaded
    config: HubSinkConfig

    def __init__(self, config: HubSinkConfig, settings: TrackerSettings) -> None:
        super().__init__(config, settings)
        # checked at construction, so a tracker that cannot push fails before the evaluation runs
        if not (details_namespace(config, settings.hub_results_org) or config.repo_id):
            raise ValueError(MISSING_NAMESPACE)
        self.pusher: HubPusher | None = None
        if current_rank().is_main:
            # imports huggingface_hub (only trackers that enable this sink pay for it) and checks
            # that a token is available
            self.pusher = HubPusher(config, org=settings.hub_results_org, public=settings.public)

    @hookimpl
    def evalsink_results_saved(self, run: Run) -> list[str] | None:
        if self.pusher is None or not current_rank().is_main:
            logger.debug("hub: rank %d is not the main process; nothing pushed", current_rank().rank)
            return None
        assert run.date_id is not None
        local = find_local_run(
            run.output,
            run.model_name,
            run.date_id,
            results_path_template=self.settings.results_path_template,
            details_path_template=self.config.details_path_template,
        )
        note = self.pusher.renamed_repo_note(run.model_name)
        if note is not None:
            self.warn(note)
        expected = run.details.tasks() if self.settings.save_details else None
        return self.pusher.push(local, expected_tasks=expected).outputs()
