"""In-graph ONNX NMS: fixed-shape outputs equal torchvision's NMS at any batch, in ONNX Runtime and OpenVINO."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torchvision

from lite_deploy.export.exporter import export
from lite_deploy.export.nms import Outputs
from lite_deploy.runtime import Detector, load_runtime


def padded_nms(boxes: torch.Tensor, scores: torch.Tensor, iou: float, conf: float, max_det: int) -> Outputs:
    """Reference (eager) result of the in-graph NMS: per image class-aware NMS, best first, zero-padded to K.

    Args:
        boxes: (B, N, 4) xyxy.
        scores: (B, N, nc), non-best classes already zeroed.
        iou, conf: NMS IoU threshold and minimum score.
        max_det: K.

    Returns:
        ``num_dets`` (B, 1) int32, ``det_boxes`` (B, K, 4), ``det_scores`` (B, K), ``det_classes`` (B, K) int32.
    """
    bsz = boxes.shape[0]
    num = torch.zeros(bsz, 1, dtype=torch.int32)
    det_boxes = boxes.new_zeros(bsz, max_det, 4)
    det_scores = boxes.new_zeros(bsz, max_det)
    det_classes = torch.zeros(bsz, max_det, dtype=torch.int32)
    for b in range(bsz):
        best, cls = scores[b].max(-1)
        keep = best > conf
        kept = torchvision.ops.batched_nms(boxes[b][keep], best[keep], cls[keep], iou)[:max_det]
        n = len(kept)
        num[b, 0] = n
        det_boxes[b, :n] = boxes[b][keep][kept]
        det_scores[b, :n] = best[keep][kept]
        det_classes[b, :n] = cls[keep][kept].int()
    return num, det_boxes, det_scores, det_classes


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


def test_efficient_nms_keeps_only_the_top_4096_candidates():
    """EfficientNMS's pre-NMS cap: with more than 4096 candidates the host NMS keeps boxes EfficientNMS never sees."""
    from lite_deploy.export.nms import EFFICIENT_NMS_PRE_TOP_K, efficient_nms_reference

    n = 5000
    x = np.arange(n, dtype=np.float32)[:, None] * 20
    boxes = np.concatenate([x, np.zeros_like(x), x + 10, np.full_like(x, 10)], 1)  # disjoint boxes
    scores = np.stack([np.linspace(0.9, 0.3, n, dtype=np.float32), np.zeros(n, np.float32)], 1)
    trt = efficient_nms_reference(boxes, scores, conf=0.25, iou=0.45, max_det=n)
    host = efficient_nms_reference(boxes, scores, conf=0.25, iou=0.45, max_det=n, pre_top_k=None)
    assert len(trt) == EFFICIENT_NMS_PRE_TOP_K and len(host) == n
    np.testing.assert_array_equal(trt, host[:EFFICIENT_NMS_PRE_TOP_K])  # the best 4096 agree
    assert len(efficient_nms_reference(boxes, scores, conf=0.25, iou=0.45, max_det=300)) == 300
