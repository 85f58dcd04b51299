"""Building a sink's typed config from ``sink_config={...}`` and ``EVALSINK_<SINK>__<FIELD>``.

Explicit values win over the environment. Unknown keys are an error that lists the valid ones,
because a misspelt option silently ignored is a run configured differently than its owner thinks.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from evalsink.errors import SinkConfigError
from evalsink.sink import SinkConfig

ENV_PREFIX = "EVALSINK_"


def env_prefix(sink_name: str) -> str:
    """``EVALSINK_<SINK>__``: every character a shell variable name cannot hold becomes ``_``
    (a sink ``my.sink`` read ``EVALSINK_MY.SINK__*``, which no shell can set)."""
    return f"{ENV_PREFIX}{re.sub('[^A-Z0-9_]', '_', sink_name.upper())}__"


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
    from_env: dict[str, Any] = {
        key: (
            _json_container(text, model.model_fields[key].annotation, sink_name, key)
            if key in model.model_fields
            else text
        )
        for key, text in env_values(sink_name, environ).items()
    }
    given: dict[str, Any] = dict(explicit) if isinstance(explicit, Mapping) else {}
    values: dict[str, Any] = {**from_env, **given}
    valid = sorted(model.model_fields)
    unknown = sorted(set(values) - set(valid))
    if unknown:
        where = [_source(sink_name, key, from_env, given) + _did_you_mean(key, valid) for key in unknown]
        raise SinkConfigError(
            f"sink {sink_name!r}: unknown option(s) {', '.join(where)}; valid options: {', '.join(valid)}"
        )
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        problems = "; ".join(_describe(error, sink_name, model, from_env, given) for error in exc.errors())
        raise SinkConfigError(f"sink {sink_name!r}: invalid config: {problems}") from None


def public_options(config: SinkConfig) -> dict[str, Any]:
    """The options the user set (defaults left to the sink), as JSON values, without secrets.

    An option that has no JSON form (a client object in a third-party sink's config) is left
    out: a recovery cannot rebuild it, and it must not keep the tracker from starting. So is one
    that can hold a secret anywhere inside (a ``SecretStr``, a nested model with one), and one
    whose value carries a credential in clear text (a URL's password, ``api_key=...``, a
    secret-looking name; see :func:`evalsink.jsonsafe.redact_secrets`): stored masked, the
    recovery would hand the sink ``'**********'`` as its password. The recovery's environment or
    ``sink_config`` gives those again.
    """
    from pydantic_core import PydanticSerializationError

    from evalsink.jsonsafe import REDACTED, redact_secrets

    log = logging.getLogger("evalsink")
    fields = type(config).model_fields
    options: dict[str, Any] = {}
    for name in sorted(config.model_fields_set & set(fields)):
        if _holds_secret(fields[name].annotation) or _has_secret_value(getattr(config, name)):
            log.info("option %r is not kept for recovery: it holds a secret", name)
            continue
        try:
            option = _finite(config.model_dump(mode="json", include={name}))
        except PydanticSerializationError as exc:  # no JSON form: not kept, see above
            log.info("option %r is not kept for recovery: %s", name, exc)
            continue
        if redact_secrets(option) != option or REDACTED in repr(option):
            # the second: a secret the checks above cannot see (in a dataclass, say) dumps masked
            log.info("option %r is not kept for recovery: its value holds a credential", name)
            continue
        options.update(option)
    return options


def _finite(value: Any) -> Any:
    """``inf``/``nan`` options as the words pydantic reads back as floats.

    JSON has no such numbers: written as they are, ``hook_timeout: inf`` came back from the
    manifest as null, which means something else (call the sink inline).
    """
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_finite(item) for item in value]
    return value


def _holds_secret(annotation: Any, seen: frozenset[type] = frozenset()) -> bool:
    """Whether a field of this type can hold a secret anywhere inside: a ``SecretStr``, or a
    nested model with one, also inside an Optional, a union, a list or a dict.

    A nested secret is as secret as a top-level one: its value must be neither echoed in an
    error nor stored in the manifest.
    """
    import typing

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        inner = seen | {annotation}
        return annotation not in seen and any(
            _holds_secret(field.annotation, inner) for field in annotation.model_fields.values()
        )
    args = typing.get_args(annotation)
    if args:
        return any(_holds_secret(arg, seen) for arg in args)
    return "Secret" in repr(annotation)


def _has_secret_value(value: Any) -> bool:
    """Whether a value holds a pydantic secret, for a field whose type does not say so (``Any``)."""
    from pydantic import BaseModel, Secret, SecretBytes, SecretStr

    if isinstance(value, (SecretStr, SecretBytes, Secret)):
        return True
    if isinstance(value, BaseModel):
        value = dict(value)
    if isinstance(value, Mapping):
        value = list(value.values())
    return isinstance(value, (list, tuple, set, frozenset)) and any(_has_secret_value(item) for item in value)


def _json_container(text: str, annotation: Any, sink_name: str, key: str) -> Any:
    """An environment value for a list, dict or nested-model field, written as JSON
    (``'["a", "b"]'``, ``'{"user": "u"}'``), decoded.

    Environment values are strings, which pydantic cannot turn into a list, a dict or a model: such
    fields could not be set from the environment at all (or, with a comma-splitting validator, a JSON
    list became the tags ``['["a"', '"b"]']``). Text that does not start like JSON stays text (the
    wandb sink's tags split ``a,b`` on commas). Text that does (``[`` or ``{``) but is not valid
    JSON is a :class:`SinkConfigError` naming its variable: handed on as text, a trailing comma or
    single quotes made the tags ``['["nightly"', '"7b"', ']']`` without a word. A field that also
    takes text (``str | list[str]``) keeps such text as it is.
    """
    if not text.lstrip().startswith(("[", "{")) or not _takes_container(annotation):
        return text
    import json

    try:
        return json.loads(text)
    except ValueError as exc:
        if _takes_text(annotation):
            return text
        # the text is not quoted: what in it is a credential cannot be told (see _shown_value)
        raise SinkConfigError(
            f"sink {sink_name!r}: invalid config: {env_prefix(sink_name)}{key.upper()}: not valid JSON "
            f"({exc}); a list, dict or nested-model option set from the environment is JSON, "
            """e.g. '["a", "b"]' or '{"key": "value"}' (double quotes, no trailing comma)"""
        ) from None


def _takes_text(annotation: Any) -> bool:
    """Whether a field accepts a plain string as it is (``str``, ``Any``, or a union with one)."""
    import types
    import typing

    if annotation is str or annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return any(_takes_text(arg) for arg in typing.get_args(annotation))
    return False


def _takes_container(annotation: Any) -> bool:
    import typing
    from collections.abc import Mapping as AbcMapping
    from collections.abc import Sequence as AbcSequence

    from pydantic import BaseModel

    origin = typing.get_origin(annotation)
    if annotation in (list, dict, set, tuple) or origin in (list, dict, set, tuple, AbcMapping, AbcSequence):
        return True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return True
    return any(_takes_container(arg) for arg in typing.get_args(annotation))


def _source(sink_name: str, key: str, from_env: Mapping[str, str], given: Mapping[str, Any]) -> str:
    """How the user wrote an option: its environment variable, or the key they passed."""
    return f"{env_prefix(sink_name)}{key.upper()}" if key in from_env and key not in given else repr(key)


def _did_you_mean(key: str, valid: list[str]) -> str:
    import difflib

    close = difflib.get_close_matches(key, valid, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _describe(
    error: Any, sink_name: str, model: type[SinkConfig], from_env: Mapping[str, str], given: Mapping[str, Any]
) -> str:
    """One validation problem, naming the option as the user set it and, when that cannot leak a
    credential, its value (see :func:`_shown_value`)."""
    location = [str(part) for part in error["loc"]]
    message = _without_prefix(error)
    if not location:  # a check of the whole config: the sink's own words say what is missing
        return message
    key = location[0]
    where = ".".join([_source(sink_name, key, from_env, given).strip("'"), *location[1:]])
    if len(location) == 1 and error["type"] != "missing" and "input" in error:
        shown = _shown_value(model, key, error["input"])
        if shown is not None:
            where += f"={shown}"
    return f"{where}: {message}"


def _shown_value(model: type[SinkConfig], key: str, value: Any) -> str | None:
    """The value to quote in an error, or None when it may hold a credential: a field that can hold
    a secret, an option named like one (``api_key``), and a list/dict field's text that did not
    parse (``'{"Authorization": "Bearer ...'``: what is a secret in it cannot be told)."""
    from evalsink.jsonsafe import redact_secrets

    field = model.model_fields.get(key)
    annotation = field.annotation if field is not None else None
    if field is not None and _holds_secret(annotation):
        return None
    if redact_secrets({key: value}) != {key: redact_secrets(value)}:  # the name looks secret
        return None
    if isinstance(value, str) and _takes_container(annotation):
        return None
    return repr(redact_secrets(value))


def _without_prefix(error: Any) -> str:
    """pydantic's message for a ``ValueError`` a sink's validator raised, minus the "Value error, "
    it puts in front: the sink wrote a sentence for the user."""
    message = str(error["msg"])
    if error.get("type") == "value_error":
        return message.removeprefix("Value error, ")
    return message
