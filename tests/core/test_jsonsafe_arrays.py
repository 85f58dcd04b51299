"""jsonsafe and arrays: numpy datetime64/timedelta64, torch tensors (NaN counted), lists mixing
numbers and arrays, and array layouts that must not change the text written."""

from __future__ import annotations

import datetime
import json
import math
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import numpy as np
import orjson
import pytest

from evalsink import jsonsafe
from evalsink.errors import EncodeError
from evalsink.loggers import DetailsLogger


def _roundtrip(value: Any) -> Any:
    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    return json.loads(jsonsafe.dumps(value), parse_constant=refuse)


def _written_and_counted(value: Any) -> tuple[Any, int]:
    """What ``dumps`` wrote for ``value`` and how many nulls ``count_nonfinite`` reports for it."""
    return _roundtrip({"v": value})["v"], jsonsafe.count_nonfinite(value)


# -- numpy datetime64 / timedelta64 -------------------------------------------------------------
# orjson's own numpy encoder wrote NaT in a datetime64[D] array as "1970-01-01T00:00:00" and cut
# datetime64[ns] to microseconds, without ever asking evalsink.
@pytest.mark.parametrize(
    ("value", "written", "nulls"),
    [
        (np.array(["2025-01-01", "NaT"], dtype="datetime64[D]"), ["2025-01-01", None], 1),
        (np.array(["NaT"], dtype="datetime64[s]"), [None], 1),
        (
            np.array(["2025-01-01T00:00:00.123456789"], dtype="datetime64[ns]"),
            ["2025-01-01T00:00:00.123456789"],
            0,
        ),
        (np.datetime64("2025-01-01T00:00:00.123456789", "ns"), "2025-01-01T00:00:00.123456789", 0),
        (np.datetime64("2025-01-02T03:04:05", "s"), "2025-01-02T03:04:05", 0),
        (np.datetime64("2025-01", "M"), "2025-01", 0),
        (np.datetime64("NaT"), None, 1),
        (
            np.array([["2025-01-01T03", "NaT"], ["NaT", "1969-12-31T23"]], dtype="datetime64[h]"),
            [["2025-01-01T03", None], [None, "1969-12-31T23"]],
            2,
        ),
        (np.array(["2025-01-02", "NaT"], dtype=">M8[D]"), ["2025-01-02", None], 1),  # big-endian
        (
            np.array(["2025-01-01", "2025-01-02", "2025-01-03"], dtype="M8[D]")[::2],
            ["2025-01-01", "2025-01-03"],
            0,
        ),
        (np.array([], dtype="datetime64[s]"), [], 0),
    ],
    ids=[
        "D-with-NaT",
        "s-NaT-only",
        "ns-array",
        "ns-scalar",
        "s-scalar",
        "M-scalar",
        "NaT-scalar",
        "2d-h",
        "big-endian",
        "strided",
        "empty",
    ],
)
def test_datetime64_is_iso_text_at_its_own_unit_and_nat_is_a_counted_null(
    value: Any, written: Any, nulls: int
) -> None:
    assert _written_and_counted(value) == (written, nulls)


@pytest.mark.parametrize(
    ("value", "written", "nulls"),
    [
        (np.timedelta64(5, "s"), "PT5S", 0),
        (np.timedelta64(3, "D"), "P3D", 0),
        (np.timedelta64(-1500, "ms"), "-PT1.500S", 0),
        (np.timedelta64(7, "ns"), "PT0.000000007S", 0),
        (np.timedelta64("NaT"), None, 1),
        (np.array([90, "NaT", 0], dtype="timedelta64[m]"), ["PT90M", None, "PT0M"], 1),
        (np.array([[1, 2]], dtype="timedelta64[10ms]"), [["PT0.010S", "PT0.020S"]], 0),
        (np.array([2, 1], dtype="timedelta64[Y]"), ["P2Y", "P1Y"], 0),
    ],
    ids=["s", "D", "negative-ms", "ns", "NaT", "m-array-NaT", "10ms-multiple", "Y"],
)
def test_timedelta64_is_an_iso_duration_and_nat_is_a_counted_null(
    value: Any, written: Any, nulls: int
) -> None:
    """Before, ``timedelta64[ns]`` was written as a bare integer (its unit lost) and ``[s]`` refused."""
    assert _written_and_counted(value) == (written, nulls)


def test_a_timedelta64_without_a_unit_is_refused_naming_the_field() -> None:
    with pytest.raises(
        EncodeError, match=r"cannot encode doc\.wait as JSON: a numpy timedelta64 with no unit"
    ):
        jsonsafe.dumps({"doc": {"wait": np.array([5], dtype="timedelta64")}})


def test_nat_is_reported_by_the_details_logger() -> None:
    logger = DetailsLogger()
    logger.log("t|x|0", {"when": np.array(["2025-01-01", "NaT"], dtype="datetime64[D]")}, {}, {"acc": 1.0})
    assert logger.nonfinite == {"t|x|0": 1}


# -- torch tensors, without torch ---------------------------------------------------------------
class FakeTensor:
    """Shaped like a ``torch.Tensor`` where evalsink touches one: its module is ``torch``, its
    ``dtype`` says whether it is floating, ``tolist()`` gives Python numbers, adding a number gives
    a tensor and ``float()`` of a tensor of several items raises ``ValueError``, as torch does."""

    __module__ = "torch"

    def __init__(self, values: Any, *, floating: bool = True) -> None:
        self.values = values
        self.dtype = SimpleNamespace(is_floating_point=floating)
        self.converted = 0

    def tolist(self) -> Any:
        self.converted += 1
        return self.values

    def __radd__(self, other: Any) -> FakeTensor:
        if isinstance(self.values, list):
            return FakeTensor([other + v for v in self.values])
        return FakeTensor(other + self.values)

    def __float__(self) -> float:
        if isinstance(self.values, list):
            raise ValueError("only one element tensors can be converted to Python scalars")
        return float(self.values)


@pytest.mark.parametrize(
    ("value", "written", "nulls"),
    [
        (FakeTensor([1.0, math.nan, math.inf]), [1.0, None, None], 2),
        (FakeTensor(math.nan), None, 1),
        (FakeTensor([[math.nan, 1.0], [-math.inf, 2.0]]), [[None, 1.0], [None, 2.0]], 2),
        ({"a": FakeTensor([math.inf])}, {"a": [None]}, 1),
        ([1.0, FakeTensor(math.nan)], [1.0, None], 1),
        ([0, FakeTensor([1.0, 2.0])], [0, [1.0, 2.0]], 0),
    ],
    ids=["1d", "0d", "2d", "in-dict", "after-a-float", "after-an-int"],
)
def test_nan_in_a_torch_tensor_is_counted(value: Any, written: Any, nulls: int) -> None:
    """torch tensors fell to the counter of unknown objects, which counts nothing: their NaN
    became null with no warning."""
    assert _written_and_counted(value) == (written, nulls)


def test_an_integer_tensor_is_not_converted_to_be_counted() -> None:
    ids = FakeTensor([1, 2, 3], floating=False)
    assert jsonsafe.count_nonfinite(ids) == 0
    assert ids.converted == 0


def test_torch_nan_is_reported_by_the_details_logger() -> None:
    logger = DetailsLogger()
    logger.log("t|x|0", {"x": FakeTensor([1.0, math.nan])}, {"s": [0.5, FakeTensor(math.inf)]}, {"acc": 1.0})
    assert logger.nonfinite == {"t|x|0": 2}


def test_real_torch_tensors_are_counted() -> None:
    torch = pytest.importorskip("torch")
    value = {"x": torch.tensor([1.0, math.nan, math.inf]), "y": [0, torch.tensor([1.0, 2.0])]}
    assert _written_and_counted(value) == ({"x": [1.0, None, None], "y": [0, [1.0, 2.0]]}, 2)
    assert jsonsafe.count_nonfinite(torch.tensor([1, 2])) == 0


# -- lists mixing numbers and arrays ------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "written", "nulls"),
    [
        ([0, np.array([1.0, 2.0])], [0, [1.0, 2.0]], 0),
        ([0.5, np.array([1.0, np.nan])], [0.5, [1.0, None]], 1),
        ([0.5, np.array([np.nan])], [0.5, [None]], 1),
        ([True, np.array([np.inf]), 2], [True, [None], 2], 1),
        ([1.0, np.float64("nan")], [1.0, None], 1),
    ],
    ids=["int+array", "float+array-nan", "float+array1", "bool+array+int", "float+np.nan"],
)
def test_a_list_of_a_number_then_an_array_is_counted_and_written(
    value: Any, written: Any, nulls: int
) -> None:
    """``sum([0, array])`` is an array: ``math.isfinite`` of it raised a TypeError that named no
    field, so the sample was refused."""
    assert _written_and_counted(value) == (written, nulls)


def test_a_list_of_a_number_then_an_array_is_logged() -> None:
    logger = DetailsLogger()
    logger.log("t|x|0", {"x": [0, np.array([1.0, 2.0])]}, {}, {"acc": 1.0})
    assert logger.nonfinite == {}


# -- layouts --------------------------------------------------------------------------------------
def test_an_array_is_written_the_same_whatever_its_layout() -> None:
    """A float32 view (``a[::2]``) went through ``tolist()``: ``0.20000000298023224`` where the same
    values contiguous are ``0.2``. Big-endian arrays were refused."""
    values = np.arange(6, dtype=np.float32) * np.float32(0.1)
    layouts = {
        "contiguous": values[::2].copy(),
        "strided": values[::2],
        "fortran": np.asfortranarray(values.reshape(2, 3))[:, ::2],
        "big-endian": values[::2].astype(">f4"),
    }
    written = {name: jsonsafe.dumps(array) for name, array in layouts.items()}
    assert written["contiguous"] == b"[0.0,0.2,0.4]"
    assert written["strided"] == written["big-endian"] == written["contiguous"]
    assert written["fortran"] == b"[[0.0,0.2],[0.3,0.5]]"
    assert jsonsafe.dumps(np.float32(0.1)) == jsonsafe.dumps(np.array(np.float32(0.1))) == b"0.1"


def test_numeric_numpy_values_are_written_as_before() -> None:
    """Not orjson's numpy option any more, but its encoder still writes every numeric array."""
    value = {
        "f64": np.array([0.1, np.nan, -np.inf]),
        "f16": np.array([1.5], dtype=np.float16),
        "i8": np.array([[-1, 2]], dtype=np.int8),
        "u64": np.array([2**64 - 1], dtype=np.uint64),
        "bool": np.array([True, False]),
        "scalars": [np.float64(0.1), np.float32(0.1), np.int64(-7), np.uint8(255), np.bool_(False)],
    }
    assert jsonsafe.dumps(value) == (
        b'{"f64":[0.1,null,null],"f16":[1.5],"i8":[[-1,2]],"u64":[18446744073709551615],'
        b'"bool":[true,false],"scalars":[0.1,0.1,-7,255,false]}'
    )


@pytest.mark.parametrize(
    ("value", "written"),
    [
        (datetime.timedelta(seconds=90), "PT90S"),
        (datetime.timedelta(milliseconds=-500), "-PT0.500000S"),
        (datetime.timedelta(days=1, microseconds=3), "PT86400.000003S"),
        (datetime.timedelta(0), "PT0S"),
    ],
    ids=["90s", "negative-ms", "day-and-us", "zero"],
)
def test_a_python_timedelta_is_an_iso_duration_like_numpys(value: datetime.timedelta, written: str) -> None:
    """It was refused (an EncodeError) while numpy's timedelta64 is written as a duration."""
    assert orjson.loads(jsonsafe.dumps({"doc": {"wait": value}})) == {"doc": {"wait": written}}


NUMPY_LISTS = {
    "float32-scalars": [np.float32(0.5), np.float32("nan"), np.float32("inf"), np.float32(-1)],
    "float64-and-python-floats": [np.float64(1.0), float("nan"), -math.inf, 2.5],
    "float16-overflowing": [np.float16(65504), np.float16("inf")],
    "ints-and-bools": [np.int64(3), np.uint8(7), np.bool_(True), 5],
    "datetimes-with-nat": [np.datetime64("2025-01-02"), np.datetime64("NaT"), np.datetime64("NaT")],
    "timedeltas-with-nat": [np.timedelta64(5, "s"), np.timedelta64("NaT", "s")],
    "arrays-of-one-shape": [np.array([1.0, np.nan]), np.array([np.inf, 2.0])],
    "ragged-arrays": [np.array([1.0, np.nan]), np.array([np.nan])],
    "with-text": [np.float32("nan"), "a", np.float64("inf")],
    "with-none": [np.float64("nan"), None, np.float64(1.0)],
    "with-a-decimal-nan": [np.float64(1.0), Decimal("NaN")],
    "with-a-dict": [np.float64("nan"), {"x": float("nan")}],
}


@pytest.mark.parametrize("items", NUMPY_LISTS.values(), ids=NUMPY_LISTS.keys())
def test_a_list_of_numpy_values_counts_what_its_items_count(items: list[Any]) -> None:
    """Lists led by a numpy value are counted as one array when they make one (``list(array)``
    gives numpy scalars: ~80 µs a 100-item list one by one), and item by item otherwise: the
    count is the same either way."""

    def nulls(value: Any) -> int:
        if isinstance(value, list):
            return sum(map(nulls, value))
        if isinstance(value, dict):
            return sum(map(nulls, value.values()))
        return value is None

    written_nulls = nulls(_roundtrip(items)) - sum(item is None for item in items)
    assert sum(jsonsafe.count_nonfinite(item) for item in items) == written_nulls
    assert jsonsafe.count_nonfinite(items) == written_nulls
    assert jsonsafe.count_nonfinite(tuple(items)) == written_nulls
