"""The bundled demo detector: trained, and validated alike as ``.pt`` and as ONNX."""

from __future__ import annotations

from pathlib import Path

import pytest

from lite_deploy.assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ, demo_weights
from lite_deploy.data.shapes import CLASSES, generate_shapes
from lite_deploy.eval.validate import validate
from lite_deploy.export.exporter import export
from lite_deploy.models import load_model


@pytest.fixture(scope="module")
def demo_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 validation images of the demo's synthetic set (the first 60 of its validation split)."""
    return generate_shapes(tmp_path_factory.mktemp("demo_val"), train=0, val=60, seed=0, imgsz=DEMO_DATA_IMGSZ,
                           progress=False)


def test_demo_detector_is_a_trained_shufflenet_gsconvns() -> None:
    model = load_model(demo_weights())
    assert tuple(model.names.values()) == CLASSES
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"ShuffleNetV2Features", "GSConvns", "VoVGSCSP"} <= kinds


def test_val_agrees_for_pt_and_onnx(demo_val: Path, tmp_path: Path) -> None:
    weights = demo_weights()
    export(weights, "onnx", imgsz=DEMO_IMGSZ, out=tmp_path, verify=False)
    (onnx_path,) = Path(tmp_path).glob("*.onnx")
    pt_metrics = validate(str(weights), str(demo_val), imgsz=DEMO_IMGSZ, progress=False, verbose=False)
    onnx_metrics = validate(str(onnx_path), str(demo_val), imgsz=DEMO_IMGSZ, progress=False, verbose=False)
    assert pt_metrics["map50"] > 0.6  # trained: an untrained model scores about 0
    assert abs(pt_metrics["map50_95"] - onnx_metrics["map50_95"]) <= 0.005
    assert abs(pt_metrics["map50"] - onnx_metrics["map50"]) <= 0.005
