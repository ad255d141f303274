"""The synthetic shapes benchmark: deterministic files, and labels that box exactly the drawn objects."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from lite_deploy.data.shapes import CLASSES, _background, _image_size, generate_shapes, render_image
from lite_deploy.data.yolo import YoloDataset


def test_same_seed_same_files(tmp_path: Path) -> None:
    a = generate_shapes(tmp_path / "a", train=5, val=3, seed=7, imgsz=128, progress=False).parent
    b = generate_shapes(tmp_path / "b", train=5, val=3, seed=7, imgsz=128, progress=False).parent
    c = generate_shapes(tmp_path / "c", train=5, val=3, seed=8, imgsz=128, progress=False).parent
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file() and p.name != "data.yaml")
    assert len(files) == 16
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file() and p.name != "data.yaml")
    for f in files:
        assert (a / f).read_bytes() == (b / f).read_bytes(), f
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)
    ds = YoloDataset.from_yaml(a / "data.yaml", "val")
    assert len(ds) == 3 and ds.names == CLASSES and ds[0].image.shape[:2] in [(128, w) for w in range(76, 129)] + [
        (h, 128) for h in range(76, 129)]


def test_labels_box_the_drawn_objects() -> None:
    boxes_seen = 0
    for i in range(12):
        rng = np.random.default_rng([3, 0, i])
        image, labels = render_image(np.random.default_rng([3, 0, i]), 160)
        h, w = _image_size(rng, 160)
        background = _background(rng, h, w)  # the same draws render_image made before adding objects
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        assert labels.shape[1] == 5 and ((labels[:, 1:] >= 0) & (labels[:, 1:] <= 1)).all()
        assert set(labels[:, 0].astype(int)) <= set(range(len(CLASSES)))
        # smoothed, so that the final blur of some images does not flag the background's thin lines
        smooth = [cv2.GaussianBlur(np.clip(a, 0, 255).astype(np.float32), (0, 0), 1.5) for a in (image, background)]
        changed = np.abs(smooth[0] - smooth[1]).max(axis=2) > 35
        outside = np.ones((h, w), bool)
        for _, cx, cy, bw, bh in labels:
            x0, y0 = int(round((cx - bw / 2) * w)), int(round((cy - bh / 2) * h))
            x1, y1 = int(round((cx + bw / 2) * w)), int(round((cy + bh / 2) * h))
            assert x0 >= 0 and y0 >= 0 and x1 <= w and y1 <= h and x1 - x0 >= 4 and y1 - y0 >= 4
            # an object colour differs from the background under it by >= 70 (less in the shading and noise)
            assert changed[y0:y1, x0:x1].mean() > 0.15, (i, cx, cy)
            outside[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
            boxes_seen += 1
        # nothing was drawn outside the labelled boxes: every visible object is labelled
        assert changed[outside].mean() < 0.002, i
    assert boxes_seen >= 30
