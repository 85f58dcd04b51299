"""lighteval's five loggers, with the same names, attributes and signatures.

They differ where lighteval loses data or memory: details are encoded once and streamed to the
on-disk spool instead of being kept as objects; ``full_prompt`` is hashed from the model input;
an empty run aggregates to empty results instead of raising ``IndexError``; values that cannot be
aggregated are skipped and counted instead of crashing. ``doc`` and ``model_response`` may be
dataclasses (lighteval's ``Doc`` and ``ModelResponse``), pydantic models or mappings; nothing here
imports lighteval, torch or numpy.
"""

from __future__ import annotations

import functools
import logging
import math
import random
import tempfile
import time
from array import array
from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
import xxhash

from evalsink import jsonsafe, none_metrics, nonfinite
from evalsink.errors import EncodeError, EvalsinkError
from evalsink.run import DetailsBatch
from evalsink.spool import DetailSpool

logger = logging.getLogger("evalsink")

HASH_KINDS = ("hash_examples", "hash_full_prompts", "hash_input_tokens", "hash_cont_tokens")


_MISSING = object()


def _get(obj: Any, name: str) -> Any:
    """Read a field from a dataclass, a pydantic model or a mapping alike (hot path: no ABC check
    unless the attribute is missing)."""
    if type(obj) is dict:
        return obj.get(name)
    value = getattr(obj, name, _MISSING)
    if value is _MISSING:
        return obj.get(name) if isinstance(obj, Mapping) else None
    return value


@functools.cache
def _evalsink_version() -> str:
    """Read once: the metadata lookup costs milliseconds, and the manifest asks at every batch."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("evalsink")
    except PackageNotFoundError:  # running from a source tree without installing
        return "unknown"


MAX_CONFIG_DEPTH = 100
"""Deepest nesting of objects and arrays in a configuration (model, generation, task). The results
file adds three levels around it; pydantic's JSON parser (``EvaluationResults.model_validate_json``)
stops at 200."""


def check_config(config: Any, name: str) -> None:
    """Raise :class:`EncodeError`, naming the field, if ``config`` cannot be written to the results."""
    data = jsonsafe.to_jsonable(config, config=True)
    where = jsonsafe.too_deep(data, MAX_CONFIG_DEPTH)
    if where is not None:
        path = f"{name}.{where}" if where and not where.startswith("[") else f"{name}{where}"
        raise EncodeError(
            f"cannot encode {path} as JSON: more than {MAX_CONFIG_DEPTH} levels of nested objects and "
            "arrays in a configuration"
        )


class GeneralConfigLogger:
    """How the evaluation ran: arguments, model, start and end time."""

    def __init__(self) -> None:
        self.lighteval_sha: str | None = "?"
        self.num_fewshot_seeds: int | None = None
        self.max_samples: int | None = None
        self.job_id: int | str | None = None
        self.start_time: float = time.time()
        self.end_time: float | None = None
        self.total_evaluation_time_secondes: str | None = None
        self.model_config: Any = None
        self.model_name: str | None = None
        self.generation_parameters: Any = None

    def log_args_info(
        self,
        num_fewshot_seeds: int | None = None,
        max_samples: int | None = None,
        job_id: int | str | None = None,
        config: Any = None,
    ) -> None:
        self.num_fewshot_seeds = num_fewshot_seeds
        self.max_samples = max_samples
        self.job_id = job_id

    def log_model_info(
        self,
        model_config: Any = None,
        *,
        model_name: str | None = None,
        generation_parameters: Any = None,
        model_info: Any = None,
    ) -> None:
        """Record the model: an object with ``.model_name``, a mapping, or just ``model_name=``.

        ``generation_parameters`` and ``model_info`` accept the call lighteval 0.7-0.10 made.
        """
        source = model_info if model_info is not None else model_config
        if source is not None:
            check_config(source, "model_config")  # an unencodable config fails here, not at save()
            self.model_config = source
        if generation_parameters is not None:
            check_config(generation_parameters, "generation_parameters")
            self.generation_parameters = generation_parameters
        name = model_name if model_name is not None else _get(source, "model_name")
        if name is not None:
            jsonsafe.dumps({"model_name": str(name)})  # e.g. a lone surrogate: refused here, named
            self.model_name = str(name)

    def restore(self, config_general: Mapping[str, Any]) -> None:
        """Take back what an earlier process of the same run logged (its run manifest)."""
        for name in ("lighteval_sha", "num_fewshot_seeds", "max_samples", "job_id", "start_time"):
            if name in config_general:
                setattr(self, name, config_general[name])
        if config_general.get("model_name") is not None:
            self.model_name = str(config_general["model_name"])
        if config_general.get("model_config") is not None:
            self.model_config = config_general["model_config"]  # already redacted when it was saved
        if config_general.get("generation_parameters") is not None:
            self.generation_parameters = config_general["generation_parameters"]

    def log_end_time(self) -> None:
        self.end_time = time.time()
        self.total_evaluation_time_secondes = str(self.end_time - self.start_time)

    def to_dict(self) -> dict[str, Any]:
        """``config_general`` as written to the results file; secret-looking fields redacted."""
        model_config = None
        if self.model_config is not None:
            model_config = jsonsafe.redact_secrets(jsonsafe.to_jsonable(self.model_config, config=True))
            if not isinstance(model_config, dict):
                model_config = {"value": model_config}
        out: dict[str, Any] = {
            "lighteval_sha": self.lighteval_sha,
            "evalsink_version": _evalsink_version(),
            "num_fewshot_seeds": self.num_fewshot_seeds,
            "max_samples": self.max_samples,
            "job_id": self.job_id,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "total_evaluation_time_secondes": self.total_evaluation_time_secondes,
            "model_config": model_config,
            "model_name": self.model_name,
        }
        if self.generation_parameters is not None:
            out["generation_parameters"] = jsonsafe.redact_secrets(
                jsonsafe.to_jsonable(self.generation_parameters, config=True)
            )
        return out


@dataclass
class CompiledHash:
    hash_examples: str = ""
    hash_full_prompts: str = ""
    hash_input_tokens: str = ""
    hash_cont_tokens: str = ""


@dataclass
class CompiledDetail:
    hashes: dict[str, str] = field(default_factory=dict)
    truncated: int = 0
    non_truncated: int = 0
    padded: int = 0
    non_padded: int = 0


@dataclass
class CompiledDetailOverAllTasks(CompiledDetail):
    pass


class _TaskHashes:
    """Per-sample xxh64 digests of one task, kept as 8-byte integers rather than objects."""

    __slots__ = (
        "cont_tokens",
        "examples",
        "full_prompts",
        "input_tokens",
        "non_padded",
        "non_truncated",
        "padded",
        "truncated",
    )

    def __init__(self) -> None:
        self.examples = array("Q")
        self.full_prompts = array("Q")
        self.input_tokens = array("Q")
        self.cont_tokens = array("Q")
        self.truncated = self.non_truncated = self.padded = self.non_padded = 0

    def compile(self) -> dict[str, str]:
        def combine(digests: array[int]) -> str:
            return xxhash.xxh64("".join(sorted(f"{d:016x}" for d in digests)).encode()).hexdigest()

        return {
            "hash_examples": combine(self.examples),
            "hash_full_prompts": combine(self.full_prompts),
            "hash_input_tokens": combine(self.input_tokens),
            "hash_cont_tokens": combine(self.cont_tokens),
        }


_INT_LIST_BYTES = b"0123456789-,[]"


def _int_list_json(value: list[Any]) -> bytes | None:
    """Compact JSON of a list of ints or of lists of ints; None for anything else (tuples too,
    which ``str()`` prints with parentheses). Only digits, signs, commas and exactly one bracket
    per list may appear: anything else (bools, floats, strings, deeper nesting) is refused."""
    brackets = 1
    if value and type(value[0]) is list:
        for item in value:
            if type(item) is not list:
                return None
        brackets += len(value)
    try:
        encoded = orjson.dumps(value)
    except orjson.JSONEncodeError:
        return None
    if encoded.count(b"[") != brackets or encoded.translate(None, _INT_LIST_BYTES):
        return None
    return encoded


_PLAIN_ITEMS = (int, list, str)
"""Items of a token list that are not arrays, known by type: no attribute lookup per sample."""


def _is_array(value: Any) -> bool:
    """A numpy array or torch tensor with at least one dimension (duck-typed: neither is imported)."""
    return bool(getattr(value, "ndim", 0)) and callable(getattr(value, "tolist", None))


def _text(value: Any) -> bytes:
    """What lighteval hashes, as UTF-8: the string itself, or ``str()`` of a list of tokens.

    ``str()`` of a 300-token list costs ~30 µs; for lists of integers (possibly nested) orjson's
    output with ", " separators is byte-identical and ~10x cheaper, so hashes still match
    lighteval's. Anything else falls back to ``str()``.
    """
    if value is None:
        return b""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if type(value) is not list and _is_array(value):
        # a numpy array or torch tensor of tokens: hashed as the same tokens in a list are, so a
        # hash says "same tokens" whatever the container (lighteval hashes str(tensor), which
        # differs from str(list) and abbreviates tensors over 1,000 items with "...")
        value = value.tolist()
    if isinstance(value, list) and value and type(value[0]) not in _PLAIN_ITEMS and _is_array(value[0]):
        value = [item.tolist() if _is_array(item) else item for item in value]  # a list of token arrays
    if isinstance(value, list):
        encoded = _int_list_json(value)
        if encoded is not None:
            return encoded.replace(b",", b", ")
        return str(value).encode("utf-8", "surrogatepass")
    if isinstance(value, tuple):
        return str(value).encode("utf-8", "surrogatepass")
    return jsonsafe.dumps(value)


def _tokens_text(value: Any) -> bytes:
    """What lighteval hashes for tokens: ``str()`` of them, so no tokens (None) is ``"None"``."""
    return b"None" if value is None else _text(value)


class _LazyDetails(Mapping[str, list[dict[str, Any]]]):
    """``details_logger.details`` read back from the spool, one task at a time; once a saved run
    has removed its spool, from the saved files (``DetailsLogger.read_saved``).

    lighteval's pipeline takes this mapping before ``save()`` and hands it to its caller after.
    """

    def __init__(self, details_logger: DetailsLogger) -> None:
        self._logger = details_logger

    def __getitem__(self, task_name: str) -> list[dict[str, Any]]:
        spool = self._logger.spool
        if not spool.count(task_name):
            raise KeyError(task_name)
        if self._logger.read_saved is not None and not spool.path.exists():
            return self._logger.read_saved(task_name)
        records = []
        for line in spool.iter_lines(task_name):
            record = orjson.loads(line)
            record.pop("task_name", None)
            records.append(jsonsafe.decode_bytes(record) if jsonsafe.has_bytes(line) else record)
        return records

    def __iter__(self) -> Iterator[str]:
        return iter(self._logger.spool.tasks())

    def __len__(self) -> int:
        return len(self._logger.spool.tasks())


class DetailsLogger:
    """Per-sample details: encoded on ``log()``, streamed to the spool, hashed for the summary."""

    def __init__(
        self,
        spool: DetailSpool | None = None,
        on_batch: Callable[[DetailsBatch], None] | None = None,
    ) -> None:
        if spool is None:  # standalone use (tests, scripts): a private temporary spool
            self._tmp = tempfile.TemporaryDirectory(prefix="evalsink-spool-")
            spool = DetailSpool(Path(self._tmp.name) / "details.jsonl", fsync=False)
        self.spool = spool
        self.on_batch = on_batch
        self.read_saved: Callable[[str], list[dict[str, Any]]] | None = None
        """Reads a task's saved details; set by the tracker when it removes the spool of a saved run."""
        self._hashes: dict[str, _TaskHashes] = {}
        self.nonfinite: dict[str, int] = defaultdict(int)
        self.nonfinite_at: nonfinite.Positions = {}
        """Which spooled samples held NaN/±inf, and how many (:mod:`evalsink.nonfinite`)."""
        self.none_metrics: none_metrics.Positions = {}
        """Which spooled samples had a metric logged as None (:mod:`evalsink.none_metrics`)."""
        self.compiled_hashes: dict[str, CompiledHash] = {}
        self.compiled_details: dict[str, CompiledDetail] = {}
        self.compiled_details_over_all_tasks = CompiledDetailOverAllTasks()
        self.closed: str | None = None
        """Why ``log()`` is refused (set by the tracker once its run is saved or finished): a sample
        logged then would be in no file, silently."""

    def log(self, task_name: str, doc: Any, model_response: Any, metrics: Mapping[str, Any]) -> None:
        """Record one sample; encoding problems raise here, naming the field, before anything is kept."""
        if self.closed is not None:
            raise EvalsinkError(self.closed)
        if task_name not in self._hashes:
            from evalsink.paths import task_file_part

            task_file_part(task_name)  # refuses an empty name before anything is kept
        line = jsonsafe.dumps(
            {"task_name": task_name, "doc": doc, "model_response": model_response, "metric": metrics}
        )
        bad = (
            jsonsafe.count_nonfinite(metrics)
            + jsonsafe.count_nonfinite(model_response)
            + jsonsafe.count_nonfinite(doc)
        )
        self._hash(task_name, doc, model_response)
        self._append(task_name, line, _none_names(metrics), bad)

    def merge(
        self, task_name: str, line: bytes, record: Mapping[str, Any], nones: set[str], bad: int = 0
    ) -> None:
        """Take a sample spooled by another rank: into this spool, the hashes and the sinks' batches;
        ``nones``: its metrics that were logged as None (its spool holds them as null); ``bad``:
        its NaN/±inf values (null too)."""
        self._hash(task_name, record.get("doc"), record.get("model_response"))
        self._append(task_name, line, sorted(nones), bad)

    def _append(self, task_name: str, line: bytes, nones: list[str], bad: int) -> None:
        index = self.spool.count(task_name)
        # before the append, which may flush: the manifest written first must hold them
        if nones:
            none_metrics.add(self.none_metrics, task_name, index, nones)
        if bad:
            nonfinite.add(self.nonfinite_at, task_name, index, bad)
            self.nonfinite[task_name] += bad
        try:
            batch = self.spool.append(task_name, line)
        except BaseException:
            if self.spool.count(task_name) == index:  # not kept (a failed flush keeps it)
                if nones:
                    none_metrics.remove(self.none_metrics, task_name, index, nones)
                if bad:
                    nonfinite.remove(self.nonfinite_at, task_name, index)
                    self.nonfinite[task_name] -= bad
            raise
        if batch is not None and self.on_batch is not None:
            self.on_batch(batch)

    def replay(self, task_name: str, record: Mapping[str, Any]) -> None:
        """Count a record already in the spool (a resumed run) in the hashes, without re-spooling it."""
        self._hash(task_name, record.get("doc"), record.get("model_response"))

    def _hash(self, task_name: str, doc: Any, model_response: Any) -> None:
        hashes = self._hashes.get(task_name)
        if hashes is None:
            hashes = self._hashes[task_name] = _TaskHashes()
        hashes.examples.append(xxhash.xxh64_intdigest(_text(_get(doc, "query"))))
        hashes.full_prompts.append(xxhash.xxh64_intdigest(_text(_get(model_response, "input"))))
        hashes.input_tokens.append(xxhash.xxh64_intdigest(_tokens_text(_get(model_response, "input_tokens"))))
        hashes.cont_tokens.append(xxhash.xxh64_intdigest(_tokens_text(_get(model_response, "output_tokens"))))
        truncated = _get(model_response, "truncated_tokens_count")
        padded = _get(model_response, "padded_tokens_count")
        if _is_positive_count(truncated):
            hashes.truncated += 1
        else:
            hashes.non_truncated += 1
        if _is_positive_count(padded):
            hashes.padded += 1
        else:
            hashes.non_padded += 1

    def flush(self) -> None:
        """Write buffered samples to the spool and hand them to the sinks as a batch."""
        batch = self.spool.flush()
        if batch is not None and self.on_batch is not None:
            self.on_batch(batch)

    @property
    def details(self) -> Mapping[str, list[dict[str, Any]]]:
        """Task name -> list of {doc, model_response, metric} dicts, read back from the spool."""
        return _LazyDetails(self)

    def aggregate(self) -> None:
        """Combine the per-sample hashes per task (sorted, so order does not matter), then over tasks."""
        total = CompiledDetailOverAllTasks()
        for task_name, hashes in self._hashes.items():
            compiled = hashes.compile()
            self.compiled_hashes[task_name] = CompiledHash(**compiled)
            self.compiled_details[task_name] = CompiledDetail(
                hashes=compiled,
                truncated=hashes.truncated,
                non_truncated=hashes.non_truncated,
                padded=hashes.padded,
                non_padded=hashes.non_padded,
            )
            total.truncated += hashes.truncated
            total.non_truncated += hashes.non_truncated
            total.padded += hashes.padded
            total.non_padded += hashes.non_padded
        if self.compiled_details:
            ordered = sorted(self.compiled_details.items())
            total.hashes = {
                kind: xxhash.xxh64("".join(detail.hashes[kind] for _, detail in ordered).encode()).hexdigest()
                for kind in HASH_KINDS
            }
        self.compiled_details_over_all_tasks = total


def _none_names(metrics: Any) -> list[str]:
    """The names of the metrics logged as None (as the spool's JSON keys spell them)."""
    if not isinstance(metrics, Mapping) or not any(value is None for value in metrics.values()):
        return []
    names = [name for name, value in metrics.items() if value is None]
    return [name if isinstance(name, str) else jsonsafe.json_key(name) for name in names]


def _is_number(value: Any) -> bool:
    """Python numbers (bools count, as lighteval averages them), ``Decimal`` (written as a number,
    see :mod:`evalsink.jsonsafe`) and numpy numeric scalars."""
    if isinstance(value, (int, float, Decimal)):
        return True
    dtype = getattr(value, "dtype", None)
    if dtype is None or getattr(value, "ndim", 1) != 0:
        return False
    kind = getattr(dtype, "kind", None)  # numpy
    if kind is not None:
        return bool(kind in "biuf")
    item = getattr(value, "item", None)  # torch and other array libraries' 0-d values
    try:
        return callable(item) and isinstance(item(), (int, float))
    except (TypeError, ValueError, RuntimeError):
        return False


def _is_positive_count(value: Any) -> bool:
    """A token count above 0: numpy and torch counts too; a NaN (``Decimal`` NaN refuses even the
    comparison) is no count."""
    if not _is_number(value):
        return False
    try:
        return bool(value > 0)
    except ArithmeticError:  # decimal.InvalidOperation
        return False


def _as_float(value: Any) -> float | None:
    """A metric value as a float for the mean; None (skipped and counted) for what is not a number,
    and for numbers that have no float: an int beyond 1e308, a signalling ``Decimal`` NaN. Those
    raised from ``aggregate()``, which lost the run at ``save()``."""
    if not _is_number(value):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError, TypeError):
        return None


def _is_mean(aggregation: Callable[..., Any]) -> bool:
    name = getattr(aggregation, "__name__", "")
    module = getattr(aggregation, "__module__", "") or ""
    return name in {"mean", "fmean"} and module.split(".")[0] in {"numpy", "statistics", "builtins", ""}


def _mean(values: list[float]) -> float:
    """Exact mean; NaN (never an exception) when the values hold NaN or both infinities."""
    if not all(math.isfinite(value) for value in values):
        return sum(values) / len(values)  # inf, -inf or nan, as plain float arithmetic says
    try:
        return math.fsum(values) / len(values)
    except OverflowError:  # the sum overflows though the mean may not (values near 1e308)
        return math.fsum(value / len(values) for value in values)


def _sample_stdev(values: list[float]) -> float:
    """Sample standard deviation; NaN (never an exception) when a value is NaN or infinite."""
    if len(values) < 2:
        return math.nan
    mean = _mean(values)
    if not math.isfinite(mean):
        return math.nan
    deviations = [value - mean for value in values]
    try:
        return math.sqrt(math.fsum(d * d for d in deviations) / (len(values) - 1))
    except OverflowError:
        return math.inf


def _mean_stderr(values: list[float]) -> float:
    """Standard error of the mean with the sample standard deviation (lighteval's choice)."""
    return _sample_stdev(values) / math.sqrt(len(values))


def _bootstrap_stderr(aggregation: Callable[[list[Any]], Any], values: list[Any], iterations: int) -> float:
    """Spread of ``aggregation`` over resamples; seeded so a rerun gives the same number."""
    rng = random.Random(1234)
    try:
        estimates = [float(aggregation(rng.choices(values, k=len(values)))) for _ in range(iterations)]
    except Exception as exc:  # a resample the aggregation cannot handle (e.g. all zeros)
        logger.warning("bootstrap stderr failed (%s: %s); stderr left as NaN", type(exc).__name__, exc)
        return math.nan
    return _sample_stdev(estimates)


class MetricsLogger:
    """Per-sample metric values and their aggregation per task, per suite and overall."""

    def __init__(self) -> None:
        self.metrics_values: dict[str, dict[str, list[Any]]] = defaultdict(lambda: defaultdict(list))
        self.metric_aggregated: dict[str, dict[str, float]] = {}
        self.skipped: dict[str, dict[str, int]] = {}
        self.failed_aggregations: dict[str, dict[str, str]] = {}
        self.mean_instead: dict[str, str] = {}
        """Tasks averaged although ``aggregate()`` was given a ``task_dict``, and why (lighteval
        raises ``KeyError`` there)."""
        self.stderr_not_written: dict[str, list[str]] = {}
        """Per task, ``{metric}_stderr`` keys left out because a metric of that name was logged."""

    def log(self, task_name: str, metrics: Mapping[str, Any]) -> None:
        """Record one sample's metric values.

        A task name or metric name that cannot be written (an empty task name, a lone surrogate)
        is refused here, naming it, rather than failing ``save()``. Metric names that are not
        strings are named as in the details (see :mod:`evalsink.jsonsafe`: ``True`` -> ``"true"``).
        """
        if task_name not in self.metrics_values:
            _check_task_name(task_name)
        items: Any = metrics.items()
        for name in metrics:
            if type(name) is not str or not name.isascii():  # rare: check every name first
                items = [(_metric_name(task_name, key, metrics), value) for key, value in metrics.items()]
                break
        values = self.metrics_values[task_name]
        for name, value in items:
            values[name].append(value)

    def aggregate(self, task_dict: Mapping[str, Any] | None = None, bootstrap_iters: int = 1000) -> None:
        """Aggregate each task's metrics, add ``_stderr``, sub-task averages and ``all``.

        The aggregation is the task's own ``aggregation()[metric]`` when ``task_dict`` provides one,
        else the mean over numeric values (values that are not numbers are skipped and counted in
        ``self.skipped``). A corpus aggregation returning a dict contributes all its keys.
        """
        aggregated: dict[str, dict[str, float]] = {}
        self.skipped, self.failed_aggregations, self.mean_instead = {}, {}, {}
        self.stderr_not_written = {}
        for task_name, metrics in self.metrics_values.items():
            own, problem = _task_aggregations(task_dict, task_name)
            if problem is not None:
                self.mean_instead[task_name] = problem
            elif task_dict is not None:
                self._note_means(task_dict, task_name, own, metrics)
            out: dict[str, float] = {}
            for metric_name, values in metrics.items():
                if metric_name in out:
                    continue  # already produced by a corpus aggregation returning several keys
                aggregation = own.get(metric_name)
                if aggregation is None or _is_mean(aggregation):
                    numbers = [f for f in map(_as_float, values) if f is not None]
                    if len(numbers) < len(values):
                        self.skipped.setdefault(task_name, {})[metric_name] = len(values) - len(numbers)
                    if not numbers:
                        continue
                    out[metric_name] = _mean(numbers)
                    wanted = bootstrap_iters > 0 and len(numbers) > 1
                    if wanted and self._stderr_free(task_name, metrics, metric_name):
                        out[f"{metric_name}_stderr"] = _mean_stderr(numbers)
                    continue
                try:
                    result = aggregation(values)
                    produced = _aggregated_numbers(metric_name, result)
                except Exception as exc:
                    failed = self.failed_aggregations.setdefault(task_name, {})
                    failed[metric_name] = f"{type(exc).__name__}: {exc}"
                    logger.error(
                        "task %r, metric %r: aggregation failed (%s); metric left out",
                        task_name,
                        metric_name,
                        exc,
                    )
                    continue
                out.update(produced)
                if isinstance(result, Mapping):
                    continue
                wanted = bootstrap_iters > 0 and len(values) > 1
                if wanted and self._stderr_free(task_name, metrics, metric_name):
                    out[f"{metric_name}_stderr"] = _bootstrap_stderr(aggregation, values, bootstrap_iters)
            aggregated[task_name] = out
        for task_name, counts in self.skipped.items():
            for metric_name, count in counts.items():
                logger.warning(
                    "task %r, metric %r: %d value(s) that are not single numbers left out of the mean",
                    task_name,
                    metric_name,
                    count,
                )
        for task_name, why in self.mean_instead.items():
            logger.warning("task %r: %s", task_name, why)
        for task_name, names in self.stderr_not_written.items():
            logger.warning("task %r: %s", task_name, stderr_collision(names))
        self.metric_aggregated = _add_averages(aggregated)

    def _stderr_free(self, task_name: str, metrics: Mapping[str, Any], metric_name: str) -> bool:
        """Whether ``{metric}_stderr`` may be written: not when a metric of that name was logged,
        whose aggregate is the user's data (the computed stderr overwrote it, or, logged first,
        it was dropped for it)."""
        key = f"{metric_name}_stderr"
        if key in metrics:
            self.stderr_not_written.setdefault(task_name, []).append(key)
            return False
        return True

    def _note_means(
        self, task_dict: Mapping[str, Any], task_name: str, own: Mapping[str, Any], metrics: Mapping[str, Any]
    ) -> None:
        """Say which metrics are averaged only because the task does not name their aggregation."""
        if task_name not in task_dict:
            self.mean_instead[task_name] = "not in task_dict: every metric is a plain mean"
            return
        if not own:
            return  # a task without aggregation(): means, as documented
        missing = [name for name in metrics if name not in own]
        if missing:
            self.mean_instead[task_name] = (
                f"metric(s) {', '.join(map(repr, missing))} not in the task's aggregation(): plain mean"
            )


def stderr_collision(names: list[str]) -> str:
    """The warning for :attr:`MetricsLogger.stderr_not_written`, in the log and the save report."""
    listed = ", ".join(map(repr, names))
    return f"metric(s) {listed} logged: their standard error, computed under the same name, is left out"


def _aggregated_numbers(metric_name: str, result: Any) -> dict[str, float]:
    """What a task's aggregation returned, as results entries; anything but numbers is refused
    (written as they were, a None or an array would make the results file fail, or lie)."""
    items = result.items() if isinstance(result, Mapping) else [(metric_name, result)]
    numbers: dict[str, float] = {}
    for key, value in items:
        if not _is_number(value):
            shown = repr(value)
            shown = shown if len(shown) <= 80 else shown[:77] + "..."
            raise TypeError(f"it returned {shown} for {str(key)!r}, not a number")
        numbers[str(key)] = float(value)
    return numbers


def _check_task_name(task_name: str) -> None:
    from evalsink.paths import task_file_part

    task_file_part(task_name)  # refuses an empty name
    jsonsafe.dumps({"task_name": task_name})


def _metric_name(task_name: str, name: Any, metrics: Mapping[Any, Any]) -> str:
    """The results key of a metric name, checked to be writable (the slow path of non-ASCII names)."""
    if type(name) is str and name.isascii():
        return name
    where = f"the metric names of task {task_name!r}"
    if type(name) is not str:
        clash = jsonsafe.find_key_clash(metrics)
        if clash is not None:
            raise EncodeError(f"cannot encode {where} as JSON: {clash[1]}")
        try:
            name = jsonsafe.json_key(name)
        except orjson.JSONEncodeError as exc:
            raise EncodeError(f"cannot encode {where} as JSON: metric name {name!r}: {exc}") from exc
    try:
        name.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise EncodeError(f"cannot encode {where} as JSON: metric name {name!r}: {exc.reason}") from None
    return str(name)


def _task_aggregations(
    task_dict: Mapping[str, Any] | None, task_name: str
) -> tuple[dict[str, Callable[..., Any]], str | None]:
    """The task's ``aggregation()`` mapping, and why there is none when the task has the method."""
    task = task_dict.get(task_name) if task_dict is not None else None
    aggregation = getattr(task, "aggregation", None)
    if not callable(aggregation):
        return {}, None
    try:
        result = aggregation()
    except Exception as exc:
        return {}, f"its aggregation() raised {type(exc).__name__}: {exc}; every metric is a plain mean"
    if not isinstance(result, Mapping):
        return (
            {},
            f"its aggregation() returned {type(result).__name__}, not a mapping; every metric is a "
            "plain mean",
        )
    return dict(result), None


def suite_average_name(task_name: str) -> str | None:
    """The sub-task group of a task, lighteval-style: ``mmlu:anatomy|5`` -> ``mmlu:_average|5``.

    Also ``lighteval|mmlu:anatomy|5`` -> ``lighteval|mmlu:_average|5``; tasks without ``|`` have none.
    """
    parts = task_name.split("|")
    if len(parts) == 2:
        task, fewshot = parts
        return f"{task.split(':')[0]}:_average|{fewshot}"
    if len(parts) == 3:
        suite, task, fewshot = parts
        return f"{suite}|{task.split(':')[0]}:_average|{fewshot}"
    return None


def _add_averages(aggregated: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """Sub-task means (groups of more than one task) and ``all`` over every task, as lighteval."""
    groups: dict[str, list[str]] = defaultdict(list)
    totals: dict[str, list[float]] = defaultdict(list)
    for task_name, metrics in aggregated.items():
        group = suite_average_name(task_name)
        if group is not None:
            groups[group].append(task_name)
        for metric, value in metrics.items():
            totals[metric].append(value)
    result = dict(aggregated)
    for group, members in groups.items():
        if len(members) < 2 or group in aggregated:
            continue
        shared = [m for m in aggregated[members[0]] if all(m in aggregated[t] for t in members)]
        result[group] = {m: _mean([aggregated[t][m] for t in members]) for m in shared}
    result["all"] = {metric: _mean(values) for metric, values in totals.items()}
    return result


class VersionsLogger:
    """Task versions (lighteval always writes ``{}`` here; evalsink writes what was logged)."""

    def __init__(self) -> None:
        self.versions: dict[str, int | str] = {}

    def log(self, task_name: str, task_version: int | str) -> None:
        jsonsafe.dumps({task_name: task_version})  # an unencodable version fails here, not at save()
        self.versions[task_name] = task_version


class TaskConfigLogger:
    """Each task's configuration, from a ``{name: task}`` dict of tasks or of configs."""

    def __init__(self) -> None:
        self.tasks_configs: dict[str, Any] = {}
        self.aggregating_tasks: dict[str, Any] = {}
        """The logged tasks that name their metrics' aggregation (lighteval's ``LightevalTask``):
        what ``save()`` aggregates with when the caller did not call ``aggregate()`` itself."""

    def log(self, task_dict: Mapping[str, Any]) -> None:
        configs = {name: getattr(task, "config", task) for name, task in task_dict.items()}
        check_config(configs, "config_tasks")  # an unencodable config fails here, not at save()
        self.tasks_configs = configs
        self.aggregating_tasks = {
            name: task for name, task in task_dict.items() if callable(getattr(task, "aggregation", None))
        }

    def log_num_docs(self, task_name: str, original_num_docs: int, effective_num_docs: int) -> None:
        config = self.tasks_configs.setdefault(task_name, {})
        if isinstance(config, dict):
            config["original_num_docs"] = original_num_docs
            config["effective_num_docs"] = effective_num_docs
        else:
            config.original_num_docs = original_num_docs
            config.effective_num_docs = effective_num_docs

    def to_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, config in self.tasks_configs.items():
            value = jsonsafe.redact_secrets(jsonsafe.to_jsonable(config, config=True))
            out[name] = value if isinstance(value, dict) else {"value": value}
        return out
