"""Fixtures of the runtime tests: one tiny detector exported to ONNX, OpenVINO IR and TFLite, with spec sidecars."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from lite_deploy.spec import ModelSpec, sidecar_path

IMGSZ = 64
NAMES = ("cat", "dog", "bird")


def _tiny_detector():
    """A small conv net with this project's export-mode outputs: boxes (1, 64, 4) xyxy px, scores (1, 64, 3)."""
    import torch
    from torch import nn

    class TinyDetector(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU(), nn.Conv2d(16, 16, 3, 2, 1)
            )
            self.head = nn.Conv2d(16, 4 + len(NAMES), 1)
            gy, gx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
            self.register_buffer("grid", torch.stack((gx, gy), -1).reshape(1, 64, 2))

        def forward(self, x):
            t = self.head(torch.relu(self.body(x))).flatten(2).permute(0, 2, 1)  # (1, 64, 4+nc)
            centre = (self.grid + t[..., :2].sigmoid()) * 8
            half = (t[..., 2:4].sigmoid() * 40 + 12) / 2
            return torch.cat((centre - half, centre + half), -1), (t[..., 4:] * 4).sigmoid()

    torch.manual_seed(3)
    model = TinyDetector().eval()
    with torch.no_grad():
        model.head.bias[4:] += 0.2  # many scores above 0.25: NMS has work to do
    return model


def _spec(target: str, input_name: str, output_names) -> ModelSpec:
    return ModelSpec(
        task="detect", names=NAMES, imgsz=(IMGSZ, IMGSZ), output_layout="boxes_scores",
        output_names=tuple(output_names), input_name=input_name, stride=8, target=target,
    )


@pytest.fixture(scope="session")
def tiny_artifacts(tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Path]:
    """{"onnx" | "openvino" | "tflite": artifact path}, each with a hand-written ModelSpec sidecar."""
    import litert_torch
    import openvino as ov
    import torch

    torch.set_num_threads(1)
    logging.getLogger("litert_torch").setLevel(logging.WARNING)
    folder = tmp_path_factory.mktemp("tiny")
    model = _tiny_detector()
    sample = torch.rand(1, 3, IMGSZ, IMGSZ)
    onnx_path = folder / "tiny.onnx"
    torch.onnx.export(model, (sample,), str(onnx_path), input_names=["images"], output_names=["boxes", "scores"],
                      opset_version=17, dynamo=False)
    _spec("onnx", "images", ("boxes", "scores")).save(sidecar_path(onnx_path))
    xml_path = folder / "tiny.xml"
    ov.save_model(ov.convert_model(str(onnx_path)), str(xml_path))
    _spec("openvino", "images", ("boxes", "scores")).save(sidecar_path(xml_path))
    tflite_path = folder / "tiny.tflite"
    litert_torch.convert(model, (sample,)).export(str(tflite_path))
    outputs = ("serving_default_output_0_output", "serving_default_output_1_output")
    _spec("tflite", "serving_default_args_0", outputs).save(sidecar_path(tflite_path))
    with torch.no_grad():
        expected = [t.numpy() for t in model(sample)]
    np.savez(folder / "reference.npz", x=sample.numpy(), boxes=expected[0], scores=expected[1])
    return {"onnx": onnx_path, "openvino": xml_path, "tflite": tflite_path, "reference": folder / "reference.npz"}


@pytest.fixture(scope="session")
def yolov5_onnx(yolov5_fixtures: Path) -> Path:
    """YOLOv5 v7.0's own ONNX export of yolov5n (no ModelSpec: metadata_props stride/names only)."""
    return yolov5_fixtures / "yolov5n-v7-nc80.export-opset12.onnx"
