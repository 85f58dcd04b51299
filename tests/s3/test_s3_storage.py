"""How a file appears on S3: written under its final key, whole or not at all, never published later.

The first test shows why :meth:`OutputDir.open_atomic` cannot simply use ``with fs.open(...)``: an
s3fs file closed after an error publishes what was written so far.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from typing import Any

import pytest
from conftest import PART, Bucket

from evalsink.storage import OutputDir, OutputWriteError


class BlockFailedError(Exception):
    """The code writing the data failed (not the store)."""


def write_then_fail(opened: AbstractContextManager[Any], *chunks: bytes) -> None:
    """Write ``chunks`` into what ``opened`` opens, then fail as a writer's bug would."""
    with opened as handle:
        for chunk in chunks:
            handle.write(chunk)
        raise BlockFailedError


def test_s3fs_publishes_a_partial_object_when_a_failed_with_block_closes_it(bucket: Bucket) -> None:
    """The hazard being guarded against, as s3fs behaves: close() after an error is a commit."""
    with pytest.raises(BlockFailedError):
        write_then_fail(bucket.fs.open(f"{bucket.name}/small.bin", "wb"), b"x" * 100)
    with pytest.raises(BlockFailedError):  # one part uploaded, then more data buffered
        write_then_fail(bucket.fs.open(f"{bucket.name}/large.bin", "wb"), b"y" * (PART + 1), b"z" * 1000)
    assert bucket.list_keys() == ["large.bin", "small.bin"]
    assert len(bucket.get("large.bin")) == PART + 1001  # published although the writer failed


@pytest.mark.parametrize("size", [100, 2 * PART + 10], ids=["single-put", "multipart"])
def test_a_failed_block_publishes_nothing_and_aborts_the_upload(bucket: Bucket, size: int) -> None:
    output = OutputDir(bucket.url("evals"))
    with pytest.raises(BlockFailedError):
        write_then_fail(output.open_atomic("results/file.json"), b"a" * size)
    assert bucket.list_keys() == []
    assert bucket.pending_uploads() == []  # the parts already sent were aborted


def test_a_whole_file_is_written_directly_under_its_key(bucket: Bucket) -> None:
    output = OutputDir(bucket.url("evals"))
    data = bytes(range(256)) * (PART // 128)  # two parts and a bit
    assert output.write_bytes("a/b/file.bin", data) == bucket.url("evals/a/b/file.bin")
    assert output.write_bytes("a/small.json", b"{}") == bucket.url("evals/a/small.json")
    assert bucket.list_keys() == [
        "evals/a/b/file.bin",
        "evals/a/small.json",
    ]  # no temporary key, no folder marker
    assert bucket.get("evals/a/b/file.bin") == data
    assert bucket.pending_uploads() == []


def test_an_upload_whose_abort_fails_is_never_published_later(
    bucket: Bucket, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The store fails again while the upload is being aborted: the parts stay, but as an upload only.

    The fsspec file keeps the parts' list and the buffer; without being marked closed, its
    close() — by the garbage collector, say — would complete the upload with what it holds.
    """
    output = OutputDir(bucket.url("evals"))
    opened: list[Any] = []
    real_open = output.fs.open

    def recording_open(*args: Any, **kwargs: Any) -> Any:
        opened.append(real_open(*args, **kwargs))
        return opened[-1]

    monkeypatch.setattr(output.fs, "open", recording_open)

    def abort_fails(params: dict[str, Any]) -> None:
        raise ConnectionError("the store went away during the abort")

    bucket.on_call("AbortMultipartUpload", abort_fails)
    with caplog.at_level(logging.WARNING, logger="evalsink"), pytest.raises(BlockFailedError):
        write_then_fail(output.open_atomic("details/big.parquet"), b"p" * (PART + 10), b"q" * 10)
    assert "could not abort the unfinished upload of s3://" in caplog.text
    assert bucket.url("evals/details/big.parquet") in caplog.text
    (fsspec_file,) = opened
    marked_closed = fsspec_file.closed
    fsspec_file.close()  # what `with` or the garbage collector would do, at any later moment
    assert marked_closed
    assert bucket.list_keys() == []
    assert bucket.pending_uploads() == ["evals/details/big.parquet"]  # left for the lifecycle rule


def test_a_store_failure_names_the_url_and_creates_no_bucket(bucket: Bucket) -> None:
    missing = f"{bucket.name}-missing"
    output = OutputDir(f"s3://{missing}/evals")
    with pytest.raises(OutputWriteError) as raised:
        output.write_bytes("results/r.json", b"{}")
    assert str(raised.value).startswith(f"could not write s3://{missing}/evals/results/r.json: ")
    assert raised.value.url == f"s3://{missing}/evals/results/r.json"
    assert isinstance(raised.value, OSError)
    assert missing not in [entry["Name"] for entry in bucket.client.list_buckets()["Buckets"]]


def test_a_part_upload_failure_inside_the_block_is_an_output_write_error(bucket: Bucket) -> None:
    """A part of a large file is sent from write(): its failure names the file, and nothing is published."""
    output = OutputDir(bucket.url("evals"))

    def part_fails(params: dict[str, Any]) -> None:
        raise ConnectionError("connection reset")

    bucket.on_call("UploadPart", part_fails)
    with pytest.raises(OutputWriteError) as raised:
        output.write_bytes("details/big.parquet", b"r" * (PART + 1))
    assert "could not write s3://" in str(raised.value)
    assert "details/big.parquet: ConnectionError: connection reset" in str(raised.value)
    assert bucket.list_keys() == []
    assert bucket.pending_uploads() == []
