"""Shared fixtures of the export tests: small models, images, and artifacts exported once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import pytest
import torch
from torch import nn

IMGSZ = 128


class TinyDetector(nn.Module):
    """A few convolutions and a YOLO-style decode: forward(x) -> (boxes (B, N, 4) xyxy px, scores (B, N, nc))."""

    task = "detect"

    def __init__(self, nc: int = 3) -> None:
        super().__init__()
        self.names = {i: f"c{i}" for i in range(nc)}
        self.stride = torch.tensor([8.0])
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.SiLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.SiLU(),
                                  nn.Conv2d(16, 16, 3, 2, 1), nn.SiLU())
        self.head = nn.Conv2d(16, 5 + nc, 1)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        y = self.head(self.body(x)).sigmoid()
        h, w = y.shape[2], y.shape[3]
        y = y.flatten(2).transpose(1, 2)
        gy, gx = torch.meshgrid(torch.arange(h, dtype=y.dtype), torch.arange(w, dtype=y.dtype), indexing="ij")
        grid = torch.stack((gx, gy), -1).reshape(1, h * w, 2)
        xy = (y[..., :2] * 2 - 0.5 + grid) * 8
        wh = (y[..., 2:4] * 2) ** 2 * 16
        return torch.cat((xy - wh / 2, xy + wh / 2), -1), y[..., 5:] * y[..., 4:5]


@pytest.fixture(scope="session")
def tiny_detector() -> type:
    """The :class:`TinyDetector` class (tests build instances with their own seeds)."""
    return TinyDetector


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def yolov5n_pt(yolov5_fixtures: Path) -> Path:
    return yolov5_fixtures / "yolov5n-v7-nc80.pt"


@pytest.fixture(scope="session")
def gsconv_pt(yolov5_fixtures: Path) -> Path:
    return yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt"


@pytest.fixture(scope="session")
def exported(tmp_path_factory, yolov5n_pt: Path, gsconv_pt: Path) -> Dict[str, Dict[str, Path]]:
    """The two real checkpoints exported once (verified by the exporter itself) for the tests to inspect.

    yolov5n: ONNX fp32 dynamic batch, ONNX fp16, OpenVINO fp32 + fp16, TFLite fp32.
    GSConv: ONNX fp32 dynamic batch, TFLite fp32 + fp16.
    """
    from lite_deploy.export.exporter import export

    out = tmp_path_factory.mktemp("export")
    v5, gs = out / "yolov5n", out / "gsconv"
    result = {"yolov5n": {}, "gsconv": {}}
    result["yolov5n"].update({f"{k}_dyn": v for k, v in export(yolov5n_pt, "onnx", imgsz=IMGSZ, dynamic=True,
                                                                out=v5, name="dyn").items()})
    result["yolov5n"].update(export(yolov5n_pt, "onnx,openvino,tflite", imgsz=IMGSZ, out=v5))
    result["yolov5n"].update({f"{k}_fp16": v for k, v in export(yolov5n_pt, "onnx,openvino", imgsz=IMGSZ,
                                                                 precision="fp16", out=v5).items()})
    result["gsconv"].update({f"{k}_dyn": v for k, v in export(gsconv_pt, "onnx", imgsz=IMGSZ, dynamic=True,
                                                               out=gs, name="dyn").items()})
    result["gsconv"].update(export(gsconv_pt, "tflite", imgsz=IMGSZ, out=gs))
    result["gsconv"].update({f"{k}_fp16": v for k, v in export(gsconv_pt, "tflite", imgsz=IMGSZ, precision="fp16",
                                                                out=gs).items()})
    return result
