"""Shared fixtures of the export tests: small models, images, and artifacts exported once per session."""

from __future__ import annotations

from pathlib import Path
from typing import Dict

import pytest
import torch

IMGSZ = 128


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def yolov5n_pt(yolov5_fixtures: Path) -> Path:
    return yolov5_fixtures / "yolov5n-v7-nc80.pt"


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
