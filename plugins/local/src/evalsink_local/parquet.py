"""Spool records -> one parquet file per task, in bounded memory, whatever the types do.

Writing batch by batch with the first batch's schema fails (or silently drops data) when a nested
key first appears later or a metric changes type between samples; that is how lighteval loses whole
runs (``ArrowInvalid``). So the schema is decided deliberately:

* **Fast path** (one read): the first batch's inferred schema is used while every later batch
  fits it (a batch with nulls where the schema has values, or ints where it has doubles, is
  converted to it). Most evaluations never leave this path.
* **Full path** (two reads), taken as soon as a batch does not fit: the partial file is discarded;
  the task's records are read once, in batches, letting Arrow infer each batch's types (a
  pure-Python inference takes over for a batch Arrow refuses) and merging them with
  :func:`unify`; then read again and written with that schema.

Merging rules: missing keys are null; ``int`` widens to ``double``; structs merge their fields;
lists merge their item types; any other disagreement (a float in one sample, a string in the next;
a bool and a number; an empty object) turns that field into a string column holding each value's
JSON text, marked with the field metadata ``evalsink.encoding = json``. Nothing is dropped.

Bytes arrive as ``{"$evalsink.bytes": "<base64>"}`` objects (JSON has no bytes, see
:mod:`evalsink.jsonsafe`) and are written as ``binary`` columns, decoded: an image is the struct
``{path, bytes}`` that ``datasets`` writes. Files with bytes take the full path.

Depth: Parquet readers refuse a schema nested more than 100 levels deep (pyarrow: "Parquet schema
too deeply nested"), and a list costs two levels. So an object or list that sits
:data:`MAX_NESTING` levels below its column is written as JSON text, whatever it holds: the file
stays readable and the value is kept whole.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager
from itertools import chain, islice
from typing import IO, Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from evalsink.jsonsafe import BYTES_KEY, bytes_of, decode_bytes

logger = logging.getLogger("evalsink")

COLUMNS = ("doc", "metric", "model_response")
JSON_METADATA = {b"evalsink.encoding": b"json"}

# While merging, a JSON-text field is marked with large_string, a type Arrow never infers from
# Python values; the final schema turns it into string + JSON_METADATA.
_JSON = pa.large_string()
MAX_NESTING = 32
"""Objects and lists nested this deep below ``doc``/``metric``/``model_response`` become JSON text
(at most 2 + 2 x 32 + 1 Parquet schema levels, well within readers' limit of 100)."""
_INT64_RANGE = (-(2**63), 2**63 - 1)
_POOL = pa.system_memory_pool()
"""Where the converted columns are allocated. Arrow's default pool (mimalloc in the wheels) keeps
freed pages for reuse, so every row group converted raised the process's peak RSS: with the
system allocator the 1 x 50,000 benchmark peaks at 294 MB instead of 329 MB (medians of 3), and
its save() takes about 1 s (10 %) longer (docs/performance.md). Passed per call, so the user's
process keeps whatever pool it chose."""


def unify(left: pa.DataType | None, right: pa.DataType, *, widen_ints: bool = True) -> pa.DataType:
    """The narrowest type that holds values of both types (JSON text when nothing else does).

    ``widen_ints=False`` keeps ints and doubles apart (JSON text): the fallback when an int
    beyond 2**53 cannot be stored exactly as a double.
    """
    if left is None or left == right:
        return right
    if pa.types.is_null(left):
        return right
    if pa.types.is_null(right):
        return left
    if _JSON in (left, right):
        return _JSON
    numeric = {pa.int64(), pa.float64()}
    if left in numeric and right in numeric and widen_ints:
        return pa.float64()
    if pa.types.is_list(left) and pa.types.is_list(right):
        return pa.list_(unify(left.value_type, right.value_type, widen_ints=widen_ints))
    if pa.types.is_struct(left) and pa.types.is_struct(right):
        fields: dict[str, pa.DataType] = {
            left.field(i).name: left.field(i).type for i in range(left.num_fields)
        }
        for i in range(right.num_fields):
            child = right.field(i)
            fields[child.name] = unify(fields.get(child.name), child.type, widen_ints=widen_ints)
        return pa.struct([pa.field(name, kind) for name, kind in fields.items()])
    return _JSON


def python_type(value: Any, *, widen_ints: bool = True) -> pa.DataType:
    """Arrow type of one decoded JSON value (used where Arrow's own inference refuses a batch)."""
    if value is None:
        return pa.null()
    if isinstance(value, bool):
        return pa.bool_()
    if isinstance(value, int):
        return pa.int64() if _INT64_RANGE[0] <= value <= _INT64_RANGE[1] else _JSON
    if isinstance(value, float):
        return pa.float64()
    if isinstance(value, str):
        return pa.string()
    if isinstance(value, list):
        item: pa.DataType | None = None
        for element in value:
            item = unify(item, python_type(element, widen_ints=widen_ints), widen_ints=widen_ints)
        return pa.list_(item if item is not None else pa.null())
    if isinstance(value, dict):
        if BYTES_KEY in value:  # bytes, or the reserved key used otherwise: kept whole as JSON text
            return pa.binary() if bytes_of(value) is not None else _JSON
        return pa.struct(
            [pa.field(str(key), python_type(child, widen_ints=widen_ints)) for key, child in value.items()]
        )
    return _JSON


@functools.lru_cache(maxsize=1024)
def _double_paths(kind: pa.DataType) -> Any:
    """Where a type holds ``double`` leaves, as a tree walked by :func:`_holds_bools`: ``()`` for
    a double, ``("list", items)``, ``("struct", ((name, child), ...))``; None when it holds none."""
    if pa.types.is_floating(kind):
        return ()
    if pa.types.is_list(kind):
        items = _double_paths(kind.value_type)
        return None if items is None else ("list", items)
    if pa.types.is_struct(kind):
        children = tuple(
            (kind.field(i).name, child)
            for i in range(kind.num_fields)
            if (child := _double_paths(kind.field(i).type)) is not None
        )
        return ("struct", children) if children else None
    return None


def _holds_bools(values: Iterable[Any], kind: pa.DataType) -> bool:
    """Whether a bool sits where ``kind`` (the type Arrow gave ``values``) has a ``double``.

    Arrow's inference takes a bool mixed with floats for a number, at any depth (``[[True],
    [0.5]]`` is ``list<double>`` ``[[1.0], [0.5]]``), and converting to a ``double`` type does the
    same, silently; with ints it refuses. So only the values under double leaves are looked at,
    one level at a time with C-level iteration (``bool in map(type, ...)``): a long list of
    log-probabilities costs a pass in C, not a Python loop, and most columns hold no double.
    """
    paths = _double_paths(kind)
    return paths is not None and _bool_under(values, paths)


def _bool_under(values: Iterable[Any], paths: Any) -> bool:
    if paths == ():
        return bool in map(type, values)
    if paths[0] == "list":
        return _bool_under(chain.from_iterable(v for v in values if type(v) is list), paths[1])
    objects = [value for value in values if type(value) is dict]
    return any(_bool_under([obj.get(name) for obj in objects], child) for name, child in paths[1])


def infer_type(values: list[Any], *, widen_ints: bool = True) -> pa.DataType:
    try:
        if not widen_ints:
            raise OverflowError  # Arrow's inference would merge what must stay apart: infer in Python
        inferred = pa.array(values).type
        if _holds_bools(values, inferred):
            raise OverflowError  # Arrow took bools for numbers: infer in Python (JSON text there)
        if _holds_bytes_key(inferred):
            # Arrow merges bytes objects with other objects ({} included) into one struct: infer
            # in Python, which keeps bytes apart (a binary column, or JSON text where they mix)
            raise OverflowError
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
        inferred = None
        for value in values:
            inferred = unify(inferred, python_type(value, widen_ints=widen_ints), widen_ints=widen_ints)
        return inferred if inferred is not None else pa.null()
    return _normalise(inferred)


@functools.lru_cache(maxsize=1024)
def _holds_bytes_key(kind: pa.DataType) -> bool:
    if pa.types.is_struct(kind):
        return any(
            kind.field(i).name == BYTES_KEY or _holds_bytes_key(kind.field(i).type)
            for i in range(kind.num_fields)
        )
    if pa.types.is_list(kind):
        return _holds_bytes_key(kind.value_type)
    return False


@functools.lru_cache(maxsize=1024)
def _normalise(kind: pa.DataType) -> pa.DataType:
    """Map Arrow's inferred types onto the merge lattice (e.g. uint64 for huge ints -> JSON)."""
    if pa.types.is_struct(kind):
        if any(kind.field(i).name == BYTES_KEY for i in range(kind.num_fields)):
            return _JSON  # bytes objects: never the fast path (see infer_type)
        return pa.struct(
            [pa.field(kind.field(i).name, _normalise(kind.field(i).type)) for i in range(kind.num_fields)]
        )
    if pa.types.is_list(kind):
        return pa.list_(_normalise(kind.value_type))
    if pa.types.is_integer(kind) and kind != pa.int64():
        return _JSON
    return kind


@functools.lru_cache(maxsize=1024)
def _finalise(name: str, kind: pa.DataType | None, depth: int = 0) -> pa.Field:
    """Turn the merge marker into string + metadata; empty structs (not writable) and objects or
    lists nested :data:`MAX_NESTING` deep (not readable) into JSON text."""
    if kind is None:
        kind = pa.null()
    nested = pa.types.is_struct(kind) or pa.types.is_list(kind)
    if (
        kind == _JSON
        or (pa.types.is_struct(kind) and kind.num_fields == 0)
        or (nested and depth >= MAX_NESTING)
    ):
        return pa.field(name, pa.string(), metadata=JSON_METADATA)
    if pa.types.is_struct(kind):
        return pa.field(
            name,
            pa.struct(
                [_finalise(kind.field(i).name, kind.field(i).type, depth + 1) for i in range(kind.num_fields)]
            ),
        )
    if pa.types.is_list(kind):
        item = _finalise("item", kind.value_type, depth + 1)
        return pa.field(name, pa.list_(item))
    return pa.field(name, kind)


def _needs_encoding(field: pa.Field) -> bool:  # not cached: Field equality ignores metadata
    if field.metadata and field.metadata.get(b"evalsink.encoding") == b"json":
        return True
    kind = field.type
    if pa.types.is_binary(kind):
        return True
    if pa.types.is_struct(kind):
        return any(_needs_encoding(kind.field(i)) for i in range(kind.num_fields))
    if pa.types.is_list(kind):
        return _needs_encoding(kind.value_field)
    return False


def _encode(value: Any, field: pa.Field) -> Any:
    """Shape a value for ``field``: JSON-text fields become their JSON encoding."""
    if value is None:
        return None
    if field.metadata and field.metadata.get(b"evalsink.encoding") == b"json":
        return orjson.dumps(value).decode()
    kind = field.type
    if pa.types.is_binary(kind):
        return decode_bytes(value)
    if pa.types.is_struct(kind) and isinstance(value, dict):
        return {
            kind.field(i).name: _encode(value.get(kind.field(i).name), kind.field(i))
            for i in range(kind.num_fields)
        }
    if pa.types.is_list(kind) and isinstance(value, list):
        return [_encode(item, kind.value_field) for item in value]
    return value


MAX_GROUP_BYTES = 16 << 20
"""JSON bytes of the records converted at once, at most, when their sizes are known (a single
larger record still goes through, alone): a row group is decoded and converted in one piece, so
500 records carrying 400 KB images each held 1.4 GB."""


def group_ends_before(count: int, held: int, weight: int, size: int) -> bool:
    """Whether a row group of ``count`` records holding ``held`` JSON bytes is closed before a
    record of ``weight`` bytes: at ``size`` records, or when the record would take it past
    :data:`MAX_GROUP_BYTES` (a larger record goes alone). The one rule of both paths (at
    ``save()`` and while streaming), so both write the same file."""
    return count > 0 and (count >= size or held + weight > MAX_GROUP_BYTES)


RowBytes = Callable[[], Iterable[int]]
"""The JSON size of each record ``read()`` yields, in the same order (the spool's line lengths)."""


def _batches(
    records: Iterable[dict[str, Any]], size: int, row_bytes: Iterable[int] | None = None
) -> Iterator[list[dict[str, Any]]]:
    """Batches of ``size`` records, or fewer once they reach :data:`MAX_GROUP_BYTES`."""
    iterator = iter(records)
    if row_bytes is None:
        while batch := list(islice(iterator, size)):
            yield batch
        return
    group: list[dict[str, Any]] = []
    held = 0
    for weight, record in zip(row_bytes, iterator, strict=False):  # sizes first: no record lost
        if group_ends_before(len(group), held, weight, size):
            yield group
            group, held = [], 0
        group.append(record)
        held += weight
    group.extend(iterator)  # sizes shorter than the records (not expected): plain batches
    for start in range(0, len(group), size):
        yield group[start : start + size]


def details_schema(
    read: Callable[[], Iterable[dict[str, Any]]],
    batch_size: int,
    *,
    widen_ints: bool = True,
    row_bytes: RowBytes | None = None,
) -> pa.Schema:
    """First pass: the unified schema of every record ``read()`` yields."""
    merged: dict[str, pa.DataType | None] = dict.fromkeys(COLUMNS)
    for batch in _batches(read(), batch_size, row_bytes() if row_bytes else None):
        for column in COLUMNS:
            inferred = infer_type([record.get(column) for record in batch], widen_ints=widen_ints)
            merged[column] = unify(merged[column], inferred, widen_ints=widen_ints)
    return pa.schema([_finalise(column, merged[column]) for column in COLUMNS])


class _BackgroundWriter:
    """Writes row groups on a second thread while the next batch is decoded and converted.

    Encoding and compressing a row group runs in Arrow's C++ without the GIL, so on two cores the
    write overlaps the Python-side decoding. The thread starts with the second row group (a task
    of one row group, the common case with thousands of small tasks, pays for no thread). At most
    two row groups are in flight; a write error is re-raised in the caller.

    Only the first error is raised: once a write to the sink failed (an upload to a store that went
    away), pyarrow answers every later operation with "Operation on closed file", which says
    nothing of the cause. :meth:`abandon` ends the file after an error without raising those.
    """

    def __init__(self, writer: pq.ParquetWriter, row_group_size: int) -> None:
        self._writer = writer
        self._row_group_size = row_group_size
        self._first: pa.RecordBatch | None = None
        self._pool: Any = None
        self._pending: list[Any] = []

    def write(self, batch: pa.RecordBatch) -> None:
        if self._pool is None:
            if self._first is None:
                self._first = batch
                return
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="evalsink-parquet")
            self._submit(self._first)
            self._first = None
        self._submit(batch)

    def _submit(self, batch: pa.RecordBatch) -> None:
        if len(self._pending) >= 2:
            self._pending.pop(0).result()
        self._pending.append(self._pool.submit(self._writer.write_batch, batch, self._row_group_size))

    def close(self) -> None:
        """Wait for queued row groups, then close the file (raising the first write error)."""
        try:
            if self._first is not None:
                batch, self._first = self._first, None
                self._writer.write_batch(batch, self._row_group_size)
            while self._pending:
                self._pending.pop(0).result()
        except BaseException:
            self.abandon()
            raise
        self._shutdown()
        self._writer.close()

    def abandon(self) -> None:
        """End the file after an error the caller raises: the file is discarded, its errors are not news.

        The queued row groups are waited for (the thread must not outlive the sink) and the writer
        closed; what fails meanwhile follows from the first error and is only logged.
        """
        for future in self._pending:
            error = future.exception()
            if error is not None:
                logger.debug(
                    "parquet row group not written after an earlier error: %s: %s",
                    type(error).__name__,
                    error,
                )
        self._pending.clear()
        self._first = None
        self._shutdown()
        try:
            self._writer.close()
        except Exception as exc:
            logger.debug(
                "closing a parquet writer after an error failed too: %s: %s", type(exc).__name__, exc
            )

    def _shutdown(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class SchemaChangedError(Exception):
    """A batch does not fit the fast path's schema: start again on the full path."""


def _leaves(kind: pa.DataType, path: str) -> Iterator[tuple[str, pa.DataType]]:
    """(parquet column path, Arrow type) of every leaf column below a field."""
    if pa.types.is_struct(kind):
        for index in range(kind.num_fields):
            child = kind.field(index)
            yield from _leaves(child.type, f"{path}.{child.name}")
    elif pa.types.is_list(kind):
        yield from _leaves(kind.value_type, f"{path}.list.element")
    else:
        yield path, kind


@functools.lru_cache(maxsize=256)
def _column_options(schema: pa.Schema) -> tuple[list[str], list[str]]:
    """(text columns, other columns) of a schema, by parquet column path."""
    leaves = [leaf for field in schema for leaf in _leaves(field.type, field.name)]
    text = [path for path, kind in leaves if pa.types.is_string(kind)]
    other = [path for path, kind in leaves if not pa.types.is_string(kind)]
    return text, other


def open_writer(sink: IO[bytes] | str, schema: pa.Schema, compression: str) -> pq.ParquetWriter:
    """Dictionary-encode text columns only: token ids and log-probabilities rarely repeat, and
    building dictionaries for them cost more time (40% of the write) than it saved space.

    Column statistics (min and max per column chunk, what query engines skip row groups with)
    are written for numbers and booleans, not for text: a prompt's min and max are two more
    copies of kilobytes of text in the footer, which doubled the size of small files and took
    a tenth of their write time, for filters nobody runs on prompts.
    """
    text_columns, other_columns = _column_options(schema)
    return pq.ParquetWriter(
        sink,
        schema,
        compression=None if compression == "none" else compression,
        use_dictionary=list(text_columns) or False,
        write_statistics=list(other_columns) or False,
    )


class FastConverter:
    """The fast path's conversion: batches of records become record batches of the first batch's
    schema, or :class:`SchemaChangedError` says that this file needs the full path."""

    def __init__(self) -> None:
        self.schema: pa.Schema | None = None

    def convert(self, batch: list[dict[str, Any]]) -> pa.RecordBatch:
        arrays = []
        schema = self.schema
        for index, column in enumerate(COLUMNS):
            values = [record.get(column) for record in batch]
            try:
                array = pa.array(values, memory_pool=_POOL)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError, OverflowError):
                raise SchemaChangedError from None
            if _normalise(array.type) != array.type:
                raise SchemaChangedError
            if schema is not None and array.type != schema.field(index).type:
                expected = schema.field(index).type
                if unify(expected, array.type) != expected:
                    raise SchemaChangedError
                try:
                    array = pa.array(values, type=expected, memory_pool=_POOL)
                except (pa.ArrowInvalid, pa.ArrowTypeError):  # e.g. an int beyond 2**53 into double
                    raise SchemaChangedError from None
            if _holds_bools(values, array.type):  # stored as 1.0/0.0: the full path makes it JSON text
                raise SchemaChangedError
            arrays.append(array)
        if schema is None:
            schema = _fast_schema(tuple(array.type for array in arrays))
            if schema is None:
                raise SchemaChangedError
            self.schema = schema
        return pa.RecordBatch.from_arrays(arrays, schema=schema)


@functools.lru_cache(maxsize=256)
def _fast_schema(types: tuple[pa.DataType, ...]) -> pa.Schema | None:
    """The file schema for the first batch's column types; None when it needs JSON text (the full
    path). Cached: thousands of small tasks usually share a handful of row types."""
    schema = pa.schema([_finalise(column, kind) for column, kind in zip(COLUMNS, types, strict=True)])
    return None if any(_needs_encoding(field) for field in schema) else schema


class JsonLinesConverter:
    """The fast path for encoded rows: spool lines become a record batch of a known schema in
    Arrow's JSON reader, without the GIL, instead of being decoded into Python objects first.

    The reader is given the schema and refuses every value that does not fit it (a key the schema
    lacks, a float in an integer column, a string or a bool in a number column): :meth:`convert`
    returns None and the caller decodes the lines and converts them in Python, which decides
    whether the file must take the full path. The one thing the reader accepts silently is an
    integer beyond 2**53 in a ``double`` column (it rounds it, where the Python conversion
    refuses), so a batch with any ``double`` at or beyond 2**53 in magnitude is refused too.

    A schema with a list of nulls needs one check more. lighteval's ``fewshot_samples`` is ``[]``
    in every row (``list<null>``), which the reader reads right; but for null items
    (``logprobs: [None, None]``) it builds an invalid array (pyarrow 26: the list's offsets run
    past its null items). Arrow's own validation of the read batch catches that (an O(1) check
    of lengths and offsets per array), and the batch is then converted in Python. A valid array
    of nulls is exact: its offsets say how many nulls each list holds, and nothing else is in it.
    Before that check every batch of such a schema was converted in Python, which for
    lighteval's rows was every batch: 1 x 50,000 took 12-17 s instead of 8.4 s.
    """

    def __init__(self, schema: pa.Schema) -> None:
        import pyarrow.json as pa_json

        self.schema = schema
        self._json = pa_json
        self._parse = pa_json.ParseOptions(
            explicit_schema=pa.schema([pa.field("task_name", pa.string()), *schema]),
            unexpected_field_behavior="error",
        )
        self._read = pa_json.ReadOptions(use_threads=False, block_size=1 << 20)
        self._doubles = [path for field in schema for path in _double_leaves(field.type, (field.name,))]
        self._null_items = any(_has_null_items(field.type) for field in schema)

    def convert(self, lines: list[bytes]) -> pa.RecordBatch | None:
        data = b"\n".join(lines)
        read = self._read
        longest = max(map(len, lines), default=0)
        if longest >= read.block_size:  # the reader refuses a line longer than its block
            read = self._json.ReadOptions(use_threads=False, block_size=longest + 1)
        try:
            table = self._json.read_json(
                pa.BufferReader(data), read_options=read, parse_options=self._parse, memory_pool=_POOL
            )
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            return None
        if table.num_rows != len(lines):
            return None
        if self._null_items:
            try:
                table.validate()
            except pa.ArrowInvalid:  # null items in a list of nulls (see above)
                return None
        columns = [table.column(name).combine_chunks() for name in COLUMNS]
        for path in self._doubles:
            if _beyond_exact_doubles(columns[COLUMNS.index(path[0])], path[1:]):
                return None
        return pa.RecordBatch.from_arrays(columns, schema=self.schema)


_EXACT_DOUBLE = float(2**53)


def _has_null_items(kind: pa.DataType) -> bool:
    """Whether a type holds a list whose items are typed null (see :class:`JsonLinesConverter`)."""
    if pa.types.is_list(kind):
        return pa.types.is_null(kind.value_type) or _has_null_items(kind.value_type)
    if pa.types.is_struct(kind):
        return any(_has_null_items(kind.field(i).type) for i in range(kind.num_fields))
    return False


def _double_leaves(kind: pa.DataType, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
    if pa.types.is_struct(kind):
        for index in range(kind.num_fields):
            child = kind.field(index)
            yield from _double_leaves(child.type, (*path, child.name))
    elif pa.types.is_list(kind):
        yield from _double_leaves(kind.value_type, (*path, ""))
    elif pa.types.is_floating(kind):
        yield path


def _beyond_exact_doubles(array: pa.Array, path: tuple[str, ...]) -> bool:
    """Whether the doubles at ``path`` (struct field names; "" steps into list items) hold a value
    of magnitude 2**53 or more."""
    import pyarrow.compute as pc

    for step in path:
        array = array.flatten() if step == "" else array.field(step)
    if len(array) == array.null_count:
        return False
    extremes = pc.min_max(array)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    return not (low > -_EXACT_DOUBLE and high < _EXACT_DOUBLE)


def _write_fast(
    records: Iterable[dict[str, Any]],
    sink: IO[bytes],
    row_group_size: int,
    compression: str,
    row_bytes: Iterable[int] | None = None,
) -> int:
    """One read: keep the first batch's schema, or raise :class:`SchemaChangedError`."""
    converter = FastConverter()
    writer: _BackgroundWriter | None = None
    rows = 0
    try:
        for batch in _batches(records, row_group_size, row_bytes):
            converted = converter.convert(batch)
            if writer is None:
                assert converter.schema is not None
                writer = _BackgroundWriter(open_writer(sink, converter.schema, compression), row_group_size)
            writer.write(converted)
            rows += len(batch)
    except BaseException:
        if writer is not None:
            writer.abandon()
        raise
    if writer is not None:
        writer.close()
    return rows


class _IntsDontFitError(Exception):
    """An int beyond 2**53 met a double column: redo the full path keeping ints apart."""


def json_text_fields(schema: pa.Schema) -> list[str]:
    """Dotted paths of the fields a schema stores as JSON text (``[]`` steps into list items)."""

    def walk(field: pa.Field, path: str) -> Iterator[str]:
        if field.metadata and field.metadata.get(b"evalsink.encoding") == b"json":
            yield path
        elif pa.types.is_struct(field.type):
            for index in range(field.type.num_fields):
                child = field.type.field(index)
                yield from walk(child, f"{path}.{child.name}")
        elif pa.types.is_list(field.type):
            yield from walk(field.type.value_field, f"{path}[]")

    return [path for field in schema for path in walk(field, field.name)]


def _write_full(
    read: Callable[[], Iterable[dict[str, Any]]],
    sink: IO[bytes],
    row_group_size: int,
    compression: str,
    *,
    widen_ints: bool = True,
    on_json_text: Callable[[list[str]], None] | None = None,
    row_bytes: RowBytes | None = None,
) -> int:
    """Two reads: decide the schema over every record, then write."""
    schema = details_schema(read, row_group_size, widen_ints=widen_ints, row_bytes=row_bytes)
    if on_json_text is not None:
        on_json_text(json_text_fields(schema))
    encoded = [_needs_encoding(schema.field(column)) for column in COLUMNS]
    rows = 0
    writer = _BackgroundWriter(open_writer(sink, schema, compression), row_group_size)
    try:
        for batch in _batches(read(), row_group_size, row_bytes() if row_bytes else None):
            arrays = []
            for column, needs in zip(COLUMNS, encoded, strict=True):
                field = schema.field(column)
                values = [record.get(column) for record in batch]
                if needs:
                    values = [_encode(value, field) for value in values]
                try:
                    arrays.append(pa.array(values, type=field.type, memory_pool=_POOL))
                except pa.ArrowInvalid as exc:
                    if not widen_ints:
                        raise
                    raise _IntsDontFitError from exc
            writer.write(pa.RecordBatch.from_arrays(arrays, schema=schema))
            rows += len(batch)
    except BaseException:
        writer.abandon()
        raise
    writer.close()
    return rows


def write_details(
    read: Callable[[], Iterable[dict[str, Any]]],
    open_target: Callable[[], AbstractContextManager[IO[bytes]]],
    *,
    row_group_size: int = 1000,
    compression: str = "snappy",
    on_json_text: Callable[[list[str]], None] | None = None,
    row_bytes: RowBytes | None = None,
) -> int:
    """Write the records ``read()`` yields as one parquet file; returns the number of rows.

    ``open_target()`` opens the destination (atomically: a target left by an exception is
    discarded); it is called again each time a path gives way to the next: fast, full, then full
    with ints and doubles kept apart. ``on_json_text`` is told, for each full-path attempt (the
    last call counts), which fields the file stores as JSON text. With ``row_bytes``, a row group
    holds at most :data:`MAX_GROUP_BYTES` of JSON (records carrying images), else
    ``row_group_size`` records.
    """
    try:
        with open_target() as sink:
            return _write_fast(read(), sink, row_group_size, compression, row_bytes() if row_bytes else None)
    except SchemaChangedError:
        pass
    full = functools.partial(_write_full, on_json_text=on_json_text, row_bytes=row_bytes)
    try:
        with open_target() as sink:
            return full(read, sink, row_group_size, compression)
    except _IntsDontFitError:
        pass
    with open_target() as sink:
        return full(read, sink, row_group_size, compression, widen_ints=False)
