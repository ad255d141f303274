"""In-graph ONNX NMS: fixed-shape outputs equal torchvision's NMS at any batch, in ONNX Runtime and OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lite_deploy.export.exporter import export
from lite_deploy.export.nms import padded_nms
from lite_deploy.runtime import Detector, load_runtime


@pytest.mark.parametrize("target", ["onnx", "openvino"])
def test_onnx_nms_matches_torchvision_at_batches(tmp_path, tiny_detector, target):
    torch.manual_seed(0)
    model = tiny_detector().eval()
    path = export(model, target, imgsz=64, dynamic=True, nms=True, max_det=20, conf=0.2, iou=0.5, out=tmp_path,
                  name="tiny")[target]
    x = torch.rand(4, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        boxes, scores = model(x)
        ref = padded_nms(boxes, scores * (scores == scores.amax(-1, keepdim=True)), 0.5, 0.2, 20)
    with load_runtime(path) as rt:
        for b in (1, 2, 4):
            out = rt.infer(x[:b].numpy())
            np.testing.assert_array_equal(out["num_dets"], ref[0][:b].numpy())
            assert ref[0][:b].min() > 0
            np.testing.assert_allclose(out["det_boxes"], ref[1][:b].numpy(), atol=1e-4)
            np.testing.assert_allclose(out["det_scores"], ref[2][:b].numpy(), atol=1e-6)
            np.testing.assert_array_equal(out["det_classes"], ref[3][:b].numpy())


def test_nms_artifact_runs_in_detector(tmp_path, tiny_detector):
    torch.manual_seed(0)
    path = export(tiny_detector().eval(), "onnx", imgsz=64, nms=True, conf=0.2, out=tmp_path, name="tiny")["onnx"]
    with Detector.load(path, conf=0.2) as det:
        dets = det(np.full((48, 64, 3), 90, np.uint8))
    assert len(dets.boxes) > 0 and dets.scores.min() >= 0.2
