"""A decoded copy of a logged sample, made from the live objects instead of from its JSON.

Every sample is encoded to JSON when it is logged (the spool line). A sink that converts rows to
columns (the local sink's parquet files) would otherwise decode that JSON again, which creates a
Python object for every token id and log-probability: for lighteval-shaped rows that decoding cost
more than the conversion itself. While the objects are still at hand, a copy with the same values
is much cheaper: lists of numbers and strings are copied with one C-level call, dataclasses become
dicts, and only containers are new objects.

The copy must equal ``orjson.loads(line)`` exactly, so a file written from it is the file that
decoding would have given. It is therefore made only from values whose encoding is fully known:
``str``, ``int``, ``float``, ``bool``, ``None``, lists, tuples, dicts with string keys, enums and
dataclasses that keep their fields in ``__dict__``. Anything else (numpy, pydantic models,
``Decimal``, datetimes, subclasses, slotted dataclasses) raises :class:`NotPlainError`, and the caller
keeps the JSON line only. The walk also counts NaN and ±infinity, which become ``None`` as they
become ``null`` in the JSON, so it replaces :func:`evalsink.jsonsafe.count_nonfinite` for such
samples.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any

from evalsink.jsonsafe import sum_of_numbers

_ATOMS = frozenset({str, int, bool, type(None)})
_DATACLASSES: dict[type, bool] = {}  # class -> whether orjson encodes it from its instance __dict__


class NotPlainError(Exception):
    """The value holds a type whose JSON encoding is not copied here: decode the JSON instead."""


def plain_copy(value: Any) -> tuple[Any, int]:
    """``(copy, nonfinite)``: the value as ``orjson.loads(orjson.dumps(value))`` would give it,
    and how many NaN/±inf floats became ``None``. Raises :class:`NotPlainError`."""
    bad = [0]
    return _copy(value, bad), bad[0]


def _copy(value: Any, bad: list[int]) -> Any:
    """The copy of one value; NaN/±inf are counted in ``bad[0]`` (runs per logged sample: no
    tuples returned, the common types first)."""
    kind = type(value)
    if kind in _ATOMS:
        return value
    if kind is float:
        if math.isfinite(value):
            return value
        bad[0] += 1
        return None
    if kind is list or kind is tuple:
        return _copy_list(value, bad)
    if kind is dict:
        for key in value:
            if type(key) is not str:
                raise NotPlainError(type(key))  # non-string keys: the encoder's conversion rules apply
        return _copy_items(value, bad)
    plain_dataclass = _DATACLASSES.get(kind)
    if plain_dataclass is None:
        plain_dataclass = _DATACLASSES[kind] = (
            dataclasses.is_dataclass(kind)
            and not hasattr(kind, "__slots__")
            and not issubclass(kind, enum.Enum)
        )
    if plain_dataclass:
        attributes = getattr(value, "__dict__", None)
        if type(attributes) is not dict:
            raise NotPlainError(kind)
        # orjson encodes such a dataclass as its instance __dict__ without "_"-prefixed names
        return _copy_items(attributes, bad, skip_private=True)
    if isinstance(value, enum.Enum):
        return _copy(value.value, bad)
    raise NotPlainError(kind)


def _copy_items(mapping: dict[str, Any], bad: list[int], *, skip_private: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, item in mapping.items():
        if skip_private and key[:1] == "_":
            continue
        kind = type(item)
        if kind in _ATOMS:
            out[key] = item
        elif kind is list:
            out[key] = _copy_list(item, bad)
        else:
            out[key] = _copy(item, bad)
    return out


def _copy_list(items: list[Any] | tuple[Any, ...], bad: list[int]) -> list[Any]:
    """Lists of numbers are proven plain by one ``sum()``: it fails on anything but numbers, its
    total is an exact ``int`` or ``float`` only when every item is one (numpy scalars, ``Decimal``
    and ``Fraction`` give their own types; ``int`` subclasses such as ``IntEnum`` add up to ``int``
    and are kept, equal to the ints the JSON holds), and it is finite only when every item is."""
    if not items:
        return []
    total = sum_of_numbers(items)
    if total is not None:
        kind = type(total)
        if kind is int or (kind is float and math.isfinite(total)):
            return list(items)
    out = []
    for item in items:
        out.append(item if type(item) in _ATOMS else _copy(item, bad))
    return out


def plain_record(
    task_name: str, doc: Any, model_response: Any, metrics: Any
) -> tuple[dict[str, Any] | None, int | None]:
    """The spool record of a sample as decoded JSON, and its NaN/±inf count; ``(None, None)``
    when some value is not plain."""
    bad = [0]
    try:
        record = {
            "task_name": task_name,
            "doc": _copy(doc, bad),
            "model_response": _copy(model_response, bad),
            "metric": _copy(metrics, bad),
        }
    except NotPlainError:
        return None, None
    return record, bad[0]
