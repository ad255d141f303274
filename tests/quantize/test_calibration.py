"""Calibration images: refused without a source or with too few, pre-processed exactly as the runtime does."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lite_deploy.data.shapes import generate_shapes
from lite_deploy.errors import ExportError
from lite_deploy.quantize.calibration import MIN_IMAGES, find_images
from lite_deploy.runtime.calibration import CalibrationSet
from lite_deploy.runtime.pipeline.preprocess import Preprocessor
from lite_deploy.spec import ModelSpec


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("calib"), train=24, val=4, seed=3, imgsz=96, progress=False)


def spec(layout: str = "NCHW") -> ModelSpec:
    return ModelSpec(task="detect", names=("a",), imgsz=(64, 64), output_layout="boxes_scores",
                     output_names=("boxes", "scores"), layout=layout)


@pytest.mark.parametrize("source", [None, ""])
def test_no_source_is_refused_with_what_to_pass(source) -> None:
    with pytest.raises(ExportError, match="pass --calib with a folder of images or a data.yaml"):
        find_images(source)


def test_missing_and_empty_sources_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="does not exist"):
        find_images(tmp_path / "nowhere")
    with pytest.raises(ExportError, match="no images found"):
        find_images(tmp_path)


def test_too_few_images_refused_unless_calib_size_says_so(shapes: Path, caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(ExportError, match=f"only 24 calibration images.*{MIN_IMAGES}.*--calib-size 24"):
        find_images(shapes)  # data.yaml: its 24 train images, default size 300
    with pytest.raises(ExportError, match="--calib-size 24"):
        find_images(shapes.parent / "images" / "train", 50)
    with caplog.at_level(logging.WARNING):
        images = find_images(shapes, 24)
    assert len(images) == 24 and all("train" in p.parts for p in images)
    assert "under 100" in caplog.text


def test_sample_is_spread_and_reproducible(shapes: Path) -> None:
    folder = shapes.parent / "images"  # train and val folders together: 28 images
    a, b = find_images(folder, 10), find_images(folder, 10)
    assert a == b and len(a) == 10 and a == sorted(a)
    assert len(find_images(folder, 10, seed=1)) == 10 and find_images(folder, 10, seed=1) != a


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_blobs_are_the_runtime_preprocessing(shapes: Path, layout: str) -> None:
    import cv2

    images = find_images(shapes, 5)
    calib = CalibrationSet(images, spec(layout))
    blobs = list(calib.batches(2))
    assert len(blobs) == 3 and all(b.dtype == np.float32 for b in blobs)
    shape = (2, 3, 64, 64) if layout == "NCHW" else (2, 64, 64, 3)
    assert all(b.shape == shape for b in blobs)
    expected, _ = Preprocessor(spec(layout), np.float32)([cv2.imread(str(p)) for p in images[:2]])
    np.testing.assert_array_equal(blobs[0], expected)
    np.testing.assert_array_equal(blobs[2][0], blobs[2][1])  # the last batch is filled with its last image
    assert len(list(calib.batches(1, limit=2))) == 2
