"""Building a sink's typed config from ``sink_config={...}`` and ``EVALSINK_<SINK>__<FIELD>``.

Explicit values win over the environment. Unknown keys are an error that lists the valid ones,
because a misspelt option silently ignored is a run configured differently than its owner thinks.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from evalsink.errors import SinkConfigError
from evalsink.sink import SinkConfig

ENV_PREFIX = "EVALSINK_"


def env_prefix(sink_name: str) -> str:
    return f"{ENV_PREFIX}{sink_name.upper().replace('-', '_')}__"


def env_values(sink_name: str, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """``EVALSINK_<SINK>__<FIELD>=value`` variables for one sink, keyed by lower-case field name."""
    prefix = env_prefix(sink_name)
    source = os.environ if environ is None else environ
    return {key[len(prefix) :].lower(): value for key, value in source.items() if key.startswith(prefix)}


def build_config(
    sink_name: str,
    model: type[SinkConfig],
    explicit: object,
    environ: Mapping[str, str] | None = None,
) -> SinkConfig:
    """Validate one sink's config, raising :class:`SinkConfigError` with a readable message."""
    if isinstance(explicit, model):
        return explicit
    if explicit is not None and not isinstance(explicit, Mapping):
        raise SinkConfigError(
            f"sink_config[{sink_name!r}] must be a mapping or a {model.__name__}, "
            f"not {type(explicit).__name__}"
        )
    from_env = env_values(sink_name, environ)
    given: dict[str, Any] = dict(explicit) if isinstance(explicit, Mapping) else {}
    values: dict[str, Any] = {**from_env, **given}
    valid = sorted(model.model_fields)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        where = [
            f"{env_prefix(sink_name)}{key.upper()}" if key in from_env and key not in given else repr(key)
            for key in unknown
        ]
        raise SinkConfigError(
            f"sink {sink_name!r}: unknown option(s) {', '.join(where)}; valid options: {', '.join(valid)}"
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error['loc']) or 'config'}: {error['msg']}" for error in exc.errors()
        )
        raise SinkConfigError(f"sink {sink_name!r}: invalid config: {problems}") from None
