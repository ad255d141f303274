"""In-graph NMS for exported detectors: ONNX ``NonMaxSuppression`` or TensorRT's ``EfficientNMS_TRT`` plugin.

Both variants end the graph in the same four fixed-shape outputs (spec output layout ``nms``):

- ``num_dets`` (B, 1) int32: detections kept per image;
- ``det_boxes`` (B, K, 4) float: xyxy in input pixels, zero-padded past ``num_dets``;
- ``det_scores`` (B, K) float;
- ``det_classes`` (B, K) int32.

Each box competes only for its best class (the other class scores are zeroed before NMS), which is what the
runtime's host NMS does with ``multi_label=False``. NMS always runs on float32 boxes and scores: an FP16 detector
is wrapped in :class:`~lite_deploy.export.onnx.HalfPrecision` before the NMS is added, so its outputs are cast to
float first (torchvision's NMS kernel has no Half, and EfficientNMS is meant to be fed float).

- ONNX variant (:class:`WithNMS`, traced): plain opset-11+ operators (ONNX Runtime, OpenVINO).
- TensorRT variant (:func:`append_efficient_nms`): appended to the detector's finished ONNX (FP32, FP16 or the
  Q/DQ INT8 one, which is calibrated and judged on ONNX Runtime before the plugin, which ONNX Runtime cannot run,
  is added). One ``EfficientNMS_TRT`` node whose attributes follow the plugin's README (TensorRT
  ``plugin/efficientNMSPlugin``): ``background_class=-1``, ``box_coding=0`` (xyxy), ``score_activation=0``,
  ``plugin_version="1"``; TensorRT's ONNX parser maps unknown node types to the plugin of that name (the plugins
  must be initialised, which :mod:`lite_deploy.runtime.backends.tensorrt.api` does).

EfficientNMS keeps at most the 4096 best-scoring boxes above ``score_threshold`` before NMS (its
``numSelectedBoxes``); the host NMS keeps every candidate. :func:`efficient_nms_reference` computes EfficientNMS's
result (that cap included) so the difference can be measured; the README gives it for the demo detector.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np
import onnx
import torch
import torchvision
from torch import nn

Outputs = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


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


class WithNMS(nn.Module):
    """An export-mode detector followed by NMS.

    Args:
        model: forward(images) -> (boxes (B, N, 4) xyxy px, scores (B, N, nc)).
        max_det: K, detections kept per image.
        iou: NMS IoU threshold.
        conf: minimum score.
    """

    def __init__(self, model: nn.Module, *, max_det: int = 300, iou: float = 0.45, conf: float = 0.25):
        super().__init__()
        _check_settings(max_det, iou, conf)
        self.model, self.max_det, self.iou, self.conf = model, int(max_det), float(iou), float(conf)

    def forward(self, images: torch.Tensor) -> Outputs:
        """images (B, 3, H, W) -> num_dets, det_boxes, det_scores, det_classes (see the module docstring)."""
        boxes, scores = self.model(images)
        scores = scores * (scores == scores.amax(-1, keepdim=True))
        k = min(self.max_det, int(boxes.shape[1]))  # N is fixed by the image size; a Python int keeps K static
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


def with_nms(model: nn.Module, *, max_det: int = 300, iou: float = 0.45, conf: float = 0.25) -> WithNMS:
    """``model`` followed by in-graph ONNX NMS; see :class:`WithNMS`."""
    return WithNMS(model, max_det=max_det, iou=iou, conf=conf).eval()


def _check_settings(max_det: int, iou: float, conf: float) -> None:
    if not 0 < iou <= 1 or not 0 <= conf < 1 or max_det < 1:
        raise ValueError(f"need 0 < iou <= 1, 0 <= conf < 1, max_det >= 1; got {iou}, {conf}, {max_det}")


EFFICIENT_NMS_PRE_TOP_K = 4096  # EfficientNMS's numSelectedBoxes: candidates kept (by score) before NMS


def append_efficient_nms(model: onnx.ModelProto, *, max_det: int = 300, iou: float = 0.45,
                         conf: float = 0.25) -> onnx.ModelProto:
    """End a detector's ONNX (outputs ``boxes`` (B, N, 4) xyxy px, ``scores`` (B, N, nc), float32) in one
    ``EfficientNMS_TRT`` node, the non-best class scores zeroed first; outputs ``num_dets``, ``det_boxes``,
    ``det_scores``, ``det_classes`` (see the module docstring).

    Returns:
        A new model (``model`` is not changed).

    Raises:
        ValueError: bad settings, or the model's outputs are not ``boxes`` and ``scores``.
    """
    from onnx import TensorProto, helper

    _check_settings(max_det, iou, conf)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    names = [o.name for o in graph.output]
    if names != ["boxes", "scores"]:
        raise ValueError(f"EfficientNMS needs a detector ending in boxes and scores, this one ends in {names}")
    dims = [d.dim_value if d.HasField("dim_value") else (d.dim_param or "batch")
            for d in graph.output[0].type.tensor_type.shape.dim]
    batch, anchors = dims[0], dims[1]
    k = min(int(max_det), anchors) if isinstance(anchors, int) and anchors > 0 else int(max_det)
    opset = next(o.version for o in out.opset_import if o.domain in ("", "ai.onnx"))
    if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
        graph.initializer.append(helper.make_tensor("nms_axes", TensorProto.INT64, [1], [-1]))
        reduce = helper.make_node("ReduceMax", ["scores", "nms_axes"], ["nms_best"], name="nms_best", keepdims=1)
    else:
        reduce = helper.make_node("ReduceMax", ["scores"], ["nms_best"], name="nms_best", axes=[-1], keepdims=1)
    graph.node.extend([
        reduce,
        helper.make_node("Equal", ["scores", "nms_best"], ["nms_is_best"], name="nms_is_best"),
        helper.make_node("Cast", ["nms_is_best"], ["nms_mask"], name="nms_mask", to=TensorProto.FLOAT),
        helper.make_node("Mul", ["scores", "nms_mask"], ["nms_scores"], name="nms_scores"),
        helper.make_node(
            "EfficientNMS_TRT", ["boxes", "nms_scores"], ["num_dets", "det_boxes", "det_scores", "det_classes"],
            name="EfficientNMS_TRT", domain="TRT", background_class=-1, box_coding=0, iou_threshold=float(iou),
            max_output_boxes=k, plugin_version="1", score_activation=0, score_threshold=float(conf),
        ),
    ])
    del graph.output[:]
    graph.output.extend([
        helper.make_tensor_value_info("num_dets", TensorProto.INT32, [batch, 1]),
        helper.make_tensor_value_info("det_boxes", TensorProto.FLOAT, [batch, k, 4]),
        helper.make_tensor_value_info("det_scores", TensorProto.FLOAT, [batch, k]),
        helper.make_tensor_value_info("det_classes", TensorProto.INT32, [batch, k]),
    ])
    if not any(o.domain == "TRT" for o in out.opset_import):
        out.opset_import.append(helper.make_opsetid("TRT", 1))
    return out


def efficient_nms_reference(boxes: np.ndarray, scores: np.ndarray, *, conf: float, iou: float, max_det: int,
                            pre_top_k: int = EFFICIENT_NMS_PRE_TOP_K) -> np.ndarray:
    """Indices EfficientNMS keeps for one image: best class per box, scores above ``conf``, the ``pre_top_k``
    best of those, class-aware NMS, at most ``max_det``; ``pre_top_k=None`` gives the host NMS's result.

    Args:
        boxes: (N, 4) xyxy; scores: (N, nc).

    Returns:
        (K,) indices into ``boxes``, best first.
    """
    from ..runtime.pipeline.postprocess import nms

    cls = scores.argmax(1)
    best = scores[np.arange(len(scores)), cls]
    idx = np.flatnonzero(best > conf)
    idx = idx[np.argsort(-best[idx], kind="stable")]
    if pre_top_k is not None:
        idx = idx[:pre_top_k]
    kept = nms(boxes[idx], best[idx], iou, class_ids=cls[idx])[:max_det]
    return idx[kept]
