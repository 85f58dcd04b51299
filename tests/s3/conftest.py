"""Fixtures of the S3 tests: moto's standalone server on 127.0.0.1, a fresh bucket per test.

The server is one subprocess for the session (``python -m moto.server``: the same interpreter,
so the same moto), on a free port. A test may kill it (the store dying mid-save) and start it
again on the same port; a test that finds it dead starts it again.

s3fs is pointed at it with ``AWS_ENDPOINT_URL``, which botocore reads each time a client is
created. ``FSSPEC_S3_ENDPOINT_URL`` would work too, but fsspec reads ``FSSPEC_*`` variables once,
when fsspec is imported — before any test runs. s3fs caches its file-system objects (and their
clients) per set of arguments, not per environment, so the cache is cleared around each test.

moto keeps its state in the server process's memory: a killed server loses it. To look at what a
dead server had accepted, a test turns moto's request recorder on (it appends every request to
``MOTO_RECORDER_FILEPATH`` as it arrives) and replays the recording into the restarted server.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from evalsink import EvaluationTracker

REGION = "us-east-1"
PART = 5 * 2**20


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class MotoServer:
    """moto's S3 server in a subprocess: start, kill (SIGKILL, as a crash), start again on the same port."""

    def __init__(self, folder: Path) -> None:
        self.port = _free_port()
        self.folder = folder
        self.recording = folder / "moto-recording.jsonl"
        self.log = folder / "moto-server.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, timeout: float = 30.0) -> None:
        env = {**os.environ, "MOTO_RECORDER_FILEPATH": str(self.recording)}
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                break
            with contextlib.suppress(OSError):
                self.request("GET", "/")  # S3's ListBuckets: the server answers requests
                return
            time.sleep(0.05)
        self.kill()
        raise RuntimeError(f"moto server did not start on port {self.port}: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL: no response is finished, nothing is flushed, the in-memory state is gone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=30)

    def request(self, method: str, path: str) -> bytes:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        if response.status >= 400:
            raise OSError(f"moto answered {response.status} to {method} {path}: {body[:500]!r}")
        return body

    def recorder(self, action: str) -> None:
        """moto's recorder API: reset-recording, start-recording, stop-recording, replay-recording."""
        self.request("POST", f"/moto-api/recorder/{action}")


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto"))
    server.start()
    yield server
    server.kill()


class Bucket:
    """A bucket of its own for one test, and ways to look into it."""

    def __init__(self, server: MotoServer, name: str) -> None:
        import boto3
        import s3fs

        self.server = server
        self.name = name
        self.client: Any = boto3.client("s3", region_name=REGION)
        self.fs: Any = s3fs.S3FileSystem()

    def url(self, path: str = "") -> str:
        return f"s3://{self.name}/{path}".rstrip("/")

    def list_keys(self) -> list[str]:
        """Every object of the bucket, asked of the server (no s3fs listing cache)."""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(item["Key"] for page in pages for item in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        data: bytes = self.client.get_object(Bucket=self.name, Key=key)["Body"].read()
        return data

    def pending_uploads(self) -> list[str]:
        """Keys of the multipart uploads begun and neither completed nor aborted."""
        uploads = self.client.list_multipart_uploads(Bucket=self.name).get("Uploads", [])
        return sorted(upload["Key"] for upload in uploads)

    def on_call(self, operation: str, handler: Callable[..., Any]) -> Callable[[], None]:
        """Run ``handler(params=...)`` before s3fs sends each ``operation`` request (botocore's events).

        Returns what removes the hook. The tracker's ``OutputDir`` uses the same s3fs object (s3fs
        caches one per set of arguments), hence the same client and the same hooks.
        """
        event = f"before-parameter-build.s3.{operation}"

        def hook(params: dict[str, Any], **_: Any) -> None:
            handler(params=params)

        self.fs.s3.meta.events.register(event, hook)
        return lambda: self.fs.s3.meta.events.unregister(event, hook)


@pytest.fixture
def bucket(moto_server: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Bucket]:
    """A new bucket on the moto server, with the AWS environment pointing at that server only."""
    import fsspec.config
    import s3fs

    if not moto_server.alive:  # a test killed it and did not get to start it again
        moto_server.start()
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL_S3", "AWS_MAX_ATTEMPTS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "evalsink-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "evalsink-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_server.endpoint)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # multipart uploads from 5 MiB (S3's smallest part; s3fs's default is 50 MiB): big-file paths, small data
    monkeypatch.setitem(
        fsspec.config.conf, "s3", {**fsspec.config.conf.get("s3", {}), "default_block_size": PART}
    )
    s3fs.S3FileSystem.clear_instance_cache()
    made = Bucket(moto_server, f"evalsink-{uuid.uuid4().hex[:12]}")
    made.client.create_bucket(Bucket=made.name)
    yield made
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture
def make_tracker() -> Iterator[Callable[..., EvaluationTracker]]:
    """Trackers with the local sink only; every tracker a test leaves open is closed afterwards."""
    made: list[EvaluationTracker] = []

    def make(output_dir: str | os.PathLike[str], **kwargs: Any) -> EvaluationTracker:
        kwargs.setdefault("sinks", ["local"])
        tracker = EvaluationTracker(output_dir=output_dir, **kwargs)
        made.append(tracker)
        return tracker

    yield make
    for tracker in made:
        if tracker._started and not tracker._closed:
            tracker.close()
