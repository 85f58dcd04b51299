"""Log and save T tasks x N lighteval-shaped samples through ``evalsink.EvaluationTracker``.

Every run happens in a fresh subprocess, so its peak RSS (``ru_maxrss``) belongs to that run alone.
Rows are cut from pools of seeded random text, tokens and floats built before the clock starts; the
generator runs lazily inside the timed log loop (keeping 50,000 rows alive would inflate peak RSS),
so its own cost is measured in a separate subprocess and subtracted ("net" columns).

    python benchmarks/bench_tracker.py                      # the four default scenarios, 3 runs each
    python benchmarks/bench_tracker.py --tasks 1 --samples 50000 --repeat 5 --json
"""

from __future__ import annotations

import argparse
import cProfile
import enum
import importlib.util
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
from array import array
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from time import perf_counter, process_time
from typing import Any

DEFAULT_SCENARIOS = ((1, 50_000), (3_000, 2), (10, 1_000), (1, 1_000))
_WORDS = (
    "the of a model answer question which planet bone muscle energy orbit cell number value sum total apples "
    "train hours star mass nerve heart lung river city protein theorem enzyme voltage market treaty velocity "
    "molecule statute equilibrium"
)


class SamplingMethod(str, enum.Enum):
    GENERATIVE = "GENERATIVE"
    LOGPROBS = "LOGPROBS"


@dataclass
class Doc:
    """The fields of lighteval 0.13's ``Doc``."""

    query: str
    choices: list[str]
    gold_index: int | list[int]
    instruction: str | None = None
    images: list[Any] | None = None
    specific: dict[str, Any] | None = None
    unconditioned_query: str | None = None
    original_query: str | None = None
    id: str = ""
    task_name: str = ""
    num_asked_few_shots: int = 0
    num_effective_few_shots: int = 0
    fewshot_samples: list[Any] = field(default_factory=list)
    sampling_methods: list[SamplingMethod] = field(default_factory=list)
    fewshot_sorting_class: str | None = None
    generation_size: int | None = None
    stop_sequences: list[str] | None = None
    use_logits: bool = False
    num_samples: int = 1
    generation_grammar: None = None


@dataclass
class ModelResponse:
    """The fields of lighteval 0.13's ``ModelResponse``."""

    input: str | list[Any] | None = None
    text: list[str] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    argmax_logits_eq_gold: list[bool] = field(default_factory=list)
    logits: list[list[float]] | None = None
    truncated_tokens_count: int = 0
    padded_tokens_count: int = 0
    input_tokens: list[int] = field(default_factory=list)
    output_tokens: list[list[int]] = field(default_factory=list)
    unconditioned_logprobs: list[float] | None = None


Row = tuple[str, Doc, ModelResponse, dict[str, float]]


@dataclass
class Pools:
    """Seeded random material (~8 MB) that rows are sliced from; built before any timing.

    Tokens and log-probabilities are kept as lists of Python numbers, so a row's lists are cheap
    slices (shared number objects) rather than freshly allocated ones.
    """

    seed: int = 0
    rng: random.Random = field(init=False)
    text: str = field(init=False)
    tokens: list[int] = field(init=False)
    floats: list[float] = field(init=False)

    def __post_init__(self) -> None:
        self.rng = rng = random.Random(self.seed)
        self.text = " ".join(rng.choices(_WORDS.split(), k=400_000))  # ~2.8 MB of words
        self.tokens = array("H", rng.randbytes(2 * 70_000)).tolist()  # ids below 65,536
        self.floats = [-rng.expovariate(1.0) for _ in range(70_000)]


def rows(pools: Pools, tasks: int, samples: int) -> Iterator[Row]:
    """Lazily yield ``tasks * samples`` rows, each sliced at random offsets from the pools."""
    rng, text, tokens, floats = pools.rng, pools.text, pools.tokens, pools.floats
    methods = [SamplingMethod.GENERATIVE]
    stop = ["\n\n", "Question:"]
    for t in range(tasks):
        task_name = f"lighteval|mmlu:subject_{t:04d}|5"
        instruction = f"The following are multiple choice questions about subject {t}.\n\n"
        for i in range(samples):
            bits = rng.getrandbits(64)  # one draw, cut into offsets: at (21 bits), tok, flt, size
            at, tok, flt = bits & 0x1FFFFF, (bits >> 21) & 0xFFFF, (bits >> 37) & 0xFFFF
            size = 1024 + (bits >> 53)  # 1-2 KB query
            out = (bits >> 5) & 0x1FFFFF
            gold = bits & 3
            query = text[at : at + size]
            doc = Doc(
                query=query,
                choices=[text[at + size + 40 * k : at + size + 40 * k + 32] for k in range(4)],
                gold_index=gold,
                instruction=instruction,
                original_query=query,
                id=str(i),
                task_name=task_name,
                num_asked_few_shots=5,
                num_effective_few_shots=5,
                sampling_methods=methods,
                generation_size=256,
                stop_sequences=stop,
            )
            response = ModelResponse(
                input=instruction + query + "\nAnswer:",
                text=[text[out : out + 500]],
                logprobs=floats[flt : flt + 100],
                argmax_logits_eq_gold=[gold == 0],
                truncated_tokens_count=int(size > 2000),
                input_tokens=tokens[tok : tok + 250 + size % 100],
                output_tokens=[tokens[tok + 400 : tok + 500]],
            )
            correct = float(gold == 0)
            yield task_name, doc, response, {"em": correct, "f1": rng.random(), "acc": correct}


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _tree_bytes(root: Path, skip: str = "") -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not (skip and skip in p.parts))


def run_generator(tasks: int, samples: int) -> dict[str, float]:
    """The generator alone: its wall time is what the log phase spends outside evalsink."""
    pools = Pools()
    started = perf_counter()
    count = sum(1 for _ in rows(pools, tasks, samples))
    assert count == tasks * samples
    return {"gen_s": perf_counter() - started, "gen_rss_mb": _peak_rss_mb()}


def run_tracker(tasks: int, samples: int, out: Path, profile: str | None) -> dict[str, float]:
    from evalsink import EvaluationTracker

    source = rows(Pools(), tasks, samples)
    started = perf_counter()  # init: constructing the tracker (imports pydantic, the local sink)
    tracker = EvaluationTracker(out, sinks=["local"], run_id="bench")
    tracker.general_config_logger.log_model_info(model_name="bench/model")
    built, cpu = perf_counter(), process_time()
    profiler = cProfile.Profile() if profile else None
    if profiler:
        profiler.enable()
    for task_name, doc, response, metrics in source:
        tracker.metrics_logger.log(task_name, metrics)
        tracker.details_logger.log(task_name, doc, response, metrics)
    logged = perf_counter()
    rss_log = _peak_rss_mb()
    # before save(), which may delete them: the spool, and the parquet files the local sink has
    # already written in the background (staged beside the spool until save() renames them)
    spool_mb = sum(p.stat().st_size for p in (out / ".evalsink").rglob("*.jsonl")) / 1e6
    staged_mb = sum(p.stat().st_size for p in (out / ".evalsink").rglob("*.parquet.part")) / 1e6
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{profile}.log.prof")
        profiler = cProfile.Profile()
        profiler.enable()
    report = tracker.save()
    saved, cpu = perf_counter(), process_time() - cpu
    if profiler:
        profiler.disable()
        profiler.dump_stats(f"{profile}.save.prof")
    assert report.ok, report
    result = {
        "init_s": built - started,
        "log_s": logged - built,
        "save_s": saved - logged,
        "cpu_s": cpu,
        "rss_log_mb": rss_log,
        "rss_mb": _peak_rss_mb(),
        "out_mb": _tree_bytes(out, skip=".evalsink") / 1e6,
        "spool_mb": spool_mb,
        "staged_mb": staged_mb,
    }
    tracker.close()  # drops the spool if save() did not (not timed)
    return result


def _worker(kind: str, tasks: int, samples: int, out: Path, profile: str | None) -> dict[str, float]:
    command = [sys.executable, __file__, "--worker", kind, "--tasks", str(tasks), "--samples", str(samples)]
    command += ["--output-dir", str(out)] + (["--profile", profile] if profile else [])
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"worker failed ({' '.join(command)}):\n{done.stderr}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def measure(tasks: int, samples: int, repeat: int, root: Path, profile: str | None) -> dict[str, float]:
    """Median over ``repeat`` fresh-process runs of the tracker, and of the generator alone."""
    runs, gens = [], []
    for index in range(repeat):
        out = root / f"t{tasks}-n{samples}-{index}"
        runs.append(_worker("tracker", tasks, samples, out, profile if index == 0 else None))
        shutil.rmtree(out, ignore_errors=True)
        gens.append(_worker("generator", tasks, samples, out, None))
    median = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    median |= {key: statistics.median(gen[key] for gen in gens) for key in gens[0]}
    total = [run["log_s"] + run["save_s"] for run in runs]
    median["total_s"] = statistics.median(total)
    median["total_min_s"], median["total_max_s"] = min(total), max(total)
    median["net_total_s"] = median["total_s"] - median["gen_s"]
    median["us_per_sample"] = median["net_total_s"] / (tasks * samples) * 1e6
    return {"tasks": tasks, "samples": samples, "repeat": repeat, **median}


_COLUMNS = (  # header, key, format
    ("init s", "init_s", ".2f"),
    ("log s", "log_s", ".2f"),
    ("save s", "save_s", ".2f"),
    ("log+save s", "total_s", ".2f"),
    ("min", "total_min_s", ".2f"),
    ("max", "total_max_s", ".2f"),
    ("CPU s (log+save)", "cpu_s", ".2f"),
    ("generator s", "gen_s", ".2f"),
    ("net log+save s", "net_total_s", ".2f"),
    ("µs/sample (net)", "us_per_sample", ".0f"),
    ("peak RSS after log MB", "rss_log_mb", ".0f"),
    ("peak RSS MB", "rss_mb", ".0f"),
    ("generator RSS MB", "gen_rss_mb", ".0f"),
    ("output MB", "out_mb", ".1f"),
    ("spool MB before save", "spool_mb", ".1f"),
    ("staged parquet MB before save", "staged_mb", ".1f"),
)


def _table(results: list[dict[str, float]]) -> list[str]:
    lines = ["| scenario | " + " | ".join(name for name, _, _ in _COLUMNS) + " |"]
    lines.append("|---" * (len(_COLUMNS) + 1) + "|")
    for r in results:
        cells = [f"{r[key]:{spec}}" for _, key, spec in _COLUMNS]
        lines.append(f"| {r['tasks']:,} × {r['samples']:,} | " + " | ".join(cells) + " |")
    return lines


def _source() -> str:
    """Where the measured evalsink comes from (a PYTHONPATH snapshot or the editable install)."""
    spec = importlib.util.find_spec("evalsink")
    return str(Path(spec.origin).parent) if spec and spec.origin else "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--tasks", type=int, help="tasks per run (with --samples: one scenario)")
    parser.add_argument("--samples", type=int, help="samples per task")
    parser.add_argument("--repeat", type=int, default=3, help="runs per scenario; medians are reported")
    parser.add_argument("--output-dir", type=Path, help="where runs write (default: a temporary folder)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--profile", help="cProfile the first run: writes PREFIX.log.prof, PREFIX.save.prof")
    parser.add_argument("--worker", choices=("tracker", "generator"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        if args.worker == "generator":
            print(json.dumps(run_generator(args.tasks, args.samples)))
        else:
            print(json.dumps(run_tracker(args.tasks, args.samples, args.output_dir, args.profile)))
        return
    if (args.tasks is None) != (args.samples is None):
        parser.error("--tasks and --samples go together")
    scenarios = [(args.tasks, args.samples)] if args.tasks else list(DEFAULT_SCENARIOS)
    root = args.output_dir or Path(tempfile.mkdtemp(prefix="evalsink-bench-"))
    source = _source()
    if not args.json:
        print(f"evalsink from {source}; Python {sys.version.split()[0]}; {os.cpu_count()} CPUs")
    results = []
    try:
        for tasks, samples in scenarios:
            prefix = f"{args.profile}-t{tasks}-n{samples}" if args.profile else None
            results.append(measure(tasks, samples, args.repeat, root, prefix))
            if not args.json:
                lines = _table(results[-1:])
                print("\n".join(lines if len(results) == 1 else lines[2:]), flush=True)
    finally:
        if args.output_dir is None:
            shutil.rmtree(root, ignore_errors=True)
    if args.json:
        info = {"python": sys.version.split()[0], "cpus": os.cpu_count(), "evalsink": source}
        print(json.dumps({**info, "results": results}))


if __name__ == "__main__":
    main()
