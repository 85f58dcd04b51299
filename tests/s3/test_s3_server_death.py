"""The S3 server dies in the middle of save(), then comes back: the run is re-saved from its spool.

The server is SIGKILLed at a chosen moment — s3fs about to send the second part of a large details
file, the first one stored — from a botocore hook on the client the tracker uses: the kill is
deterministic, and the upload really meets a dead server. moto's state dies with its process, so
moto's recorder logs every request as it arrives; the log tells what the dead server had accepted,
and replaying it into the restarted server (same port) rebuilds its state.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
import s3fs
from conftest import PART, Bucket
from s3_helpers import check_whole, log_bulky_samples, log_demo_samples, read_table, strict_json

from evalsink import EvaluationTracker, SinkFailedError
from evalsink.manifest import RunState, manifest_path, read_manifest
from evalsink.recovery import find_runs, recover_run
from evalsink.report import SaveReport

MODEL = "org/model"
SMALL, BULKY, LAST = "custom|small|0", "custom|bulky|0", "custom|last|0"
BULKY_ROWS, BULKY_TEXT = 2000, 8192  # 16 MiB of parquet: the second part is sent from inside write()


def recorded_requests(path: Path) -> list[tuple[str, str, dict[str, list[str]], bytes]]:
    """(method, key path, query, body) of every request the server received, from moto's recorder."""
    requests = []
    for line in path.read_text().splitlines():
        entry = json.loads(line)
        url = urlsplit(entry["url"])
        body = entry.get("body") or ""
        data = base64.b64decode(body) if entry.get("body_encoded") else body.encode()
        query = parse_qs(url.query, keep_blank_values=True)
        requests.append((entry["method"], unquote(url.path), query, data))
    return requests


def dead_server_accepted(bucket: Bucket, small_key: str) -> None:
    """From the recording: one whole PutObject, then parts of the large upload, never a completion."""
    received = recorded_requests(bucket.server.recording)
    bucket_path = f"/{bucket.name}/"
    created = [
        (path.removeprefix(bucket_path), body)
        for method, path, query, body in received
        if method == "PUT" and path.startswith(bucket_path) and "uploadId" not in query
    ]
    assert [key for key, _ in created] == [small_key]
    check_whole(small_key, created[0][1])
    completions = [path for method, path, query, _ in received if method == "POST" and "uploadId" in query]
    assert completions == []  # CompleteMultipartUpload never sent: the parts are not an object
    parts = [(query["partNumber"], len(body)) for _, _, query, body in received if "partNumber" in query]
    assert [number for number, _ in parts] == [["1"]]
    assert parts[0][1] >= PART


def spool_is_kept(spool: Path, spool_dir: Path, date_id: str) -> None:
    """The spool and its manifest are kept on local disk, every sample in it; the local sink failed."""
    assert spool.parent == spool_dir / "evalsink-runs" / "dies"
    assert len(spool.read_text().splitlines()) == 5 + BULKY_ROWS + 3
    manifest = read_manifest(manifest_path(spool))
    assert manifest is not None
    assert (manifest.state, manifest.date_id) == (RunState.FAILED, date_id)


def test_the_server_dying_mid_upload_publishes_nothing_partial_and_the_spool_re_saves_the_run(
    bucket: Bucket,
    make_tracker: Callable[..., EvaluationTracker],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    server = bucket.server
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # no botocore retries against a dead server (12 s each)
    server.recorder("reset-recording")
    server.recorder("start-recording")
    url = bucket.url("evals")
    tracker = make_tracker(url, run_id="dies", sink_config={"local": {"row_group_size": 200}})
    tracker.general_config_logger.log_model_info(model_name=MODEL)
    small_rows = log_demo_samples(tracker, SMALL, 5)
    log_bulky_samples(tracker, BULKY, BULKY_ROWS, BULKY_TEXT)
    last_rows = log_demo_samples(tracker, LAST, 3)
    killed: list[int] = []

    def kill_before_part_two(params: dict[str, Any]) -> None:
        if params["PartNumber"] == 2 and not killed:
            server.kill()
            killed.append(params["PartNumber"])

    bucket.on_call("UploadPart", kill_before_part_two)
    assert tracker.output.fs is bucket.fs  # the hook is on the client the tracker uses

    with pytest.raises(SinkFailedError) as raised:
        tracker.save()

    # -- a clear error, naming the file that was being uploaded and saying the run is not complete
    assert (killed, server.alive) == ([2], False)
    report = tracker.report
    assert report is not None
    first_date = report.date_id
    small_key, bulky_key = (
        f"evals/details/{MODEL}/{first_date}/details_{task}_{first_date}.parquet" for task in (SMALL, BULKY)
    )
    [error] = report["local"].errors
    assert f"OutputWriteError: could not write {bucket.url(bulky_key)}: " in error
    assert f"{LAST!r}: NotAttemptedError: not attempted: the output store failed on an earlier file" in error
    results_url = bucket.url(f"evals/results/{MODEL}/results_{first_date}.json")
    assert f"the results file {results_url} was not written" in error
    assert "recover_run" in error
    assert (report.failed, report["local"].outputs) == (["local"], [bucket.url(small_key)])
    assert f"could not write {bucket.url(bulky_key)}" in str(raised.value)

    spool_is_kept(tracker.details_logger.spool.path, tmp_path / "spool", str(first_date))
    dead_server_accepted(bucket, small_key)

    # -- the server comes back (same port), with its state: the bucket (made before the recording
    # started), then what the recording rebuilds
    server.start()
    bucket.client.create_bucket(Bucket=bucket.name)
    server.recorder("replay-recording")
    assert bucket.list_keys() == [small_key]
    assert read_table(bucket.get(small_key)).to_pylist() == small_rows
    assert bucket.pending_uploads() == [bulky_key]  # begun, never completed: not an object

    # -- a new process finds the run (its save began, the local sink failed) and saves it again
    monkeypatch.delenv("AWS_MAX_ATTEMPTS")
    s3fs.S3FileSystem.clear_instance_cache()
    [run] = find_runs(url)
    assert (run.run_id, run.state, run.recoverable) == ("dies", RunState.FAILED, True)

    again = recover_run(url, "dies")

    assert again.ok, str(again)
    resaved_run_is_whole(bucket, again, str(first_date), small_key, [small_rows, last_rows])
    assert find_runs(url) == []  # the spool has done its job
    assert [path for path in (tmp_path / "spool").rglob("*") if path.is_file()] == []


def resaved_run_is_whole(
    bucket: Bucket, report: SaveReport, first_date: str, old_key: str, rows: list[list[dict[str, Any]]]
) -> None:
    """The run saved again from the spool: every task, every sample, the results file, all whole."""
    date_id = report.date_id
    assert date_id is not None
    assert date_id == first_date  # saved again under the date id its save chose: one run, one date
    results_key = f"evals/results/{MODEL}/results_{date_id}.json"
    details = [
        f"evals/details/{MODEL}/{date_id}/details_{task}_{date_id}.parquet" for task in (SMALL, BULKY, LAST)
    ]
    assert report["local"].outputs == [bucket.url(key) for key in [results_key, *details]]
    assert old_key in details  # the file published before the server died, replaced whole
    assert bucket.list_keys() == sorted([results_key, *details])
    for key in bucket.list_keys():
        check_whole(key, bucket.get(key))
    results = strict_json(bucket.get(results_key))
    assert results["evalsink_recovery"]["partial"] is False
    assert results["evalsink_recovery"]["samples_recovered"] == 5 + BULKY_ROWS + 3
    assert sorted(results["results"]) == sorted([SMALL, BULKY, LAST, "all"])
    assert read_table(bucket.get(details[0])).to_pylist() == rows[0]
    assert read_table(bucket.get(details[2])).to_pylist() == rows[1]
    bulky = read_table(bucket.get(details[1])).column("doc").to_pylist()
    assert [row["query"] for row in bulky] == [f"q{i}" for i in range(BULKY_ROWS)]
