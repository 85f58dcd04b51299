"""jsonsafe: strict JSON by documented rules, NaN/inf as null (and counted), errors that name the field."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import enum
import functools
import json
import math
from collections import OrderedDict
from decimal import Decimal
from pathlib import PurePosixPath
from types import MappingProxyType, SimpleNamespace
from typing import Any

import numpy as np
import pydantic
import pytest

from evalsink import jsonsafe
from evalsink.errors import EncodeError, EvalsinkError


@dataclasses.dataclass
class Inner:
    score: float
    values: list[float]


@dataclasses.dataclass
class Outer:
    name: str
    inner: Inner
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class PydanticDoc(pydantic.BaseModel):
    query: str
    gold_index: int
    scores: list[float] = []


class Color(enum.Enum):
    RED = "red"


def _roundtrip(value: Any, **kwargs: Any) -> Any:
    """What ``dumps`` wrote, parsed by the standard library in strict mode (no NaN literals)."""

    def refuse(token: str) -> None:
        raise AssertionError(f"non-standard JSON constant {token}")

    data = jsonsafe.dumps(value, **kwargs)
    assert isinstance(data, bytes)
    return json.loads(data, parse_constant=refuse)


# -- containers ---------------------------------------------------------------------------------
def test_dataclass_pydantic_and_mappings_become_objects() -> None:
    value = {
        "dc": Outer("x", Inner(0.5, [1.0, 2.0]), {"k": 1}),
        "pd": PydanticDoc(query="q", gold_index=2, scores=[0.25]),
        "ordered": OrderedDict([("b", 1), ("a", 2)]),
        "proxy": MappingProxyType({"p": True}),
    }
    assert _roundtrip(value) == {
        "dc": {"name": "x", "inner": {"score": 0.5, "values": [1.0, 2.0]}, "extra": {"k": 1}},
        "pd": {"query": "q", "gold_index": 2, "scores": [0.25]},
        "ordered": {"b": 1, "a": 2},
        "proxy": {"p": True},
    }


def test_tuples_and_sets_become_arrays_sets_sorted() -> None:
    assert _roundtrip({"t": (1, 2), "s": {3, 1, 2}, "f": frozenset({"b", "a"})}) == {
        "t": [1, 2],
        "s": [1, 2, 3],
        "f": ["a", "b"],
    }


def test_unsortable_set_still_encodes() -> None:
    assert sorted(_roundtrip({1, "a"}), key=str) == [1, "a"]


def test_documented_scalar_rules() -> None:
    value = {
        "decimal": Decimal("1.25"),
        "datetime": dt.datetime(2025, 11, 5, 14, 43, 47),
        "date": dt.date(2025, 11, 5),
        "enum": Color.RED,
        "path": PurePosixPath("a/b.txt"),
    }
    assert _roundtrip(value) == {
        "decimal": 1.25,
        "datetime": "2025-11-05T14:43:47",
        "date": "2025-11-05",
        "enum": "red",
        "path": "a/b.txt",
    }


def test_indent_option_gives_the_same_data() -> None:
    value = {"a": [1, {"b": None}]}
    indented = jsonsafe.dumps(value, indent=True)
    assert b"\n" in indented
    assert json.loads(indented) == value


def test_loads_and_to_jsonable() -> None:
    assert jsonsafe.loads(b'{"a": [1, null]}') == {"a": [1, None]}
    plain = jsonsafe.to_jsonable({"x": (1, 2), "dc": Inner(1.0, [])})
    assert plain == {"x": [1, 2], "dc": {"score": 1.0, "values": []}}
    assert type(plain["x"]) is list


# -- numpy ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (np.int64(7), 7),
        (np.int32(-3), -3),
        (np.uint8(255), 255),
        (np.float64(0.5), 0.5),
        (np.float32(0.25), 0.25),
        (np.float16(1.5), 1.5),
        (np.bool_(True), True),
    ],
)
def test_numpy_scalars_become_json_numbers(value: Any, expected: Any) -> None:
    encoded = _roundtrip({"v": value})["v"]
    assert encoded == expected
    assert type(encoded) is type(expected)  # a number (or bool), never the string "7"


def test_numpy_extended_precision_is_rounded_to_a_float_or_refused_by_name() -> None:
    """``longdouble.tolist()`` returns a longdouble: encoding once looped until orjson's recursion
    limit and failed with an error that named no reason."""
    assert _roundtrip({"v": np.longdouble(1.5), "a": np.array([0.25, np.nan], dtype=np.longdouble)}) == {
        "v": 1.5,
        "a": [0.25, None],
    }
    assert jsonsafe.count_nonfinite({"a": np.array([0.25, np.nan], dtype=np.longdouble)}) == 1
    with pytest.raises(EncodeError, match=r"doc\.big as JSON: a numpy longdouble beyond the float range"):
        jsonsafe.dumps({"doc": {"big": np.longdouble("1e400")}})
    with pytest.raises(EncodeError, match=r"doc\.z as JSON: a numpy clongdouble: complex numbers have no"):
        jsonsafe.dumps({"doc": {"z": np.clongdouble(1 + 2j)}})


def test_a_signalling_nan_decimal_is_refused_saying_why() -> None:
    """The message was orjson's "Type is not JSON serializable: decimal.Decimal", as if no Decimal
    could be written."""
    with pytest.raises(
        EncodeError, match=r"cannot encode doc\.d as JSON: a signalling NaN \(Decimal\('sNaN'\)\)"
    ):
        jsonsafe.dumps({"doc": {"d": Decimal("sNaN")}})


def test_numpy_arrays_become_arrays() -> None:
    matrix = np.arange(6, dtype=np.int64).reshape(2, 3)
    value = {
        "ints": matrix,
        "floats": np.array([0.5, 1.5], dtype=np.float32),
        "column": matrix[:, 1],  # not C-contiguous: copied to an array orjson's encoder reads
        "objects": np.array([1, "a"], dtype=object),
    }
    assert _roundtrip(value) == {
        "ints": [[0, 1, 2], [3, 4, 5]],
        "floats": [0.5, 1.5],
        "column": [1, 4],
        "objects": [1, "a"],
    }


# -- NaN and infinity ----------------------------------------------------------------------------
def test_nonfinite_floats_become_null() -> None:
    value = {
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "np": np.float32("nan"),
        "array": np.array([1.0, np.nan, -np.inf]),
        "nested": Outer("o", Inner(math.nan, [math.inf, 1.0])),
        "ok": 1.5,
    }
    assert _roundtrip(value) == {
        "nan": None,
        "inf": None,
        "-inf": None,
        "np": None,
        "array": [1.0, None, None],
        "nested": {"name": "o", "inner": {"score": None, "values": [None, 1.0]}, "extra": {}},
        "ok": 1.5,
    }


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (1.0, 0),
        (math.nan, 1),
        ([math.nan, math.inf, -math.inf, 0.0], 3),
        ((1.0, math.nan), 1),
        ({"a": math.nan, "b": {"c": [math.inf, 2]}}, 2),
        (np.float64("nan"), 1),
        (np.float32("inf"), 1),
        (np.float64(1.0), 0),
        ([np.float64("nan"), 1.0, math.nan], 2),
        (np.array([1.0, np.nan, np.inf, -np.inf]), 3),
        (np.array([[np.nan, 1.0], [2.0, np.nan]], dtype=np.float32), 2),
        (np.array([1, 2, 3]), 0),
        (np.array([math.nan, "a"], dtype=object), 1),
        (Outer("o", Inner(math.nan, [math.inf, 1.0, math.nan]), {"x": np.array([np.nan])}), 4),
        ({"doc": [Inner(math.nan, [])]}, 1),
        (PydanticDoc(query="q", gold_index=0, scores=[math.nan, 1.0]), 1),
        ({math.nan, 1.0}, 1),
        (["text", 1, True, None], 0),
        (None, 0),
    ],
)
def test_count_nonfinite(value: Any, count: int) -> None:
    assert jsonsafe.count_nonfinite(value) == count


def test_count_nonfinite_matches_the_nulls_written() -> None:
    value = {"a": [math.nan, 1.0, Inner(math.inf, [math.nan])], "b": np.array([np.nan, 0.0])}
    text = jsonsafe.dumps(value).decode()
    assert jsonsafe.count_nonfinite(value) == text.count("null") == 4


# -- errors name the field ----------------------------------------------------------------------
@dataclasses.dataclass
class DocWithImages:
    query: str
    images: list[Any]


class Unencodable:
    pass


@pytest.mark.parametrize(
    ("value", "path"),
    [
        ({"doc": {"images": [Unencodable()]}}, "doc.images[0]"),
        ({"doc": DocWithImages("q", [1, Unencodable()])}, "doc.images[1]"),
        ([0, {"a": Unencodable()}], "[1].a"),
        ({"doc": {"my key": Unencodable()}}, "doc['my key']"),
    ],
)
def test_unencodable_value_raises_naming_the_field(value: Any, path: str) -> None:
    with pytest.raises(EncodeError) as info:
        jsonsafe.dumps(value)
    message = str(info.value)
    assert f"cannot encode {path} as JSON" in message
    assert "Unencodable" in message or "not JSON serializable" in message


def test_encode_error_is_an_evalsink_error_and_a_type_error() -> None:
    with pytest.raises(EncodeError) as info:
        jsonsafe.dumps(object())
    assert isinstance(info.value, EvalsinkError)
    assert isinstance(info.value, TypeError)


def test_lone_surrogate_names_the_field() -> None:
    with pytest.raises(EncodeError, match=r"doc\.query") as info:
        jsonsafe.dumps({"doc": {"query": "ok \ud800 bad"}})
    assert "surrogate" in str(info.value)


def test_lone_surrogate_inside_a_dataclass_names_the_field() -> None:
    with pytest.raises(EncodeError, match=r"doc\.images\[0\]"):
        jsonsafe.dumps({"doc": DocWithImages("fine", ["\udfff"])})


def test_non_string_keys_that_json_can_hold_are_stringified() -> None:
    assert _roundtrip({1: "a", 2.5: "b", False: "c", None: "d"}) == {
        "1": "a",
        "2.5": "b",
        "false": "c",
        "null": "d",
    }


def test_unusable_key_names_the_mapping_and_the_key() -> None:
    with pytest.raises(EncodeError) as info:
        jsonsafe.dumps({"doc": {"fine": 1, ("a", 1): 2}})
    message = str(info.value)
    assert "cannot encode doc as JSON" in message
    assert "('a', 1)" in message
    assert "tuple" in message


# -- configs -------------------------------------------------------------------------------------
def prompt_fn(line: dict[str, Any], task_name: str) -> str:
    return line["q"]


class MetricClass:
    pass


def test_config_mode_names_callables_and_classes() -> None:
    value = {
        "prompt_function": prompt_fn,
        "cls": MetricClass,
        "partial": functools.partial(prompt_fn, task_name="x"),
        "builtin": len,
        "pydantic_class": PydanticDoc,
    }
    assert _roundtrip(value, config=True) == {
        "prompt_function": "prompt_fn",
        "cls": "MetricClass",
        "partial": "prompt_fn",
        "builtin": "len",
        "pydantic_class": "PydanticDoc",
    }
    assert jsonsafe.to_jsonable({"f": prompt_fn}, config=True) == {"f": "prompt_fn"}


def test_config_mode_writes_names_not_qualified_names() -> None:
    def score() -> None: ...  # a closure, as lighteval's scorers are: qualname has "<locals>"

    assert _roundtrip({"scorer": score, "method": MetricClass.__init__}, config=True) == {
        "scorer": "score",
        "method": "__init__",
    }


class PrintsItself:
    """A metric object as lighteval's ``ExactMatches``: not callable, with its own repr."""

    def __init__(self) -> None:
        self.aggregation_function = max

    def __repr__(self) -> str:
        return "PrintsItself(aggregation_function=max)"


class PrintsNothing:
    """A metric object with no fields and no repr of its own (lighteval's ``DropMetrics()``)."""


def test_config_mode_writes_objects_with_their_own_repr_as_text() -> None:
    value = {"sample_level_fn": PrintsItself(), "bare": PrintsNothing(), "ns": SimpleNamespace(a=1)}
    assert _roundtrip(value, config=True) == {
        "sample_level_fn": "PrintsItself(aggregation_function=max)",
        "bare": {},
        "ns": {"a": 1},  # an attribute bag: its attributes, not "namespace(a=1)"
    }


@dataclasses.dataclass
class WithHiddenField:
    """A dataclass whose field starts with "_" and which sets an attribute that is not a field."""

    query: str
    _source: str = "mmlu"

    def __post_init__(self) -> None:
        self.full_name = f"{self.query}|0"


def test_dataclasses_are_written_as_their_fields_exactly() -> None:
    # as dataclasses.asdict (lighteval's encoding): the "_" field kept, the extra attribute not
    expected = {"query": "q", "_source": "mmlu"}
    assert dataclasses.asdict(WithHiddenField("q")) == expected
    assert _roundtrip(WithHiddenField("q")) == expected
    assert _roundtrip({"cfg": WithHiddenField("q")}, config=True) == {"cfg": expected}
    assert _roundtrip({1: WithHiddenField("q")}) == {"1": expected}  # the non-string-key path too


def test_callables_are_refused_outside_config_mode() -> None:
    with pytest.raises(EncodeError, match="prompt_function"):
        jsonsafe.dumps({"prompt_function": prompt_fn})


class SlotsOnly:
    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 1


class PlainConfig:
    def __init__(self) -> None:
        self.batch_size = 8
        self.nested = SimpleNamespace(temperature=0.5, _cache="hidden")
        self._private = "hidden"


def test_config_mode_writes_plain_objects_as_their_public_attributes() -> None:
    value = {"ns": SimpleNamespace(model_name="org/m", revision=None), "obj": PlainConfig()}
    assert _roundtrip(value, config=True) == {
        "ns": {"model_name": "org/m", "revision": None},
        "obj": {"batch_size": 8, "nested": {"temperature": 0.5}},
    }
    assert jsonsafe.to_jsonable(SimpleNamespace(a=(1, 2)), config=True) == {"a": [1, 2]}


def test_plain_objects_are_refused_outside_config_mode() -> None:
    with pytest.raises(EncodeError, match=r"cannot encode cfg\.ns as JSON"):
        jsonsafe.dumps({"cfg": {"ns": SimpleNamespace(a=1)}})


@pytest.mark.parametrize("thing", [object(), SlotsOnly()], ids=["object", "slots"])
def test_config_mode_still_refuses_objects_without_attributes_or_call(thing: Any) -> None:
    with pytest.raises(EncodeError, match=r"cannot encode cfg\.thing as JSON"):
        jsonsafe.dumps({"cfg": {"thing": thing}}, config=True)


@pytest.mark.parametrize("fine", [prompt_fn, SimpleNamespace(a=1)], ids=["callable", "namespace"])
def test_config_mode_error_names_the_bad_field_not_an_encodable_one(fine: Any) -> None:
    assert jsonsafe.to_jsonable({"fine": fine}, config=True)  # encodes on its own
    with pytest.raises(EncodeError, match=r"cannot encode cfg\.bad as JSON"):
        jsonsafe.dumps({"cfg": {"fine": fine, "bad": object()}}, config=True)


def test_secret_str_is_redacted_when_encoded() -> None:
    class Model(pydantic.BaseModel):
        api_token: pydantic.SecretStr
        other: str

    out = _roundtrip(Model(api_token=pydantic.SecretStr("hf_abc123"), other="x"))
    assert out == {"api_token": jsonsafe.REDACTED, "other": "x"}
    encoded = jsonsafe.dumps(Model(api_token=pydantic.SecretStr("hf_abc123"), other="x"))
    assert b"hf_abc123" not in encoded


# -- secrets -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "key",
    [
        "hf_token",
        "HF_TOKEN",
        "token",
        "use_auth_token",
        "access_token",
        "api_key",
        "apikey",
        "openai_api_key",
        "password",
        "db.password",
        "secret",
        "credentials",
    ],
)
def test_looks_secret(key: str) -> None:
    assert jsonsafe.looks_secret(key)


@pytest.mark.parametrize(
    "key",
    [
        "max_new_tokens",
        "tokenizer",
        "model_name",
        "stop_tokens",
        "add_special_tokens",
        "monkey",
        "tokens",
        # tokenizer settings that end in "token" but hold no credential
        "pad_token",
        "eos_token",
        "bos_token",
        "unk_token",
        "sep_token",
        "cls_token",
        "mask_token",
        "PAD_TOKEN",
        "pad_token_id",
        "eos_token_ids",
        "decoder_start_token_id",
        "max_tokens",
        "max_length_tokens",
        "prompt_tokens_count",
        "truncated_token_count",
    ],
)
def test_does_not_look_secret(key: str) -> None:
    assert not jsonsafe.looks_secret(key)


def test_redact_secrets_at_any_depth_leaving_the_rest() -> None:
    config = {
        "model_name": "org/model",
        "hf_token": "hf_live_value",
        "tokenizer": "org/tok",
        "generation_parameters": {"max_new_tokens": 256, "api_key": "sk-123", "temperature": 0.0},
        "endpoints": [{"password": "p4ss", "url": "http://x"}],
        "token": None,  # nothing to hide
        "use_auth_token": True,  # a flag, not a credential
        "hf_token_ttl": 3600,
        "pad_token": "<pad>",
        "eos_token_id": 2,
    }
    redacted = jsonsafe.redact_secrets(config)
    assert redacted == {
        "model_name": "org/model",
        "hf_token": jsonsafe.REDACTED,
        "tokenizer": "org/tok",
        "generation_parameters": {"max_new_tokens": 256, "api_key": jsonsafe.REDACTED, "temperature": 0.0},
        "endpoints": [{"password": jsonsafe.REDACTED, "url": "http://x"}],
        "token": None,
        "use_auth_token": True,
        "hf_token_ttl": 3600,
        "pad_token": "<pad>",
        "eos_token_id": 2,
    }
    assert config["hf_token"] == "hf_live_value"  # the input is not modified


@pytest.mark.parametrize(
    "config",
    [{"api_key": ["sk-one", "sk-two"]}, {"credentials": {"user": "me", "pass": "sk-one"}}],
    ids=["list", "dict"],
)
def test_redact_secrets_hides_containers_of_strings_under_a_secret_key(config: dict[str, Any]) -> None:
    assert "sk-one" not in json.dumps(jsonsafe.redact_secrets(config))


@pytest.mark.parametrize(
    ("text", "redacted"),
    [
        (
            "pretrained=org/model,api_key=sk-live-1,revision=main",
            "pretrained=org/model,api_key=**********,revision=main",
        ),
        ("https://user:p4ss-word@proxy:8080/v1", "https://user:**********@proxy:8080/v1"),
        ("https://host/api?token=abc123&model=x", "https://host/api?token=**********&model=x"),
        ("hf_token=hf_live other=1", "hf_token=********** other=1"),
        ("db.password=zz;port=5432", "db.password=**********;port=5432"),
        (
            "max_new_tokens=256,pad_token=<pad>,eos_token_id=2",
            "max_new_tokens=256,pad_token=<pad>,eos_token_id=2",
        ),
        ("https://user@host/path", "https://user@host/path"),
        ("a = b, x=y and me@example.com", "a = b, x=y and me@example.com"),
    ],
    ids=[
        "model_args",
        "url-password",
        "query-string",
        "space-separated",
        "dotted-key",
        "tokenizer-args",
        "url-without-password",
        "no-credential",
    ],
)
def test_redact_secrets_finds_credentials_written_inside_strings(text: str, redacted: str) -> None:
    assert jsonsafe.redact_secrets({"model_args": text, "nested": [text]}) == {
        "model_args": redacted,
        "nested": [redacted],
    }


@pytest.mark.parametrize(
    "key", [Color.RED, dt.datetime(2025, 11, 5, 14, 43, 47), dt.date(2025, 11, 5), 7, 2.5, None]
)
def test_an_accepted_non_string_key_is_not_blamed_for_another_fields_failure(key: Any) -> None:
    assert len(_roundtrip({key: 1})) == 1  # the key alone encodes fine
    with pytest.raises(EncodeError, match=r"cannot encode doc\.images\[0\] as JSON"):
        jsonsafe.dumps({key: 1, "doc": {"images": [Unencodable()]}})


def test_enum_key_is_its_value() -> None:
    assert _roundtrip({Color.RED: 1}) == {"red": 1}


# -- bytes -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("raw", [b"\x89PNG\x00\xff", bytearray(b"\x00"), memoryview(b"abc"), b""])
def test_bytes_become_a_base64_object_that_decodes_back(raw: Any) -> None:
    data = jsonsafe.dumps({"doc": {"image": raw, "images": [raw]}})

    plain = json.loads(data)
    expected = {"$evalsink.bytes": base64.b64encode(bytes(raw)).decode()}
    assert plain == {"doc": {"image": expected, "images": [expected]}}
    assert jsonsafe.has_bytes(data)
    assert jsonsafe.decode_bytes(plain) == {"doc": {"image": bytes(raw), "images": [bytes(raw)]}}


def test_decode_bytes_leaves_other_objects_alone() -> None:
    plain = {"a": {"$evalsink.bytes": "AA==", "b": 1}, "c": [{"$evalsink.bytes": 7}], "d": "x"}
    assert jsonsafe.decode_bytes(plain) == plain
    assert not jsonsafe.has_bytes(jsonsafe.dumps({"text": "$evalsink.bytes", "k": ["$evalsink.bytes"]}))


def test_decoded_records_encode_again_unchanged() -> None:
    """Sinks encode the records they receive (table cells, files): the bytes stay bytes."""
    data = jsonsafe.dumps({"doc": {"images": [{"path": None, "bytes": b"\x89PNG"}]}})
    assert jsonsafe.dumps(json.loads(data)) == data
    assert jsonsafe.decode_bytes(json.loads(data))["doc"]["images"][0]["bytes"] == b"\x89PNG"


def test_text_under_the_bytes_key_that_is_not_base64_is_left_as_it_is() -> None:
    """The caller's own object with the reserved key: no bytes to stand for, so nothing to decode."""
    plain = {"x": {"$evalsink.bytes": "not base64!"}, "y": [{"$evalsink.bytes": 1}]}
    assert jsonsafe.decode_bytes(plain) == plain
    assert jsonsafe.describe_bytes(plain) == plain
    assert jsonsafe.bytes_of({"$evalsink.bytes": "AA=="}) == b"\x00"
    assert jsonsafe.bytes_of({"$evalsink.bytes": "AA==", "more": 1}) is None


def test_an_image_whose_file_was_closed_before_it_was_loaded_keeps_the_files_bytes(tmp_path: Any) -> None:
    """``with Image.open(path) as image: pass`` leaves an image PIL can no longer read."""
    image_module = pytest.importorskip("PIL.Image")
    path = tmp_path / "a.png"
    image_module.new("RGB", (3, 2), "red").save(path)
    with image_module.open(path) as image:
        pass
    encoded = json.loads(jsonsafe.dumps({"image": image}))
    assert encoded["image"]["path"] == str(path)
    assert jsonsafe.decode_bytes(encoded)["image"]["bytes"] == path.read_bytes()


def test_pil_is_not_imported_to_check_for_images() -> None:
    import subprocess
    import sys

    code = (
        "import sys\nfrom evalsink import jsonsafe\njsonsafe.dumps({'b': b'x'})\nprint('PIL' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


@pytest.mark.parametrize("size", [0, 1, 2, 3, 4, 5, 1234])
def test_describe_bytes_says_the_size(size: int) -> None:
    plain = json.loads(jsonsafe.dumps({"images": [{"path": None, "bytes": bytes(size)}], "n": 1}))
    unit = "byte" if size == 1 else "bytes"
    described = jsonsafe.describe_bytes(plain)
    assert described == {"images": [{"path": None, "bytes": f"<{size:,} {unit}>"}], "n": 1}
