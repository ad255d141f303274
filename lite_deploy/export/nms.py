"""In-graph NMS for exported detectors: ONNX ``NonMaxSuppression`` or TensorRT's ``EfficientNMS_TRT`` plugin.

Both variants end the graph in the same four fixed-shape outputs (spec output layout ``nms``):

- ``num_dets`` (B, 1) int32: detections kept per image;
- ``det_boxes`` (B, K, 4) float: xyxy in input pixels, zero-padded past ``num_dets``;
- ``det_scores`` (B, K) float;
- ``det_classes`` (B, K) int32.

Each box competes only for its best class (the other class scores are zeroed before NMS), which is what the
runtime's host NMS does with ``multi_label=False``. The ONNX variant is plain opset-11+ operators (ONNX Runtime,
OpenVINO); the TensorRT variant is one ``EfficientNMS_TRT`` node whose attributes follow the plugin's README
(TensorRT ``plugin/efficientNMSPlugin``): ``background_class=-1``, ``box_coding=0`` (xyxy),
``score_activation=0``, ``plugin_version="1"``; TensorRT's ONNX parser maps unknown node types to the plugin of
that name.
"""

from __future__ import annotations

from typing import Tuple

import torch
import torchvision
from torch import nn

Outputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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


class _NonMaxSuppression(torch.autograd.Function):
    """ONNX ``NonMaxSuppression``: selected (M, 3) int64 rows (batch, class, box), batch/class/score order."""

    @staticmethod
    def forward(ctx, boxes, scores_cn, max_per_class: int, iou: float, conf: float):  # noqa: D102
        rows = []
        for b in range(boxes.shape[0]):
            for c in range(scores_cn.shape[1]):
                s = scores_cn[b, c]
                idx = torch.nonzero(s > conf).flatten()
                kept = idx[torchvision.ops.nms(boxes[b][idx], s[idx], iou)][:max_per_class]
                rows.append(torch.stack([torch.full_like(kept, b), torch.full_like(kept, c), kept], 1))
        return torch.cat(rows) if rows else torch.zeros(0, 3, dtype=torch.int64)

    @staticmethod
    def symbolic(g, boxes, scores_cn, max_per_class: int, iou: float, conf: float):  # noqa: D102
        return g.op(
            "NonMaxSuppression", boxes, scores_cn,
            g.op("Constant", value_t=torch.tensor([max_per_class], dtype=torch.int64)),
            g.op("Constant", value_t=torch.tensor([iou], dtype=torch.float32)),
            g.op("Constant", value_t=torch.tensor([conf], dtype=torch.float32)),
            center_point_box_i=0,
        )


class _EfficientNMS(torch.autograd.Function):
    """TensorRT ``EfficientNMS_TRT`` plugin node; eager mode computes the same result with torchvision."""

    @staticmethod
    def forward(ctx, boxes, scores, iou: float, conf: float, max_det: int):  # noqa: D102
        return padded_nms(boxes, scores, iou, conf, max_det)

    @staticmethod
    def symbolic(g, boxes, scores, iou: float, conf: float, max_det: int):  # noqa: D102
        return g.op(
            "TRT::EfficientNMS_TRT", boxes, scores, outputs=4,
            background_class_i=-1, box_coding_i=0, iou_threshold_f=float(iou), max_output_boxes_i=int(max_det),
            plugin_version_s="1", score_activation_i=0, score_threshold_f=float(conf),
        )


class WithNMS(nn.Module):
    """An export-mode detector followed by NMS.

    Args:
        model: forward(images) -> (boxes (B, N, 4) xyxy px, scores (B, N, nc)).
        kind: ``"onnx"`` (NonMaxSuppression + fixed-shape gathering) or ``"trt"`` (EfficientNMS_TRT).
        max_det: K, detections kept per image.
        iou: NMS IoU threshold.
        conf: minimum score.
    """

    def __init__(self, model: nn.Module, *, kind: str, max_det: int = 300, iou: float = 0.45, conf: float = 0.25):
        super().__init__()
        if kind not in ("onnx", "trt"):
            raise ValueError(f"NMS kind must be onnx or trt, got {kind!r}")
        if not 0 < iou <= 1 or not 0 <= conf < 1 or max_det < 1:
            raise ValueError(f"need 0 < iou <= 1, 0 <= conf < 1, max_det >= 1; got {iou}, {conf}, {max_det}")
        self.model, self.kind, self.max_det, self.iou, self.conf = model, kind, int(max_det), float(iou), float(conf)

    def forward(self, images: torch.Tensor) -> Outputs:
        """images (B, 3, H, W) -> num_dets, det_boxes, det_scores, det_classes (see the module docstring)."""
        boxes, scores = self.model(images)
        scores = scores * (scores == scores.amax(-1, keepdim=True))
        k = min(self.max_det, int(boxes.shape[1]))  # N is fixed by the image size; a Python int keeps K static
        if self.kind == "trt":
            return _EfficientNMS.apply(boxes, scores, self.iou, self.conf, k)
        return self._onnx_nms(boxes, scores, k)

    def _onnx_nms(self, boxes: torch.Tensor, scores: torch.Tensor, k: int) -> Outputs:
        selected = _NonMaxSuppression.apply(boxes, scores.transpose(1, 2), k, self.iou, self.conf)
        b, c, i = selected[:, 0], selected[:, 1], selected[:, 2]
        sel_scores = scores[b, i, c]
        sel_boxes = boxes[b, i]
        # batch ascending, then score descending (scores are in [0, 1])
        order = torch.argsort(b.to(sel_scores.dtype) * 2 - sel_scores)
        b, c, sel_scores, sel_boxes = b[order], c[order], sel_scores[order], sel_boxes[order]
        batch_ids = torch.cumsum(torch.ones_like(boxes[:, 0, 0]), 0) - 1  # (B,) 0..B-1, no Python batch size
        onehot = (b[:, None].to(batch_ids.dtype) == batch_ids[None, :]).long()  # (M, B)
        rank = (onehot.cumsum(0) * onehot).sum(1) - 1  # position of each row within its image
        keep = rank < k
        slot = (b * k + rank)[keep]
        det_boxes = torch.zeros_like(boxes[:, :k, :]).reshape(-1, 4)
        det_boxes = det_boxes.index_put((slot,), sel_boxes[keep])
        det_scores = torch.zeros_like(boxes[:, :k, 0]).reshape(-1).index_put((slot,), sel_scores[keep])
        det_classes = torch.zeros_like(boxes[:, :k, 0]).reshape(-1).index_put((slot,), c[keep].to(boxes.dtype))
        num = onehot.sum(0).clamp(max=k).reshape(-1, 1).int()
        return (num, det_boxes.reshape(-1, k, 4), det_scores.reshape(-1, k), det_classes.reshape(-1, k).int())


def with_nms(model: nn.Module, *, kind: str, max_det: int = 300, iou: float = 0.45, conf: float = 0.25) -> WithNMS:
    """``model`` followed by in-graph NMS of ``kind`` (``onnx`` or ``trt``); see :class:`WithNMS`."""
    return WithNMS(model, kind=kind, max_det=max_det, iou=iou, conf=conf).eval()
