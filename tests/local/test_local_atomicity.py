"""No file appears under its final name unless it is complete: SIGKILL mid-save, writer exceptions.

The kill test runs a driver process that logs TASKS x SAMPLES lighteval-shaped samples once, then,
for each delay the test sends, forks a child that calls ``save()`` and SIGKILLs that child after
the delay (a negative delay lets it finish). Forking after logging keeps the loop fast: every trial
is a real process killed at a random point of a real ``save()``, without paying for the logging
again. The first, unkilled, trial measures the save window; the delays are then spread over it.
"""

from __future__ import annotations

import json
import os
import random
import select
import signal
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from local_helpers import COLUMNS, files_below, log_raw, strict_json

import evalsink_local.parquet
from evalsink import EvaluationTracker, SinkFailedError
from evalsink.models import EvaluationResults

TASKS = 20
SAMPLES = 600
TRIALS = 14
TAIL_TRIALS = 6
SEED = 20251105

DRIVER = textwrap.dedent(
    """
    import os, random, signal, sys, time
    from evalsink import EvaluationTracker
    from evalsink.demo import make_sample

    out, tasks, samples = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    # details converted at save(), not streamed: the kills must land in that conversion, and a fork
    # must not copy a streaming writer thread
    tracker = EvaluationTracker(
        output_dir=out, sinks=["local"], flush_every=5000, sink_config={"local": {"stream_details": False}}
    )
    tracker.general_config_logger.log_model_info(model_name="org/model")
    rng = random.Random(0)
    kinds = ("multiple_choice", "generative")
    pool = [make_sample(rng, "suite|pool|0", kinds[i % 2], i, 0.5) for i in range(64)]
    # inside `with`, save() leaves the run (and its spool) open, so every fork saves the same run
    with tracker:
        for k in range(tasks):
            name = f"crash|task{k:02d}|0"
            for i in range(samples):
                doc, response, metrics = pool[(i * 7 + k) % len(pool)]
                tracker.metrics_logger.log(name, metrics)
                tracker.details_logger.log(name, doc, response, metrics)
        tracker.details_logger.flush()
        assert "pyarrow" not in sys.modules  # fork before any thread pool exists
        print("READY", flush=True)
        for line in sys.stdin:
            delay = float(line)
            start = time.monotonic()
            pid = os.fork()
            if pid == 0:
                try:
                    tracker.save()
                except BaseException:
                    os._exit(1)
                os._exit(0)
            while True:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    break
                if 0 <= delay <= time.monotonic() - start:
                    os.kill(pid, signal.SIGKILL)
                    _, status = os.waitpid(pid, 0)
                    break
                time.sleep(0.002)
            print(os.waitstatus_to_exitcode(status), round(time.monotonic() - start, 4), flush=True)
    os._exit(0)
    """
)


def _read_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise AssertionError(f"driver said nothing for {timeout} s")
    line = process.stdout.readline()
    if not line:
        raise AssertionError(f"driver exited early (code {process.wait()})")
    return line.strip()


class Checker:
    """Validates every published (non-hidden) file once; files never change after publication."""

    def __init__(self, out: Path) -> None:
        self.out = out
        self.checked: set[Path] = set()

    def published(self) -> list[Path]:
        return [
            path
            for path in files_below(self.out)
            if path.parts[len(self.out.parts)] in {"results", "details"} and not path.name.startswith(".")
        ]

    def hidden(self) -> list[Path]:
        return [
            path
            for path in files_below(self.out)
            if path.parts[len(self.out.parts)] in {"results", "details"} and path.name.startswith(".")
        ]

    def check(self) -> None:
        for path in self.published():
            if path in self.checked:
                continue
            if path.suffix == ".json":
                text = path.read_bytes()
                data = strict_json(text)
                EvaluationResults.model_validate_json(text)
                assert len([task for task in data["results"] if task.startswith("crash|")]) == TASKS, path
            elif path.suffix == ".parquet":
                table = pq.read_table(path)
                assert table.column_names == COLUMNS, path
                assert table.num_rows == SAMPLES, f"{path}: {table.num_rows} rows"
                assert table.column("doc").null_count == 0
            else:
                raise AssertionError(f"unexpected published file {path}")
            self.checked.add(path)
        results = self.out / "results" / "org" / "model"
        details = self.out / "details" / "org" / "model"
        for folder in details.iterdir() if details.exists() else []:
            if any(not name.startswith(".") for name in os.listdir(folder)):
                # results are written before details: details never exist without their results
                assert (results / f"results_{folder.name}.json").exists(), folder

    def has_results(self, date_id: str) -> bool:
        return (self.out / "results" / "org" / "model" / f"results_{date_id}.json").exists()

    def parquet_count(self, date_id: str) -> int:
        folder = self.out / "details" / "org" / "model" / date_id
        return sum(1 for name in os.listdir(folder) if not name.startswith(".")) if folder.exists() else 0

    def date_ids(self) -> set[str]:
        results = self.out / "results" / "org" / "model"
        details = self.out / "details" / "org" / "model"
        found = {p.name[len("results_") : -len(".json")] for p in self.published() if p.parent == results}
        if details.exists():
            found |= {p.name for p in details.iterdir()}
        return found


@pytest.mark.slow
def test_sigkill_during_save_never_leaves_a_truncated_file(tmp_path: Path) -> None:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    out = tmp_path / "out"
    env = {key: value for key, value in os.environ.items() if not key.startswith("EVALSINK_")}
    process = subprocess.Popen(
        [sys.executable, str(driver), str(out), str(TASKS), str(SAMPLES)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        bufsize=1,
        env=env,
    )
    checker = Checker(out)
    try:
        assert _read_line(process, 120) == "READY"

        def trial(delay: float) -> tuple[int, float, set[str]]:
            assert process.stdin is not None
            before = checker.date_ids()
            process.stdin.write(f"{delay}\n")
            process.stdin.flush()
            code, elapsed = _read_line(process, 120).split()
            checker.check()
            return int(code), float(elapsed), checker.date_ids() - before

        # two unkilled saves: complete outputs, and the (warm) duration the kills are spread over
        windows = []
        for _ in range(2):
            code, elapsed, new = trial(-1)
            assert code == 0
            (date_id,) = new
            assert checker.has_results(date_id)
            assert checker.parquet_count(date_id) == TASKS
            windows.append(elapsed)
        window = min(windows)

        rng = random.Random(SEED)
        # evenly spread over the window, plus a few around its end, where files are published
        delays = [window * (i + rng.random()) / TRIALS for i in range(TRIALS)]
        delays += [window * rng.uniform(0.8, 1.05) for _ in range(TAIL_TRIALS)]
        outcomes = []
        for delay in delays:
            code, _, new = trial(delay)
            assert code in (0, -signal.SIGKILL), code
            outcomes.append(
                {
                    "delay": round(delay, 3),
                    "killed": code == -signal.SIGKILL,
                    "results": any(checker.has_results(d) for d in new),
                    "details": sum(checker.parquet_count(d) for d in new),
                    "hidden": len(checker.hidden()),
                }
            )
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    print(f"save window {window:.2f} s", *outcomes, sep="\n")
    killed = [outcome for outcome in outcomes if outcome["killed"]]
    # the kills did land inside save(): most trials were killed, some of them after the results
    # were published but before every details file was, and unfinished temporary files were left
    assert len(killed) >= TRIALS // 2
    assert any(o["results"] and o["details"] < TASKS for o in killed)
    assert outcomes[-1]["hidden"] > 0


# -- exceptions inside the writer -------------------------------------------------------------------


def _failing_writer(monkeypatch: pytest.MonkeyPatch, task: str, on_read: int, after: int) -> list[str]:
    """Make the parquet writer raise at record ``after`` of the ``on_read``-th read of ``task``.

    Returns the log of raises, so a test can check the failure did happen where intended.
    """
    real = evalsink_local.parquet.write_details
    raised: list[str] = []

    def write_details(read: Callable[[], Iterable[dict[str, Any]]], *args: Any, **kwargs: Any) -> Any:
        reads = 0  # reads of this task (the writer may read a task more than once)

        def failing_read() -> Iterable[dict[str, Any]]:
            nonlocal reads
            reads += 1
            for index, record in enumerate(read()):
                if record["task_name"] == task and reads == on_read and index == after:
                    raised.append(f"{task} read {reads} record {index}")
                    raise RuntimeError(f"writer blew up on {task}")
                yield record

        return real(failing_read, *args, **kwargs)

    monkeypatch.setattr(evalsink_local.parquet, "write_details", write_details)
    return raised


@pytest.mark.parametrize(
    ("on_read", "metric_of"),
    [
        pytest.param(1, float, id="single-pass"),
        # the metric turns into a string at row 15: the writer restarts with a unified schema,
        # reading the task twice more; fail during the last (writing) read
        pytest.param(3, lambda i: float(i) if i < 15 else f"s{i}", id="schema-change"),
    ],
)
def test_writer_exception_leaves_no_partial_file(
    make_tracker: Callable[..., EvaluationTracker],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    on_read: int,
    metric_of: Callable[[int], Any],
) -> None:
    # the failure is injected into the conversion at save(): no streaming (its faults: test_local_streaming)
    tracker = make_tracker(sink_config={"local": {"row_group_size": 3, "stream_details": False}})
    tracker.general_config_logger.log_model_info(model_name="org/model")
    for task in ("a|0", "b|0", "c|0"):
        log_raw(
            tracker,
            task,
            [({"query": f"{task}{i}"}, {"text": ["x"]}, {"m": metric_of(i)}) for i in range(20)],
        )
    raised = _failing_writer(monkeypatch, "b|0", on_read=on_read, after=10)

    with pytest.raises(SinkFailedError, match="writer blew up on b"):
        tracker.save()
    assert raised == [f"b|0 read {on_read} record 10"]

    report = tracker.report
    assert report is not None
    assert not report["local"].ok
    assert report.failed == ["local"]
    assert any("writer blew up on b|0" in error for error in report["local"].errors)

    date_id = report.date_id
    out = tmp_path / "out"
    results = out / "results" / "org" / "model" / f"results_{date_id}.json"
    data = strict_json(results.read_bytes())
    assert set(data["results"]) >= {"a|0", "b|0", "c|0"}

    folder = out / "details" / "org" / "model" / str(date_id)
    names = sorted(os.listdir(folder)) if folder.exists() else []
    # no partial file for b, under its name or as a leftover temporary; the other tasks are whole
    assert names == [f"details_a|0_{date_id}.parquet", f"details_c|0_{date_id}.parquet"]
    for name in names:
        assert pq.read_table(folder / name).num_rows == 20
    # the report still lists what was written
    assert report["local"].outputs == [str(results), *(str(folder / name) for name in names)]


def test_writer_exception_with_optional_local_sink_returns_a_failed_report(
    make_tracker: Callable[..., EvaluationTracker], monkeypatch: pytest.MonkeyPatch
) -> None:
    tracker = make_tracker(
        sink_config={"local": {"required": False, "row_group_size": 3, "stream_details": False}}
    )
    log_raw(tracker, "b|0", [({"query": f"q{i}"}, {"text": ["x"]}, {"m": 1.0}) for i in range(20)])
    _failing_writer(monkeypatch, "b|0", on_read=1, after=10)
    report = tracker.save()
    assert not report.ok
    assert report.failed == ["local"]
    results = Path(tracker.output.root) / "results" / "unknown-model" / f"results_{report.date_id}.json"
    assert json.loads(results.read_bytes())["results"]["b|0"] == {"m": 1.0, "m_stderr": 0.0}
    folder = Path(tracker.output.root) / "details" / "unknown-model" / str(report.date_id)
    leftovers = list(folder.iterdir()) if folder.exists() else []
    assert leftovers == []


@pytest.mark.parametrize("stream_details", [True, False])
def test_saving_a_file_again_removes_what_a_killed_write_of_it_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, stream_details: bool
) -> None:
    """A write killed midway never removes its hidden temporary file, often as large as the
    parquet file it was becoming. `evalsink recover` saves the run again under the same date id:
    then the leftovers of those same files go; anything else is left alone."""
    import evalsink.tracker

    date_id = "2026-01-02T03-04-05.000006"
    monkeypatch.setattr(evalsink.tracker, "new_date_id", lambda: date_id)
    task = "lighteval|left:test|0"
    details = tmp_path / "details" / "org" / "m" / date_id
    results = tmp_path / "results" / "org" / "m"
    details.mkdir(parents=True)
    results.mkdir(parents=True)
    leftovers = [
        details / f".details_{task}_{date_id}.parquet.tmp-dead0001",
        results / f".results_{date_id}.json.tmp-dead0002",
    ]
    unrelated = [
        details / f".details_other|task|0_{date_id}.parquet.tmp-dead0003",
        results / f"results_{date_id}.json.tmp-dead0004",  # not hidden: not one of ours
        results / ".notes.tmp-dead0005",
    ]
    for path in leftovers + unrelated:
        path.write_bytes(b"partial")

    tracker = EvaluationTracker(
        tmp_path, sinks=["local"], sink_config={"local": {"stream_details": stream_details}}
    )
    tracker.general_config_logger.log_model_info(model_name="org/m")
    for i in range(3):
        tracker.details_logger.log(task, {"query": f"q{i}"}, {"text": ["a"]}, {"acc": 1.0})
        tracker.metrics_logger.log(task, {"acc": 1.0})
    assert tracker.save().ok

    assert [path for path in leftovers if path.exists()] == []
    assert [path for path in unrelated if not path.exists()] == []
    assert pq.read_table(details / f"details_{task}_{date_id}.parquet").num_rows == 3
