"""Strict JSON encoding shared by the spool, the results file and every sink.

lighteval writes bare ``NaN`` (invalid JSON) and silently ``str()``s what it cannot encode
(``np.int64`` becomes ``"7"``). Here every value is encoded by a documented rule or the call fails
with an :class:`EncodeError` that names the field, so nothing is corrupted quietly:

* dataclasses (their fields, as ``dataclasses.asdict``), pydantic models and mappings become
  objects; tuples, sets and frozensets become arrays (sets sorted when their items sort);
* numpy scalars and arrays become numbers and arrays, written by orjson's numpy encoder whatever
  the array's layout (a ``float32`` ``0.1`` is ``0.1``, in a view as in a copy); torch tensors and
  other numpy arrays (object, text) through ``tolist()`` (torch is never imported); numpy's
  ``longdouble`` is rounded to a float;
* numpy ``datetime64`` becomes ISO-8601 text at its own unit (``[D]`` ``"2025-01-02"``, ``[ns]``
  ``"2025-01-02T03:04:05.123456789"``), ``timedelta64`` an ISO-8601 duration (``"PT1.500S"``);
  NaT becomes ``null`` and is counted as NaN is; a ``timedelta64`` with no unit raises;
* ``Decimal`` becomes a number, ``datetime``/``date`` an ISO-8601 string, ``timedelta`` an
  ISO-8601 duration in seconds (``"PT90S"``, ``"-PT0.500000S"``), ``Enum`` its value,
  ``pathlib`` paths their string;
* ``bytes``, ``bytearray`` and ``memoryview`` become ``{"$evalsink.bytes": "<base64>"}``, which
  the local sink writes as a binary column (JSON has no bytes; :func:`decode_bytes` undoes it).
  The key is reserved: such an object, whoever wrote it, is read back as bytes, so that records
  decoded from evalsink's JSON can be encoded again unchanged (sinks do);
* PIL images become ``{"path": ..., "bytes": ...}``, the struct ``datasets`` stores an image as
  (lighteval's details of multimodal tasks): the encoded image in its own format (PNG or TIFF
  when it has none), and the file it was opened from, if any;
* NaN and ±infinity (``float``, numpy, torch or ``Decimal``, including a ``Decimal`` beyond the
  float range) become ``null`` and are counted by :func:`count_nonfinite`, so callers can report
  them;
* non-string keys become strings (``1`` -> ``"1"``, ``True`` -> ``"true"``, ``None`` -> ``"null"``,
  an ``Enum`` its value, a ``datetime`` its ISO-8601 text); two keys of one mapping that would
  become the same string (``1`` and ``"1"``) raise :class:`EncodeError`, since one value would be
  lost;
* anything else raises :class:`EncodeError` naming the field.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import enum
import io
import math
import numbers
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from pathlib import PurePath
from typing import Any

import orjson

from evalsink.errors import EncodeError

# Dataclasses go through _default: orjson's own encoding writes an instance's __dict__, which adds
# attributes that are not fields (lighteval's task configs set ``full_name`` in __post_init__) and
# drops fields whose names start with "_"; lighteval writes ``asdict()``, the fields exactly.
# numpy values go through _default too (not OPT_SERIALIZE_NUMPY, which encodes datetime64 itself
# with no hook: NaT became 1970-01-01 or a year-1677 date, nanoseconds were cut to microseconds);
# _default hands numeric arrays back to orjson's numpy encoder (_numpy_encoder), one call per array.
_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATACLASS
# First attempt: string keys only. Mappings with other keys take a slower path that checks that no
# two keys become the same JSON key (orjson's OPT_NON_STR_KEYS would write both, and a reader keeps
# one).
_STR_KEYS = orjson.OPT_PASSTHROUGH_DATACLASS
_NUMPY = orjson.OPT_SERIALIZE_NUMPY  # only for numeric numpy values, by _numpy_encoder


BYTES_KEY = "$evalsink.bytes"
"""The one key of the object that stands for raw bytes in JSON (their base64 text)."""
_BYTES_TAG = b'"$evalsink.bytes":'  # only a key is followed by a colon in JSON


def _bytes_object(data: bytes | bytearray | memoryview) -> dict[str, str]:
    return {BYTES_KEY: base64.b64encode(data).decode("ascii")}


class _RefusedError(TypeError):
    """A value of a known kind that cannot be encoded (an image that failed to save, a complex
    number): the error names the field and says why, not just its type."""


def _pil_image(value: Any) -> bool:
    pil = sys.modules.get("PIL.Image")  # never imported here: an image exists only if PIL is loaded
    return pil is not None and isinstance(value, pil.Image)


def _image_object(image: Any) -> dict[str, Any]:
    """An image as ``datasets`` encodes one in a struct (``{"path", "bytes"}``, path first).

    ``datasets`` keeps only the path of an image opened from a file; here the bytes are kept
    too, so that details copied elsewhere (the Hub) still hold the image.
    """
    from PIL import Image

    kind = image.format
    if kind is None or kind not in Image.SAVE or kind not in Image.OPEN:
        kind = "PNG" if image.mode in {"1", "L", "LA", "RGB", "RGBA"} else "TIFF"
    path = str(image.filename) if getattr(image, "filename", None) else None
    buffer = io.BytesIO()
    try:
        image.save(buffer, format=kind)
    except Exception as exc:
        if path is not None and os.path.isfile(path):  # e.g. its file was closed before it was loaded
            with open(path, "rb") as source:
                return {"path": path, "bytes": _bytes_object(source.read())}
        # named with the field by dumps(): the sample is refused, not dropped
        why = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise _RefusedError(f"the image could not be encoded as {kind}: {why}") from exc
    return {"path": path, "bytes": _bytes_object(buffer.getbuffer())}


def _default(value: Any) -> Any:
    """Called by orjson for types it does not know natively, and for dataclass instances.

    The types met on every sample are looked up first (dataclasses, then numpy types: both by a
    dict keyed by type), before ``dataclasses.is_dataclass``, which costs more than encoding a
    numpy scalar.
    """
    names = _FIELD_NAMES.get(type(value))
    if names is None:
        numpy_encoder = _NUMPY_ENCODERS.get(type(value))
        if numpy_encoder is not None:
            return numpy_encoder(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            names = _field_names(type(value))
    if names is not None:
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is dict and len(attributes) == len(names):
            return attributes  # the fields and nothing else (the common case): no copy
        return {name: getattr(value, name) for name in names}
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes_object(value)
    if _pil_image(value):
        return _image_object(value)
    if type(value).__name__ in {"SecretStr", "SecretBytes"}:
        return REDACTED
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return value.model_dump(mode="python")
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, Decimal):
        if value.is_snan():  # float() refuses it, and orjson's message would blame Decimal itself
            raise _RefusedError("a signalling NaN (Decimal('sNaN')) has no JSON form")
        return float(value)
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, datetime.timedelta):  # as numpy's timedelta64 is written, exact to the µs
        seconds = value.days * 86_400 + value.seconds
        if value.microseconds:
            return _duration_text(seconds * 10**6 + value.microseconds, "us")
        return _duration_text(seconds, "s")
    tolist = getattr(value, "tolist", None)
    if callable(tolist):
        package = type(value).__module__.split(".")[0]
        if package == "numpy":
            numpy_encoder = _NUMPY_ENCODERS[type(value)] = _numpy_encoder(type(value))
            return numpy_encoder(value)
        if package == "torch":
            return _tolist(value)
    raise TypeError(f"cannot encode a {type(value).__module__}.{type(value).__qualname__}")


def _tolist(value: Any) -> Any:
    """A numpy value or torch tensor as Python numbers and lists (its ``tolist()``)."""
    plain = value.tolist()
    if type(plain) is type(value):  # numpy's longdouble and clongdouble: no Python type holds them
        return _extended_float(value)
    return plain


_NUMPY_ENCODERS: dict[type, Callable[[Any], Any]] = {}
"""How :func:`_default` writes each numpy type it has met: decided once per type, so that a numpy
scalar costs a dict look-up and one conversion."""


def _numpy_encoder(kind: type) -> Callable[[Any], Any]:
    """How to write values of a numpy type (called once per type).

    Scalars that a Python type holds exactly (``float64``, integers, ``bool_``) become that type.
    ``float32`` and ``float16`` scalars are written by orjson's numpy encoder, which writes the
    shortest text of the value at its own precision (``0.1``, not ``0.10000000149011612``), as
    for arrays. ``datetime64`` and ``timedelta64`` become ISO 8601 text (:func:`_time_text`);
    anything else goes through ``tolist()``.
    """
    import numpy as np

    if kind is np.ndarray:
        return _encode_array
    if issubclass(kind, np.ndarray):  # np.matrix, masked arrays: orjson's encoder takes none of them
        return lambda array: _time_text(array) if array.dtype.kind in "Mm" else _tolist(array)
    if issubclass(kind, (np.datetime64, np.timedelta64)):
        return _time_text
    if kind is np.float64:
        return float
    if issubclass(kind, np.integer):
        return int
    if kind is np.bool_:
        return bool
    if kind is np.float32 or kind is np.float16:
        return _encode_numeric
    return _tolist


def _encode_numeric(value: Any) -> orjson.Fragment:
    """A numeric numpy value written by orjson's own numpy encoder (C speed, nothing per item in
    Python), inserted as it is."""
    return orjson.Fragment(orjson.dumps(value, option=_NUMPY))


def _encode_array(value: Any) -> Any:
    """A numpy ``ndarray``: numbers and booleans through orjson's numpy encoder, datetime64 and
    timedelta64 as text (:func:`_time_text`), others (object, text, complex, longdouble) through
    ``tolist()``.

    orjson's encoder reads only C-contiguous arrays in native byte order: others are copied to one
    first. Through ``tolist()`` a ``float32`` view (``a[::2]``) was written as
    ``0.20000000298023224`` where the same values contiguous are ``0.2``.
    """
    dtype = value.dtype
    kind = dtype.kind
    if kind in "Mm":
        return _time_text(value)
    if kind in "biuf" and dtype.itemsize <= 8:
        if value.ndim == 0:  # orjson writes no 0-d array: its item, a numpy scalar, is written instead
            return value[()]
        if not (value.flags.c_contiguous and dtype.isnative):
            import numpy as np

            value = np.ascontiguousarray(value, dtype=dtype.newbyteorder("="))
        return _encode_numeric(value)
    return _tolist(value)


def _time_text(value: Any) -> Any:
    """numpy ``datetime64`` / ``timedelta64`` values (a scalar or an array of any shape) as ISO
    8601 text at their own unit, NaT as ``None`` (counted by :func:`count_nonfinite`, as NaN is).

    A datetime is written as numpy prints it, with as many digits as its unit holds
    (``datetime64[D]`` ``"2025-01-02"``, ``[s]`` ``"2025-01-02T03:04:05"``, ``[ns]``
    ``"2025-01-02T03:04:05.123456789"``), naive as numpy's are; a duration as an ISO 8601
    duration (:func:`_duration_text`).
    """
    import numpy as np

    array = np.asarray(value)
    if not array.dtype.isnative:  # datetime_as_string reads the raw bytes in native order
        array = array.astype(array.dtype.newbyteorder("="))
    flat = array.ravel()  # 1-d, also for a scalar: datetime_as_string returns a str for 0-d
    missing = np.isnat(flat)
    if array.dtype.kind == "M":
        text = np.datetime_as_string(flat).astype(object)
        text[missing] = None
    else:
        unit, step = np.datetime_data(array.dtype)
        counts = flat.astype(np.int64).tolist()
        text = np.array(
            [
                None if nat else _duration_text(count * step, unit)
                for count, nat in zip(counts, missing.tolist(), strict=True)
            ],
            dtype=object,
        )
    return text.reshape(array.shape).tolist()


# the ISO 8601 duration for a count of each numpy unit of a second or longer; shorter units are
# written as seconds with as many decimals as the unit has (_SUBSECOND_DIGITS)
_DURATION_UNITS = {
    "Y": "P{}Y",
    "M": "P{}M",
    "W": "P{}W",
    "D": "P{}D",
    "h": "PT{}H",
    "m": "PT{}M",
    "s": "PT{}S",
}
_SUBSECOND_DIGITS = {"ms": 3, "us": 6, "ns": 9, "ps": 12, "fs": 15, "as": 18}


def _duration_text(count: int, unit: str) -> str:
    """A ``timedelta64`` count of ``unit`` as an ISO 8601 duration, exact: 5 ``s`` ``"PT5S"``,
    1500 ``ms`` ``"PT1.500S"``, -3 ``D`` ``"-P3D"`` (the sign as XML Schema writes it).

    A count with no unit (numpy's "generic" timedelta64, e.g. ``np.timedelta64(5)``) is refused:
    writing the bare number would drop what it counts.
    """
    sign, count = ("-", -count) if count < 0 else ("", count)
    form = _DURATION_UNITS.get(unit)
    if form is not None:
        return sign + form.format(count)
    digits = _SUBSECOND_DIGITS.get(unit)
    if digits is None:
        raise _RefusedError(f"a numpy timedelta64 with no unit ({count}): it has no duration")
    seconds, fraction = divmod(count, 10**digits)
    return f"{sign}PT{seconds}.{fraction:0{digits}d}S"


def _extended_float(value: Any) -> float:
    """A numpy extended-precision number, rounded to a float as a ``Decimal`` is.

    Its ``tolist()`` returns itself, which sent orjson back here until its recursion limit, an
    error that named nothing. A value beyond the float range is refused rather than made null.
    """
    if not isinstance(value, numbers.Real):
        raise _RefusedError(f"a numpy {type(value).__name__}: complex numbers have no JSON form")
    number = float(value)
    if math.isinf(number) and value * 0 == 0:  # finite in extended precision, not as a float
        raise _RefusedError(f"a numpy {type(value).__name__} beyond the float range ({value!s})")
    return number


REDACTED = "**********"


def _config_default(value: Any) -> Any:
    """Configs also hold functions, classes and objects (prompt functions, metric objects).

    As lighteval's results files: functions and classes are written as their ``__name__`` (a
    ``functools.partial`` as its function's), objects whose class says how to print them (its own
    ``__repr__``, e.g. a metric ``ExactMatches(aggregation_function=max, ...)``) as their
    ``str()``. Where lighteval would print ``<X object at 0x...>`` (no ``__repr__`` of its own),
    or for attribute bags (``SimpleNamespace``, ``argparse.Namespace``), the public attributes
    are written instead.
    """
    try:
        return _default(value)
    except TypeError:
        if isinstance(value, type) or callable(value):
            name = getattr(value, "__name__", None)
            if name is None:
                name = getattr(getattr(value, "func", None), "__name__", None)  # functools.partial
            if isinstance(name, str):
                return name
        if _prints_itself(type(value)):
            return str(value)
        attributes = getattr(value, "__dict__", None)
        if isinstance(attributes, dict):  # a plain config object: its public attributes
            return {k: v for k, v in attributes.items() if not k.startswith("_")}
        raise


_ATTRIBUTE_BAGS = {("types", "SimpleNamespace"), ("argparse", "Namespace")}


def _prints_itself(kind: type) -> bool:
    """Whether a class has its own ``__repr__`` or ``__str__`` (not object's, not an attribute bag's)."""
    if (kind.__module__, kind.__qualname__) in _ATTRIBUTE_BAGS:
        return False
    return any(name in vars(klass) for klass in kind.__mro__[:-1] for name in ("__repr__", "__str__"))


def dumps(value: Any, *, indent: bool = False, config: bool = False) -> bytes:
    """Encode ``value`` as strict RFC 8259 JSON bytes (UTF-8).

    ``config=True`` is for configuration objects: functions, classes and other objects are
    written as lighteval's results files write them (see :func:`_config_default`).
    """
    default = _config_default if config else _default
    layout = orjson.OPT_INDENT_2 if indent else 0
    try:
        return orjson.dumps(value, default=default, option=_STR_KEYS | layout)
    except orjson.JSONEncodeError:
        pass  # a non-string key, or a value that cannot be encoded: find out which, below
    try:
        data = orjson.dumps(value, default=default, option=_OPTIONS | layout)
    except orjson.JSONEncodeError as exc:
        where, why = locate_unencodable(value, config=config)
        raise EncodeError(f"cannot encode {where or 'the value'} as JSON: {why}") from exc
    clash = find_key_clash(value)
    if clash is not None:
        where, why = clash
        raise EncodeError(f"cannot encode {where or 'the value'} as JSON: {why}")
    return data


def has_bytes(line: bytes) -> bool:
    """Whether JSON text written by :func:`dumps` holds bytes (so is worth :func:`decode_bytes`)."""
    return b"$" in line and _BYTES_TAG in line


def bytes_of(data: Any) -> bytes | None:
    """The bytes a ``{"$evalsink.bytes": "<base64>"}`` object stands for; None for anything else
    (another object, or text under that key that is not base64: it is left as it is)."""
    if type(data) is not dict or len(data) != 1 or type(text := data.get(BYTES_KEY)) is not str:
        return None
    try:
        return base64.b64decode(text, validate=True)
    except ValueError:
        return None


def _replace_bytes(data: Any, replace: Callable[[bytes], Any]) -> Any:
    """Plain JSON data with every bytes object replaced by ``replace(its bytes)``."""
    if isinstance(data, dict):
        raw = bytes_of(data)
        if raw is not None:
            return replace(raw)
        return {key: _replace_bytes(item, replace) for key, item in data.items()}
    if isinstance(data, list):
        return [_replace_bytes(item, replace) for item in data]
    return data


def decode_bytes(data: Any) -> Any:
    """Plain JSON data with every ``{"$evalsink.bytes": "<base64>"}`` object turned back into bytes."""
    return _replace_bytes(data, lambda raw: raw)


def describe_bytes(data: Any) -> Any:
    """Plain JSON data with every bytes object replaced by a short text saying its size
    (``"<1,234 bytes>"``): for tables and text meant to be read, where base64 is noise."""
    return _replace_bytes(data, lambda raw: f"<{len(raw):,} byte{'' if len(raw) == 1 else 's'}>")


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def to_jsonable(value: Any, *, config: bool = False) -> Any:
    """Plain JSON types (dict, list, str, number, bool, None) for ``value``, by the rules above."""
    return orjson.loads(dumps(value, config=config))


_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|api_?keys?|keys?|secrets?|passwords?|passwd|pwd|passphrase|credentials?|"
    r"authorization|bearer)($|[_\-.])"
)

# camelCase and PascalCase words: "accessToken" -> "access_Token", "HFToken" -> "HF_Token"
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


_NOT_SECRET = re.compile(
    r"^(pad|eos|bos|unk|sep|cls|mask)_token$|_token_ids?$|^max_.*tokens$|_tokens?_count$"
)


def looks_secret(key: str) -> bool:
    """Whether a config key names a secret (``hf_token``, ``api_key``, ``password``...).

    Words are separated by ``_``, ``-``, ``.`` or a camelCase boundary (``accessToken``,
    ``clientSecret`` and ``HFToken`` look secret). Tokenizer settings such as ``pad_token`` or
    ``eos_token_id`` are not secrets.
    """
    lowered = _CAMEL_BOUNDARY.sub("_", key).lower()
    return bool(_SECRET_KEY.search(lowered)) and not _NOT_SECRET.search(lowered)


_URL_PASSWORD = re.compile(r"(?<=://)([^/\s:@]*):([^/\s@]+)@")
_KEY_VALUE = re.compile(r"(?<![\w.\-])([A-Za-z_][\w.\-]*)=([^,;&\s]+)")


def _redact_text(text: str) -> str:
    """Credentials inside a string: a URL's password (``https://user:secret@host``) and the values
    of secret-looking keys in ``key=value`` lists (lighteval's ``model_args``
    ``"pretrained=...,api_key=..."``, URL query strings)."""
    if "=" not in text and "@" not in text:
        return text
    text = _URL_PASSWORD.sub(rf"\1:{REDACTED}@", text)
    return _KEY_VALUE.sub(
        lambda match: f"{match[1]}={REDACTED}" if looks_secret(match[1]) else match[0],
        text,
    )


def redact_secrets(value: Any) -> Any:
    """Replace values under secret-looking keys, at any depth, in plain JSON data.

    Booleans, numbers and nulls cannot hold a credential and are kept (``use_auth_token: true``);
    strings and whole containers (``api_keys: [...]``) are replaced. Other strings keep their
    text, less the credentials written into it (:func:`_redact_text`).
    """
    if isinstance(value, str):
        return _redact_text(value)
    if isinstance(value, dict):
        return {
            key: (
                REDACTED
                if isinstance(key, str)
                and not isinstance(item, (bool, int, float, type(None)))
                and looks_secret(key)
                else redact_secrets(item)
            )
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    return value


def _step(key: Any) -> str:
    return f".{key}" if isinstance(key, str) and key.isidentifier() else f"[{key!r}]"


def _children(value: Any) -> Iterator[tuple[str, Any]]:
    """Yield (path step, child) pairs of a container, in the shapes :func:`_default` accepts."""
    if _pil_image(value):
        return  # a leaf: an image that fails to encode is named itself, not its internals
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        for f in dataclasses.fields(value):
            yield f".{f.name}", getattr(value, f.name)
    elif hasattr(value, "model_dump") and callable(value.model_dump):
        for key, child in value.model_dump(mode="python").items():
            yield _step(key), child
    elif isinstance(value, Mapping):
        for key, child in value.items():
            yield _step(key), child
    elif isinstance(value, (list, tuple, set, frozenset)):
        for index, child in enumerate(value):
            yield f"[{index}]", child
    elif isinstance(getattr(value, "__dict__", None), dict) and not callable(value):
        for key, child in vars(value).items():
            if not key.startswith("_"):
                yield _step(key), child


def _failure(value: Any, config: bool = False) -> str | None:
    try:
        orjson.dumps(value, default=_config_default if config else _default, option=_OPTIONS)
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        return str(cause) if isinstance(cause, _RefusedError) else str(exc)
    return None


def locate_unencodable(value: Any, *, config: bool = False) -> tuple[str, str]:
    """Find the innermost field orjson refuses and say why; the slow path, run only after a failure.

    Returns a dotted path such as ``doc.images[0]`` (empty for the top level) and the reason.
    """
    item, where = value, ""
    for _ in range(_MAX_DEPTH):
        if isinstance(item, Mapping):
            for key in item:
                if _failure({key: None}, config) is not None:
                    return where.lstrip("."), f"key {key!r} of type {type(key).__name__} cannot be a JSON key"
        for step, child in _children(item):
            if _failure(child, config) is not None:
                item, where = child, where + step
                break
        else:
            return where.lstrip("."), _failure(item, config) or "unknown reason"
    return where.lstrip("."), f"nested deeper than {_MAX_DEPTH} levels (or cyclic)"


_MAX_DEPTH = 256


def json_key(key: Any) -> str:
    """The string orjson writes for a mapping key (``OPT_NON_STR_KEYS``)."""
    if type(key) is str:
        return key
    encoded: dict[str, None] = orjson.loads(orjson.dumps({key: None}, option=_OPTIONS))
    return next(iter(encoded))


def find_key_clash(value: Any) -> tuple[str, str] | None:
    """The first mapping (by path) with two keys that become one JSON key, and which; else None.

    Only called for values holding a non-string key (the slow path of :func:`dumps`).
    """
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, Mapping) and any(type(key) is not str for key in item):
            seen: dict[str, Any] = {}
            for key in item:
                text = json_key(key)
                if text in seen:
                    return where.lstrip("."), (
                        f"keys {seen[text]!r} and {key!r} would both be written as the JSON key {text!r}"
                    )
                seen[text] = key
        if depth >= _MAX_DEPTH:
            continue
        children = [(where + step, child) for step, child in _children(item) if type(child) not in _LEAVES]
        stack.extend((child, path, depth + 1) for path, child in reversed(children))
    return None


_LEAVES = frozenset({str, int, float, bool, type(None)})


def too_deep(data: Any, limit: int) -> str | None:
    """The path of the first object or array nested more than ``limit`` levels deep in plain JSON
    data (the top-level container is level 1), or None."""
    stack: list[tuple[Any, str, int]] = [(data, "", 1)]
    while stack:
        item, where, depth = stack.pop()
        if isinstance(item, dict):
            children = [(_step(key), child) for key, child in item.items()]
        elif isinstance(item, list):
            children = [(f"[{index}]", child) for index, child in enumerate(item)]
        else:
            continue
        if depth > limit:
            return where.lstrip(".")
        stack.extend(
            (child, where + step, depth + 1)
            for step, child in reversed(children)
            if isinstance(child, (dict, list))
        )
    return None


_ATOMS = frozenset({str, int, bool, type(None)})


def _count_list(items: list[Any] | tuple[Any, ...]) -> int:
    """Lists of numbers are checked with one C-level ``sum()``: a finite total proves every item
    finite; lists of strings with one ``map(type)``; anything else item by item.

    Only a total that is a plain ``int`` or ``float`` proves anything: ``[0, np.array([1.0, 2.0])]``
    sums to an array (or a tensor, a ``Decimal``...), which ``math.isfinite`` refuses.
    """
    if not items:
        return 0
    first = type(items[0])
    if first is str:
        if set(map(type, items)) == {str}:
            return 0
    elif first is int or first is float or first is bool:
        try:
            total = sum(items)
        except (TypeError, ValueError, ArithmeticError):  # items that do not add up: walk them
            pass
        else:
            if type(total) is int or (type(total) is float and math.isfinite(total)):
                return 0
    elif first.__module__ == "numpy":
        counted = _count_numpy_list(items)
        if counted is not None:
            return counted
    return sum(count_nonfinite(item) for item in items if type(item) not in _ATOMS)


def _count_numpy_list(items: list[Any] | tuple[Any, ...]) -> int | None:
    """A list of numpy values (``list(array)`` gives numpy scalars) counted as one array: 100
    ``float32`` scalars took ~80 µs one by one, ~5 µs so. None (walk them) when they make no
    array of numbers or times: ragged, or mixed with text or objects, whose NaN a text array
    would hide."""
    import numpy as np

    try:
        array = np.asarray(items)
    except (ValueError, TypeError, OverflowError):
        return None
    if array.dtype.kind not in "biufcMm":
        return None
    return _count_numpy_nonfinite(array)


def count_nonfinite(value: Any) -> int:
    """Count NaN/±inf floats nested anywhere in ``value``; they are written as JSON ``null``.

    This runs for every logged sample, so the common shapes (dataclass fields, lists of tokens,
    log-probabilities and strings) take fast paths.
    """
    kind = type(value)
    if kind is float:
        return 0 if math.isfinite(value) else 1
    if kind in _ATOMS:
        return 0
    if kind is list or kind is tuple:
        return _count_list(value)
    if kind is dict:
        return sum(count_nonfinite(item) for item in value.values() if type(item) not in _ATOMS)
    counter = _COUNTERS.get(kind)
    if counter is None:
        counter = _COUNTERS[kind] = _counter_for(kind)
    return counter(value)


def _count_dataclass(value: Any) -> int:
    bad = 0
    for name in _field_names(type(value)):
        item = getattr(value, name)
        item_kind = type(item)
        if item_kind in _ATOMS:
            continue
        bad += _count_list(item) if item_kind is list else count_nonfinite(item)
    return bad


def _count_other(value: Any) -> int:
    if hasattr(value, "model_dump"):
        return count_nonfinite(value.model_dump(mode="python"))
    if isinstance(value, Mapping):
        return sum(count_nonfinite(item) for item in value.values())
    if isinstance(value, (set, frozenset)):
        return sum(count_nonfinite(item) for item in value)
    if isinstance(value, float):  # float subclasses
        return 0 if math.isfinite(value) else 1
    if isinstance(value, Decimal):
        return _count_decimal_nonfinite(value)
    return 0


_COUNTERS: dict[type, Callable[[Any], int]] = {}
"""How :func:`count_nonfinite` walks each type it has met that is not a plain JSON type: decided
once per type (a dataclass check costs more than the walk of a small value)."""


def _counter_for(kind: type) -> Callable[[Any], int]:
    if isinstance(kind, type) and issubclass(kind, enum.Enum):
        return lambda member: count_nonfinite(member.value)  # written as its value
    if dataclasses.is_dataclass(kind):
        return _count_dataclass
    package = kind.__module__.split(".")[0]
    if package == "numpy":
        return _count_numpy_nonfinite
    if package == "torch" and callable(getattr(kind, "tolist", None)):
        return _count_tensor_nonfinite
    return _count_other


def _count_decimal_nonfinite(value: Decimal) -> int:
    """A Decimal is written as a float: NaN, ±Infinity and values beyond the float range become null."""
    try:
        return 0 if math.isfinite(float(value)) else 1
    except ValueError:  # a signalling NaN: encoding refuses it, naming the field
        return 0


_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _field_names(kind: type) -> tuple[str, ...]:
    names = _FIELD_NAMES.get(kind)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(kind))
        _FIELD_NAMES[kind] = names
    return names


def _count_numpy_nonfinite(value: Any) -> int:
    """NaN and ±inf in numpy floats, and NaT (not-a-time) in ``datetime64``/``timedelta64``: all are
    written as null (:func:`_time_text`)."""
    import numpy as np

    if isinstance(value, np.ndarray):
        kind = value.dtype.kind
        if kind in "fc":
            return int(value.size - np.count_nonzero(np.isfinite(value)))
        if kind in "Mm":
            return int(np.count_nonzero(np.isnat(value)))
        if kind == "O":
            return sum(count_nonfinite(x) for x in value.tolist())
        return 0
    if isinstance(value, np.floating):
        return 0 if math.isfinite(float(value)) else 1
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return 1 if np.isnat(value) else 0
    return 0


def _count_tensor_nonfinite(value: Any) -> int:
    """NaN and ±inf in a torch tensor, found without importing torch: the tensor is written through
    its ``tolist()`` (:func:`_default`), so the values counted are exactly those written. Tensors
    whose dtype is not floating (ids, masks) cannot hold NaN and are not converted."""
    if getattr(getattr(value, "dtype", None), "is_floating_point", True) is False:
        return 0
    return count_nonfinite(value.tolist())
