"""The logger's copy of a sample must be what decoding its JSON line gives, or not be made at all."""

from __future__ import annotations

import dataclasses
import enum
import math
from decimal import Decimal
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from evalsink import jsonsafe
from evalsink.loggers import DetailsLogger
from evalsink.snapshot import NotPlainError, plain_copy, plain_record


class Method(str, enum.Enum):
    GENERATIVE = "GENERATIVE"


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Doc:
    query: str
    choices: list[str]
    gold_index: int | list[int]
    _private: int = 7
    method: Method = Method.GENERATIVE
    specific: dict[str, Any] | None = None


@dataclasses.dataclass(slots=True)
class Slotted:
    value: int = 1


def _same(left: Any, right: Any) -> bool:
    """Equal values and the same container and scalar types (ints and their subclasses alike)."""
    if isinstance(left, dict) and isinstance(right, dict):
        return list(left) == list(right) and all(_same(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(_same(a, b) for a, b in zip(left, right, strict=True))
    if type(left) is float or type(right) is float:
        return type(left) is type(right) and left == right
    if isinstance(left, bool) or isinstance(right, bool):
        return type(left) is type(right) and left == right
    return type(left) is type(right) or (isinstance(left, int) and isinstance(right, int) and left == right)


def _decoded(value: Any) -> Any:
    return orjson.loads(jsonsafe.dumps(value))


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.sampled_from([Method.GENERATIVE, Level.HIGH]),
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=6),
        st.lists(children, max_size=6).map(tuple),
        st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=8),
        st.lists(st.integers(min_value=-(2**63), max_value=2**63 - 1), max_size=8),
        st.dictionaries(st.text(max_size=5), children, max_size=5),
        st.builds(Doc, query=st.text(), choices=st.lists(st.text(), max_size=4), gold_index=children),
    ),
    max_leaves=30,
)


@settings(max_examples=400, deadline=None)
@given(values)
def test_the_copy_equals_the_decoded_json_and_counts_the_nonfinite_floats(value: Any) -> None:
    copy, bad = plain_copy(value)
    assert _same(copy, _decoded(value))
    assert bad == jsonsafe.count_nonfinite(value)


@pytest.mark.parametrize(
    "value",
    [
        Decimal("1.5"),
        {1: "non-string key"},
        Slotted(),
        {"nested": [Slotted()]},
        {1.5, 2.5},
        [1, Decimal("2")],
        type("Str", (str,), {})("a str subclass"),
    ],
    ids=[
        "decimal",
        "int-key",
        "slots-dataclass",
        "nested-slots",
        "set",
        "decimal-in-numbers",
        "str-subclass",
    ],
)
def test_values_whose_encoding_is_not_copied_are_refused(value: Any) -> None:
    jsonsafe.dumps(value)  # encodable all the same
    with pytest.raises(NotPlainError):
        plain_copy(value)


def test_numpy_values_are_refused_not_copied() -> None:
    np = pytest.importorskip("numpy")
    for value in (np.float32(1.5), [np.int64(1), np.int64(2)], [1.0, np.float64(2.0)], np.arange(3)):
        with pytest.raises(NotPlainError):
            plain_copy(value)


def test_lists_are_copied_so_later_changes_do_not_reach_the_record() -> None:
    tokens = [1, 2, 3]
    record, bad = plain_record("t", {"q": "x"}, {"input_tokens": tokens}, {"em": math.nan})
    tokens.append(4)
    assert record is not None
    assert record["model_response"]["input_tokens"] == [1, 2, 3]
    assert record["metric"] == {"em": None}
    assert bad == 1


def test_dataclasses_are_copied_as_orjson_encodes_them() -> None:
    doc = Doc(query="q", choices=["a"], gold_index=0)
    doc.extra = "set after init"  # type: ignore[attr-defined]
    copy, _ = plain_copy(doc)
    assert copy == _decoded(doc)
    assert "_private" not in copy
    assert copy["extra"] == "set after init"


def test_logged_batches_carry_the_copies_and_sinks_can_read_either() -> None:
    batches = []
    logger = DetailsLogger(on_batch=batches.append)
    logger.log("t", Doc(query="q", choices=["a", "b"], gold_index=[0]), {"text": [math.inf]}, {"em": 1.0})
    logger.log("t", {"query": Decimal("1")}, {"text": ["x"]}, {"em": 0.0})  # not plain: decoded
    logger.flush()
    (batch,) = batches
    shared = list(batch.records(shared=True))
    assert shared == list(batch.records()) == [orjson.loads(line) for line in batch.lines()]
    assert logger.nonfinite == {"t": 1}
    assert next(batch.records(shared=True)) is shared[0]  # the same objects for every sink
