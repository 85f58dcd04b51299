"""Where bench_tracker's time goes, component by component, measured without a profiler.

    python benchmarks/bench_breakdown.py                    # 20,000 samples of one task
    python benchmarks/bench_breakdown.py --samples 50000 --json

Log side: each step of ``DetailsLogger.log()`` timed alone over the same rows (µs per sample).
Save side: one task's spool streamed in 1,000-row batches the way the local sink does, with the
read, ``orjson.loads``, Arrow's type inference (``pa.array(values)``), the conversion to a known
type (``pa.array(values, type=...)``) and the parquet write timed separately (seconds). This script
calls evalsink internals (``loggers._text``, ``DetailSpool``), so it follows their current shape.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import cycle, islice
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

import orjson
from bench_tracker import Pools, Row, rows

from evalsink import jsonsafe
from evalsink.loggers import DetailsLogger, MetricsLogger, _text
from evalsink.paths import task_file_part
from evalsink.spool import DetailSpool

COLUMNS = ("doc", "metric", "model_response")


class Clock:
    """Wall and CPU seconds per step; CPU time is what a busy machine disturbs least."""

    def __init__(self) -> None:
        self.wall: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        wall, cpu = perf_counter(), process_time()
        yield
        self.wall[name] += perf_counter() - wall
        self.cpu[name] += process_time() - cpu


def log_steps(sample: list[Row], folder: Path, calls: int, rounds: int) -> dict[str, tuple[float, float]]:
    """(wall, CPU) µs per sample of each step: median over ``rounds`` interleaved rounds."""
    import xxhash

    def record(r: Row) -> dict[str, Any]:
        return {"task_name": r[0], "doc": r[1], "model_response": r[2], "metric": r[3]}

    def texts(r: Row) -> tuple[bytes, ...]:
        return (_text(r[1].query), _text(r[2].input), _text(r[2].input_tokens), _text(r[2].output_tokens))

    encoded = [texts(r) for r in sample]
    lines = [(r[0], jsonsafe.dumps(record(r))) for r in sample]
    spool = DetailSpool(folder / "append.jsonl")  # fsync, as the tracker's spool
    metrics, details = MetricsLogger(), DetailsLogger(DetailSpool(folder / "log.jsonl"))
    steps: dict[str, Callable[[Any], object]] = {
        "task_file_part(task_name)": lambda r: task_file_part(r[0]),
        "jsonsafe.dumps (JSON encoding)": lambda r: jsonsafe.dumps(record(r)),
        "count_nonfinite (metrics, response, doc)": lambda r: (
            jsonsafe.count_nonfinite(r[3]) + jsonsafe.count_nonfinite(r[2]) + jsonsafe.count_nonfinite(r[1])
        ),
        "_text of query, input, input_tokens, output_tokens": texts,
        "xxh64_intdigest of those 4 byte strings": lambda e: [xxhash.xxh64_intdigest(b) for b in e],
        "spool.append (fsync every 1,000)": lambda line: spool.append(*line),
        "metrics_logger.log": lambda r: metrics.log(r[0], r[3]),
        "details_logger.log (whole call)": lambda r: details.log(*r),
    }
    inputs: dict[str, list[Any]] = {
        "xxh64_intdigest of those 4 byte strings": encoded,
        "spool.append (fsync every 1,000)": lines,
    }
    per_round = calls // rounds
    clocks = [Clock() for _ in range(rounds)]
    for clock in clocks:
        for name, step in steps.items():
            items: Iterator[Any] = islice(cycle(inputs.get(name, sample)), per_round)
            with clock(name):
                for item in items:
                    step(item)
    spool.close()
    details.spool.close()
    return {
        name: (
            statistics.median(c.wall[name] for c in clocks) / per_round * 1e6,
            statistics.median(c.cpu[name] for c in clocks) / per_round * 1e6,
        )
        for name in steps
    }


def save_steps(spool: DetailSpool, task: str, folder: Path, batch_size: int) -> Clock:
    """Seconds per step for one streamed pass writing a task's spool records as parquet."""
    clock = Clock()
    with clock("import pyarrow (+ pandas, on the first pa.array)"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        pa.array([{"a": 1}])
    writer = None
    lines = spool.iter_lines(task)
    while True:
        with clock("spool read"):
            batch = list(islice(lines, batch_size))
        if not batch:
            break
        with clock("orjson.loads"):
            records = [orjson.loads(line) for line in batch]
        columns = [[record.get(column) for record in records] for column in COLUMNS]
        with clock("Arrow inference: pa.array(values)"):
            inferred = [pa.array(values) for values in columns]
        schema = pa.schema([pa.field(c, a.type) for c, a in zip(COLUMNS, inferred, strict=True)])
        with clock("Arrow conversion: pa.array(values, type=...)"):
            arrays = [pa.array(values, type=f.type) for values, f in zip(columns, schema, strict=True)]
        with clock("parquet write (snappy)"):
            if writer is None:
                writer = pq.ParquetWriter(folder / "details.parquet", schema, compression="snappy")
            writer.write_batch(pa.RecordBatch.from_arrays(arrays, schema=schema), row_group_size=batch_size)
    if writer is not None:
        with clock("parquet write (snappy)"):
            writer.close()
    return clock


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--samples", type=int, default=20_000, help="log() calls per step; rows saved")
    parser.add_argument("--rows", type=int, default=1000, help="distinct rows the log steps cycle over")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds of the log steps")
    parser.add_argument("--batch", type=int, default=1000, help="rows per batch (the sink's row_group_size)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    pools = Pools()
    sample = list(rows(pools, 1, args.rows))  # few distinct rows: a large live set would slow the GC
    with tempfile.TemporaryDirectory(prefix="evalsink-breakdown-") as tmp:
        log = log_steps(sample, Path(tmp), args.samples, args.rounds)
        spool = DetailSpool(Path(tmp) / "save.jsonl", fsync=False)
        for task, doc, response, metrics in rows(pools, 1, args.samples):
            record = {"task_name": task, "doc": doc, "model_response": response, "metric": metrics}
            spool.append(task, jsonsafe.dumps(record))
        spool.flush()
        save = save_steps(spool, spool.tasks()[0], Path(tmp), args.batch)
        spool.close()
    n = args.samples
    if args.json:
        saved = {name: {"wall_s": save.wall[name], "cpu_s": save.cpu[name]} for name in save.wall}
        print(json.dumps({"samples": n, "log_us": log, "save": saved}))
        return
    print(f"Python {sys.version.split()[0]}; {n:,} samples of one task")
    print("\n| log() step | wall µs per sample | CPU µs per sample |\n|---|---|---|")
    for name, (wall, cpu) in log.items():
        print(f"| {name} | {wall:.1f} | {cpu:.1f} |")
    print(f"\n| save step ({n:,} rows, one pass) | wall s | CPU s | wall µs per row |\n|---|---|---|---|")
    for name, wall in save.wall.items():
        print(f"| {name} | {wall:.2f} | {save.cpu[name]:.2f} | {wall / n * 1e6:.0f} |")


if __name__ == "__main__":
    main()
