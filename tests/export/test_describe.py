"""ModelSpec built from models: detector anchors in pixels, strides, names, classifier normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from lite_deploy.export.describe import describe
from lite_deploy.models import load_model
from lite_deploy.runtime import load_runtime


def test_detector_spec_from_checkpoint(yolov5n_pt, yolov5_fixtures):
    model = load_model(yolov5n_pt)
    spec = describe(model, imgsz=(320, 256), target="onnx", batch=None, precision="fp16", source=yolov5n_pt)
    ref = np.load(yolov5_fixtures / "yolov5n-v7-nc80.ref.npz")
    np.testing.assert_allclose(np.array(spec.anchors), ref["anchors_px"], rtol=1e-3)
    assert spec.strides == (8, 16, 32) and spec.stride == 32 and spec.nc == 80
    assert spec.imgsz == (320, 256) and spec.batch is None and spec.precision == "fp16"
    assert spec.output_layout == "boxes_scores" and spec.output_names == ("boxes", "scores")
    assert spec.preprocess == "letterbox" and spec.pad_value == 114


def test_classifier_spec():
    from lite_deploy.models.backbones import build_classifier, list_classifiers

    model = build_classifier(list_classifiers()[0], 5)
    spec = describe(model, imgsz=(224, 224), target="tflite", layout="NHWC")
    assert spec.task == "classify" and spec.output_layout == "logits" and spec.output_names == ("logits",)
    assert spec.preprocess == "center_crop" and spec.mean == pytest.approx(tuple(model.mean)) and spec.nc == 5


def test_pt_reference_runtime(gsconv_pt, yolov5_fixtures):
    ref = np.load(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.ref.npz")
    with load_runtime(gsconv_pt, imgsz=(320, 256)) as rt:
        assert rt.spec.imgsz == (320, 256) and rt.spec.names and rt.inputs[0].shape == (None, 3, None, None)
        out = rt.infer(ref["x"])
    y = ref["y"]
    xy, wh = y[..., :2], y[..., 2:4]
    np.testing.assert_allclose(out["boxes"], np.concatenate([xy - wh / 2, xy + wh / 2], -1), atol=2e-2)
    np.testing.assert_allclose(out["scores"], y[..., 5:] * y[..., 4:5], atol=1e-3)


def test_backbone_config_exports_to_every_cpu_target(tmp_path):
    """A lightweight-backbone detector (ShuffleNetV2 + GSConvns neck, random weights), verified on each target."""
    from lite_deploy.export.exporter import export

    paths = export("shufflenetv2-gsconvns", "onnx,openvino,tflite", imgsz=128, out=tmp_path)
    assert sorted(p.name for p in paths.values()) == [
        "shufflenetv2-gsconvns.onnx", "shufflenetv2-gsconvns.tflite", "shufflenetv2-gsconvns.xml"]
