"""Multimodal details: PIL images in ``Doc.images`` are written as lighteval's files hold them.

lighteval builds its details with ``datasets.Dataset.from_list``, which stores a PIL image inside a
struct as ``{"path": None, "bytes": <the image encoded>}``. These tests log real PIL images through
a tracker, several row groups per task, and compare the parquet file with what ``datasets`` itself
writes for the same images, then read the images back through every way evalsink offers.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from evalsink import EvaluationTracker

Image = pytest.importorskip("PIL.Image")
datasets = pytest.importorskip("datasets")

TASK = "lighteval|mmmu_pro:standard-4|0"


def _images(tmp_path: Path) -> dict[str, Any]:
    """An image made in memory (no format: PNG), one decoded from JPEG bytes (kept as JPEG), a CMYK
    image (PNG cannot hold it: TIFF) and one opened from a file (its path is kept too)."""
    plain = Image.new("RGB", (5, 4), (200, 10, 30))
    buffer = io.BytesIO()
    plain.save(buffer, format="JPEG")
    jpeg = Image.open(io.BytesIO(buffer.getvalue()))
    cmyk = Image.new("CMYK", (3, 3), (1, 2, 3, 4))
    on_disk = tmp_path / "picture.png"
    Image.new("L", (2, 6), 128).save(on_disk)
    return {"plain": plain, "jpeg": jpeg, "cmyk": cmyk, "file": Image.open(on_disk)}


def _log(tracker: EvaluationTracker, images: dict[str, Any], samples: int) -> list[list[str]]:
    """Log ``samples`` samples, each with a different choice of images (some none); return the choices."""
    names = list(images)
    chosen = []
    for index in range(samples):
        picked = [names[(index + k) % len(names)] for k in range(index % 3)]
        chosen.append(picked)
        doc = {"query": f"What is shown? {index}", "images": [images[name] for name in picked] or None}
        response = {"input": f"<image> What is shown? {index}", "text": ["a cat"]}
        tracker.metrics_logger.log(TASK, {"acc": 1.0})
        tracker.details_logger.log(TASK, doc, response, {"acc": 1.0})
    return chosen


def _pixels(data: bytes) -> tuple[str, tuple[int, int], bytes]:
    image = Image.open(io.BytesIO(data))
    return image.mode, image.size, image.tobytes()


def test_images_are_written_as_datasets_writes_them(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path
) -> None:
    images = _images(tmp_path)
    tracker = make_tracker(sink_config={"local": {"row_group_size": 2}})
    tracker.general_config_logger.log_model_info(model_name="org/vlm")
    chosen = _log(tracker, images, samples=7)
    report = tracker.save()
    assert report.ok, str(report)
    [path] = [p for p in report["local"].outputs if p.endswith(".parquet")]

    written = pq.read_table(path)
    doc_type = written.schema.field("doc").type
    image_type = doc_type.field("images").type.value_type
    assert [image_type.field(i).name for i in range(image_type.num_fields)] == ["path", "bytes"]
    assert image_type.field("bytes").type == pa.binary()

    # what lighteval writes: datasets' encoding of the same images, sample by sample
    # (inside the doc struct, as lighteval's rows have them: a top-level column would be an Image feature)
    theirs = datasets.Dataset.from_list(
        [{"doc": {"images": [images[name] for name in picked]}} for picked in chosen]
    )
    rows = written.column("doc").to_pylist()
    for row, picked, expected in zip(rows, chosen, [doc["images"] for doc in theirs["doc"]], strict=True):
        if not picked:
            assert row["images"] is None
            continue
        assert len(row["images"]) == len(picked)
        for ours, name, reference in zip(row["images"], picked, expected, strict=True):
            if name == "file":  # datasets keeps only the path; the bytes are kept here as well
                assert reference == {"path": str(tmp_path / "picture.png"), "bytes": None}
                assert ours["path"] == reference["path"]
                assert _pixels(ours["bytes"]) == _pixels((tmp_path / "picture.png").read_bytes())
            else:
                assert ours == {"path": None, "bytes": reference["bytes"]}, name
    kinds = {
        name: Image.open(io.BytesIO(rows[i]["images"][picked.index(name)]["bytes"])).format
        for i, picked in enumerate(chosen)
        for name in picked
    }
    assert kinds == {"plain": "PNG", "jpeg": "JPEG", "cmyk": "TIFF", "file": "PNG"}


def test_images_read_back_through_details_and_datasets(
    make_tracker: Callable[..., EvaluationTracker], tmp_path: Path, hf_offline: Path
) -> None:
    images = _images(tmp_path)
    images.pop("file")
    tracker = make_tracker(sink_config={"local": {"row_group_size": 2}})
    tracker.general_config_logger.log_model_info(model_name="org/vlm")
    chosen = _log(tracker, images, samples=5)
    expected = [[_pixels(_encoded(images[name])) for name in picked] for picked in chosen]

    def pixels_of(rows: list[dict[str, Any]]) -> list[list[Any]]:
        return [[_pixels(image["bytes"]) for image in row["doc"]["images"] or []] for row in rows]

    before = tracker.details[TASK]  # read from the spool, while the run goes on
    assert pixels_of(before) == expected
    assert tracker.save().ok
    assert pixels_of(tracker.details[TASK]) == expected  # read back from the saved file

    loaded = tracker.load_details_datasets("last", [TASK])[TASK]
    assert pixels_of(list(loaded)) == expected
    # lighteval rebuilds Doc(**row["doc"]): the images are datasets' {path, bytes} dicts
    assert loaded[1]["doc"]["images"][0]["path"] is None


def _encoded(image: Any) -> bytes:
    return datasets.features.image.encode_pil_image(image)["bytes"]


def test_an_image_that_cannot_be_encoded_is_named(make_tracker: Callable[..., EvaluationTracker]) -> None:
    from evalsink import EncodeError

    class Broken(Image.Image):
        def save(self, *args: Any, **kwargs: Any) -> None:
            raise OSError("cannot write mode XYZ as PNG")

    broken = Broken()
    broken._mode = "RGB"  # a bare Image subclass has no mode of its own
    tracker = make_tracker()
    why = "the image could not be encoded as PNG: OSError: cannot write mode XYZ"
    with pytest.raises(EncodeError, match=rf"cannot encode doc\.images\[1\] as JSON: {why}"):
        tracker.details_logger.log(
            TASK, {"query": "q", "images": [Image.new("L", (1, 1)), broken]}, {"text": ["a"]}, {"acc": 1.0}
        )
    assert TASK not in tracker.details_logger.details
