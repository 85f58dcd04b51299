"""evalsink's Hugging Face Hub sink: lighteval's details repositories, pushed in one commit, retried.

``sinks=[..., "hub"]`` or lighteval's ``push_to_hub=True`` enables :class:`HubSink`. It uploads what
the local sink saved — ``results_{date_id}.json``, ``results_{date_id}.parquet`` and
``{date_id}/details_{task}_{date_id}.parquet`` per task — with a regenerated README.md, to
``{org}/details_{model}[_private]``, in one commit. :func:`push_run` does the same later from disk.
docs/sinks/hub.md has the full description.

huggingface_hub is imported when a sink is constructed or a push starts, never by importing this
package.
"""

from __future__ import annotations

from evalsink_hub.config import HubSinkConfig
from evalsink_hub.push import HubPusher, HubPushError, PushResult, push_run, recreate_metadata_card
from evalsink_hub.retry import RetriesExhaustedError, RetryPolicy, call_with_retry
from evalsink_hub.sink import HubSink

__all__ = [
    "HubPushError",
    "HubPusher",
    "HubSink",
    "HubSinkConfig",
    "PushResult",
    "RetriesExhaustedError",
    "RetryPolicy",
    "call_with_retry",
    "push_run",
    "recreate_metadata_card",
]
