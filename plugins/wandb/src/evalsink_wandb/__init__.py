"""evalsink's Weights & Biases sink: an evaluation's config, metrics, tables and results file in W&B.

Replaces lighteval's ``use_wandb`` path: enabled by ``sinks=[..., "wandb"]`` or ``use_wandb=True``
(which in evalsink always means W&B; Trackio is its own sink), with
``sink_config={"wandb": {"project": ...}}`` or ``WANDB_PROJECT``. docs/sinks/wandb.md has the
full description.

Modules: :mod:`~evalsink_wandb.config` (options), :mod:`~evalsink_wandb.sink` (the hooks),
:mod:`~evalsink_wandb.naming` (keys and values), :mod:`~evalsink_wandb.details` (details rows
streamed in bounded increments), :mod:`~evalsink_wandb.backend` (the few wandb internals relied
on). Importing this package does not import wandb.
"""

from __future__ import annotations

from evalsink.metric_keys import metric_key
from evalsink_wandb.config import WandbSinkConfig
from evalsink_wandb.details import flatten_record
from evalsink_wandb.naming import details_key
from evalsink_wandb.sink import DetailsNotSentError, WandbSink

__all__ = [
    "DetailsNotSentError",
    "WandbSink",
    "WandbSinkConfig",
    "details_key",
    "flatten_record",
    "metric_key",
]
