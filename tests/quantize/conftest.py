"""Fixtures of the quantization tests: a small shapes set and a real GSConv checkpoint exported to FP32 ONNX once."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

IMGSZ = 96
CALIB = 20


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shapes_yaml(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """data.yaml of a synthetic shapes set: 20 train images (calibration), 8 val images."""
    from lite_deploy.data.shapes import generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("shapes"), train=CALIB, val=8, seed=5, imgsz=128, progress=False)


@pytest.fixture(scope="session")
def gsconv_fp32(tmp_path_factory: pytest.TempPathFactory, gsconv_pt: Path) -> Path:
    """The GSConv checkpoint as a verified FP32 ONNX at 96x96."""
    from lite_deploy.export.exporter import export

    return export(gsconv_pt, "onnx", imgsz=IMGSZ, out=tmp_path_factory.mktemp("fp32"), name="gs")["onnx"]


@pytest.fixture(scope="session")
def calib_images(shapes_yaml: Path) -> list:
    """The 20 calibration images (the train split), accepted with an explicit calib_size of 20."""
    from lite_deploy.quantize.calibration import find_images

    return find_images(shapes_yaml, CALIB)
