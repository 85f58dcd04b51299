"""Logged details are spooled to disk, not kept in memory: peak RSS stays flat while logging.

A fresh subprocess logs 20,000 lighteval-shaped samples of ~3 KB each (~60 MB of JSON), then saves.
Two functional bounds, far from what this machine measures (~2 MB growth, ~235 MB peak):

* the resident set grows by less than 30 MB between sample 6,000 and sample 20,000 (by then the
  local sink converts details as they come, with pyarrow and its JSON reader loaded): holding the
  samples (even just their encoded bytes) would add at least the ~41 MB logged in between;
* the whole run, save() included (pyarrow, pandas), peaks (ru_maxrss) under 300 MB.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

SAMPLES = 20_000
TASKS = 4

PEAK_MB = textwrap.dedent(
    """
    import resource

    def peak_mb():
        # VmHWM is this process's own peak; ru_maxrss is inherited across exec from the parent
        # (a big pytest process would make the child report the parent's peak)
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    """
)

SCRIPT = PEAK_MB + textwrap.dedent(
    """
    import dataclasses, json, random, sys
    import psutil
    from evalsink import EvaluationTracker
    from evalsink.demo import make_sample

    out, samples, tasks = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

    def rss_mb():
        return psutil.Process().memory_info().rss / 2**20

    rng = random.Random(0)
    kinds = ("multiple_choice", "generative")
    pool = []
    for i in range(64):
        doc, response, metrics = make_sample(rng, "suite|mem|0", kinds[i % 2], i, 0.5)
        doc.specific = {"passage": " ".join(rng.choice("abcdefgh") * 7 for _ in range(180))}
        pool.append((doc, response, metrics))

    tracker = EvaluationTracker(output_dir=out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    warm = None
    for i in range(samples):
        doc, response, metrics = pool[i % len(pool)]
        task = f"mem|task{i % tasks}|0"
        tracker.metrics_logger.log(task, metrics)
        tracker.details_logger.log(task, dataclasses.replace(doc, id=f"sample-{i}"), response, metrics)
        if i == 5999:
            warm = rss_mb()
    tracker.details_logger.flush()
    spool_bytes = tracker.details_logger.spool.path.stat().st_size
    after_log = rss_mb()
    report = tracker.save()
    print(json.dumps({
        "warm": warm, "after_log": after_log, "after_save": peak_mb(), "ok": report.ok,
        "spool_bytes": spool_bytes, "outputs": report["local"].outputs,
    }))
    """
)


def run_script(tmp_path: Path, script: str, *args: int | str) -> dict[str, Any]:
    """Run ``script`` in a fresh interpreter (its own peak RSS) writing to tmp_path/out; its
    last line of output is a JSON object of figures."""
    path = tmp_path / "memory_run.py"
    path.write_text(script, encoding="utf-8")
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")}
    done = subprocess.run(
        [sys.executable, str(path), str(tmp_path / "out"), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    stats: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    print(stats)
    return stats


@pytest.mark.slow
def test_peak_rss_does_not_grow_with_logged_details(tmp_path: Path) -> None:
    stats = run_script(tmp_path, SCRIPT, SAMPLES, TASKS)

    # the run really logged ~3 KB samples, and every one of them reached the parquet files
    assert stats["ok"]
    assert stats["spool_bytes"] / SAMPLES > 2_500
    parquets = [path for path in stats["outputs"] if path.endswith(".parquet")]
    assert len(parquets) == TASKS
    assert sum(pq.ParquetFile(path).metadata.num_rows for path in parquets) == SAMPLES
    logged_after_warmup_mb = stats["spool_bytes"] * (SAMPLES - 6000) / SAMPLES / 2**20
    assert logged_after_warmup_mb > 38

    assert stats["after_log"] - stats["warm"] < 30, stats
    assert stats["after_save"] < 300, stats


LARGE_SAMPLES_SCRIPT = PEAK_MB + textwrap.dedent(
    """
    import json, os, random, string, sys
    from evalsink import EvaluationTracker

    out, samples, size, kind = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
    rng = random.Random(0)
    pool = "".join(rng.choices(string.ascii_letters + " ", k=4 * size))

    def doc(i):
        if kind == "image":  # bytes, as a PIL image is written
            return {"query": f"what is in image {i}?", "images": [{"path": None, "bytes": os.urandom(size)}]}
        start = rng.randrange(3 * size)  # a long-context prompt
        return {"query": pool[start : start + size], "id": str(i)}

    tracker = EvaluationTracker(output_dir=out, sinks=["local"])
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for i in range(samples):
        tracker.metrics_logger.log("suite|large|0", {"acc": 1.0})
        tracker.details_logger.log("suite|large|0", doc(i), {"text": ["a cat"]}, {"acc": 1.0})
    after_log = peak_mb()
    report = tracker.save()
    print(json.dumps({"after_log": after_log, "after_save": peak_mb(), "ok": report.ok,
                      "outputs": report["local"].outputs}))
    """
)


def _row_groups(stats: dict[str, Any]) -> tuple[int, int]:
    assert stats["ok"]
    [details] = [path for path in stats["outputs"] if path.endswith(".parquet")]
    metadata = pq.ParquetFile(details).metadata
    return metadata.num_rows, metadata.num_row_groups


@pytest.mark.slow
def test_samples_carrying_images_stay_in_bounded_memory(tmp_path: Path) -> None:
    """1,000 samples with a 300 KB image each: 300 MB of bytes, 400 MB of base64 in the spool.
    Buffered and converted by count alone (1,000 samples a flush, 500 rows a row group) the run
    peaked at 1.65 GB; the spool and the row groups are bounded by bytes too."""
    stats = run_script(tmp_path, LARGE_SAMPLES_SCRIPT, 1000, 300_000, "image")

    rows, groups = _row_groups(stats)
    assert rows == 1000
    assert groups > 10  # row groups of ~16 MB of JSON, not 500 rows
    assert stats["after_log"] < 250, stats
    assert stats["after_save"] < 600, stats


@pytest.mark.slow
def test_long_text_samples_stream_in_bounded_memory(tmp_path: Path) -> None:
    """1,500 samples with a 300 KB prompt each, converted while logging (text streams, unlike
    images). Row groups of 500 rows held 150 MB each, pending and in flight, and the run peaked
    at 1.3 GB; they are cut by bytes as at save()."""
    stats = run_script(tmp_path, LARGE_SAMPLES_SCRIPT, 1500, 300_000, "text")

    rows, groups = _row_groups(stats)
    assert rows == 1500
    assert groups > 20  # ~16 MB of JSON each, not 500 rows
    assert stats["after_save"] < 550, stats
