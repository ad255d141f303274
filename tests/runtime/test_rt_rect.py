"""The minimal-rectangle letterbox (``rect``, YOLOv5's ``auto``) of Detector, predict and run."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from lite_deploy.assets import DEMO_IMGSZ, demo_weights
from lite_deploy.data.shapes import generate_shapes
from lite_deploy.errors import LiteDeployError
from lite_deploy.runtime import Detector
from lite_deploy.runtime.stream import Stream

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wide_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 157x224 shapes image (not square), alone in a folder."""
    folder = tmp_path_factory.mktemp("rect")
    generate_shapes(folder / "set", train=0, val=3, seed=0, imgsz=224, progress=False)
    path = folder / "set" / "images" / "val" / "000001.jpg"
    assert cv2.imread(str(path)).shape == (157, 224, 3)
    (folder / "one").mkdir()
    (folder / "one" / path.name).write_bytes(path.read_bytes())
    return folder / "one" / path.name


def test_rect_pads_only_to_the_stride_and_keeps_detections_in_place(wide_image: Path) -> None:
    frame = cv2.imread(str(wide_image))
    with Detector.load(demo_weights(), imgsz=DEMO_IMGSZ, rect=True) as rect:
        blob, (geometry,) = rect.preprocess([frame])
        got = rect(frame)
    # 224 -> 320 wide, 157 -> 224 high: already a multiple of 32, so no padding at all (the square pads 96 rows)
    assert blob.shape == (1, 3, 224, 320) and (geometry.left, geometry.top) == (0, 0)
    assert geometry.ratio == 320 / 224
    # the same input blob as asking for 224x320 outright; there the ratio is min(224/157, 320/224), a hair smaller
    with Detector.load(demo_weights(), imgsz=(224, 320)) as explicit:
        np.testing.assert_array_equal(explicit.preprocess([frame])[0], blob)
        want = explicit(frame)
        ratio = explicit.preprocess([frame])[1][0].ratio
    assert len(got) > 0
    np.testing.assert_allclose(got.boxes * geometry.ratio, want.boxes * ratio, atol=1e-3)
    np.testing.assert_array_equal(got.class_ids, want.class_ids)
    with Detector.load(demo_weights(), imgsz=DEMO_IMGSZ) as square:
        assert square.preprocess([frame])[0].shape == (1, 3, 320, 320)


def test_rect_refuses_a_fixed_shape_artifact(yolov5_onnx: Path, wide_image: Path) -> None:
    with pytest.raises(LiteDeployError, match="takes fixed 640x640 images.*drop --rect"):
        Detector.load(yolov5_onnx, rect=True)
    with pytest.raises(LiteDeployError, match="drop --rect"):
        Stream(str(yolov5_onnx), str(wide_image.parent), rect=True)


def test_predict_takes_rect(wide_image: Path, yolov5_onnx: Path, tmp_path: Path) -> None:
    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "lite_deploy", *args], capture_output=True, text=True, cwd=REPO)

    out = cli("predict", str(demo_weights()), "--source", str(wide_image), "--imgsz", str(DEMO_IMGSZ), "--rect",
              "--json", "--out", str(tmp_path / "rect"))
    assert out.returncode == 0, out.stderr
    line = json.loads((tmp_path / "rect" / "predictions.jsonl").read_text())
    boxes = [d["box"] for d in line["detections"]]
    with Detector.load(demo_weights(), imgsz=DEMO_IMGSZ, rect=True) as rect:
        want = rect(cv2.imread(str(wide_image)))
    np.testing.assert_allclose(boxes, want.boxes, atol=0.006)
    out = cli("predict", str(demo_weights()), "--source", str(wide_image.parent), "--rect")  # the serving size, 320
    assert out.returncode == 0, out.stderr
    assert f"{wide_image.name}: " in out.stdout
    bad = cli("predict", str(yolov5_onnx), "--source", str(wide_image), "--rect")
    last = bad.stderr.strip().splitlines()[-1]
    assert bad.returncode == 2 and last.startswith("error: ") and "drop --rect" in last
