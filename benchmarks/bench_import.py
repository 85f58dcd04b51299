"""Cold import and construction times of evalsink, each in a fresh interpreter.

    python benchmarks/bench_import.py                 # median of 15 runs per statement
    python benchmarks/bench_import.py --repeat 31 --top 20 --json

The time is measured inside the child around the statement alone (interpreter start-up excluded).
Bytecode is cached under a private ``PYTHONPYCACHEPREFIX`` (warmed by one discarded run), as after
a ``pip install``, whatever ``PYTHONDONTWRITEBYTECODE`` says and without writing into the sources.
``python -X importtime`` then lists what constructing a tracker spends its import time on.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

STATEMENTS = {
    "import evalsink": "import evalsink",
    "from evalsink import EvaluationTracker": "from evalsink import EvaluationTracker",
    "EvaluationTracker(tmpdir)": (
        "from evalsink import EvaluationTracker\nEvaluationTracker({tmp!r}, sinks=['local'])"
    ),
}
_CHILD = """
import time
_start = time.perf_counter()
{body}
print(time.perf_counter() - _start)
"""


def _env(cache: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
    return {**env, "PYTHONPYCACHEPREFIX": cache}


def child_seconds(body: str, cache: str) -> float:
    """Run ``body`` in a fresh interpreter and return the seconds it took there."""
    code = _CHILD.format(body=body)
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=_env(cache)
    )
    return float(done.stdout.strip().splitlines()[-1])


def _importtime_once(body: str, cache: str) -> dict[str, float]:
    """Self time (ms) of every module ``body`` imports, from one ``-X importtime`` run."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", body],
        capture_output=True,
        text=True,
        check=True,
        env=_env(cache),
    )
    modules: dict[str, float] = {}
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "[us]" not in line:
            own, _, name = line.removeprefix("import time:").split("|")
            modules[name.strip()] = int(own) / 1000
    return modules


def importtime(body: str, top: int, cache: str, runs: int) -> dict[str, list[tuple[str, float]]]:
    """Median over ``runs`` of ``-X importtime``: self time per top-level package, costliest modules.

    Self times are used because ``importlib.import_module`` (how ``evalsink`` loads its names
    lazily) is not itself timed, so cumulative figures would miss modules loaded that way.
    """
    samples = [_importtime_once(body, cache) for _ in range(runs)]
    packages: list[dict[str, float]] = []
    for modules in samples:
        totals: dict[str, float] = {}
        for name, own in modules.items():
            package = name.split(".")[0].lstrip("_")
            totals[package] = totals.get(package, 0.0) + own
        packages.append(totals)

    def median(per_run: list[dict[str, float]]) -> list[tuple[str, float]]:
        names = set().union(*per_run)
        values = {name: statistics.median(run.get(name, 0.0) for run in per_run) for name in names}
        return sorted(values.items(), key=lambda item: item[1], reverse=True)[:top]

    total = statistics.median(sum(modules.values()) for modules in samples)
    return {"packages": median(packages), "modules": median(samples), "total": [("all imports", total)]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--repeat", type=int, default=15, help="fresh interpreters per statement")
    parser.add_argument("--top", type=int, default=15, help="rows of the -X importtime listing")
    parser.add_argument("--importtime-runs", type=int, default=5, help="-X importtime runs (median)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="evalsink-import-") as tmp:
        cache = os.path.join(tmp, "pycache")
        results = {}
        for label, template in STATEMENTS.items():
            body = template.format(tmp=tmp)
            child_seconds(body, cache)  # warm the bytecode cache
            runs = [child_seconds(body, cache) * 1000 for _ in range(args.repeat)]
            results[label] = {"median_ms": statistics.median(runs), "min_ms": min(runs), "max_ms": max(runs)}
        body = STATEMENTS["EvaluationTracker(tmpdir)"].format(tmp=tmp)
        top = importtime(body, args.top, cache, args.importtime_runs)
    if args.json:
        print(json.dumps({"repeat": args.repeat, "results": results, "importtime": top}))
        return
    print(f"Python {sys.version.split()[0]}; median of {args.repeat} fresh interpreters")
    print("| statement | median ms | min ms | max ms |\n|---|---|---|---|")
    for label, row in results.items():
        print(f"| `{label}` | {row['median_ms']:.1f} | {row['min_ms']:.1f} | {row['max_ms']:.1f} |")
    print(
        f"\n-X importtime of EvaluationTracker(tmpdir), median of {args.importtime_runs} runs: "
        f"{top['total'][0][1]:.0f} ms of imports in all"
    )
    for title, key in (("package (self time summed)", "packages"), ("module (self time)", "modules")):
        print(f"\n| {title} | ms |\n|---|---|")
        for name, own in top[key]:
            print(f"| `{name}` | {own:.1f} |")


if __name__ == "__main__":
    main()
