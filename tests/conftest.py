"""Shared test fixtures: paths to the real YOLOv5-format checkpoints kept in ../shared/fixtures/yolov5, and the tiny
YOLO-style detector the export tests build (torch is imported only when a test asks for it)."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "yolov5"


@pytest.fixture(scope="session")
def yolov5_fixtures() -> Path:
    """Folder with the real YOLOv5 / slim-neck checkpoints and their reference outputs.

    CI always has it beside the checkout; elsewhere the dependent tests are skipped.
    """
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{FIXTURES} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"{FIXTURES} not found")
    return FIXTURES


@pytest.fixture(scope="session")
def gsconv_pt(yolov5_fixtures: Path) -> Path:
    """The slim-neck fork's GSConv-yolov5n checkpoint (4 classes): its channel shuffles export as a Gather."""
    return yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt"


@functools.lru_cache(maxsize=None)
def tiny_detector_class() -> type:
    """``TinyDetector(nc=3)``: a few convolutions and a YOLO-style decode (a grid built in ``forward``), stride 8;
    forward(x (B, 3, H, W)) -> (boxes (B, N, 4) xyxy px, scores (B, N, nc))."""
    import torch
    from torch import nn

    class TinyDetector(nn.Module):
        task = "detect"

        def __init__(self, nc: int = 3) -> None:
            super().__init__()
            self.names = {i: f"c{i}" for i in range(nc)}
            self.stride = torch.tensor([8.0])
            self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU(),
                                      nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
            self.head = nn.Conv2d(16, 5 + nc, 1)

        def forward(self, x: torch.Tensor):
            y = self.head(self.body(x)).sigmoid()
            h, w = y.shape[2], y.shape[3]
            y = y.flatten(2).transpose(1, 2)
            gy, gx = torch.meshgrid(torch.arange(h, dtype=y.dtype), torch.arange(w, dtype=y.dtype), indexing="ij")
            grid = torch.stack((gx, gy), -1).reshape(1, h * w, 2)
            xy = (y[..., :2] * 2 - 0.5 + grid) * 8
            wh = (y[..., 2:4] * 2) ** 2 * 16
            return torch.cat((xy - wh / 2, xy + wh / 2), -1), y[..., 5:] * y[..., 4:5]

    return TinyDetector


@pytest.fixture(scope="session")
def tiny_detector() -> type:
    """The tiny detector class (:func:`tiny_detector_class`; tests build instances with their own seeds)."""
    return tiny_detector_class()
