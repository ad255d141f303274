"""Decoding of detector outputs and non-maximum suppression, in numpy (float32 arithmetic throughout).

Layouts (see :data:`lite_deploy.spec.OUTPUT_LAYOUTS`): ``boxes_scores`` (this project's export), ``yolov5``
(YOLOv5's ``export.py``: xywh, objectness, class scores) and ``nms`` (NMS inside the graph). Candidate selection
follows YOLOv5's ``non_max_suppression``: confidence filter, best class (or every class above ``conf`` with
``multi_label``), class filter, the ``max_nms`` highest scores, class-aware NMS by a coordinate offset of
``class_id * 7680`` (or one class with ``agnostic``), ``max_det``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import cv2
import numpy as np

from ...boxes import box_iou
from .preprocess import Geometry

MAX_WH = 7680.0  # class offset in pixels for class-aware NMS (YOLOv5's max_wh)
MAX_NMS = 30000  # candidates entering NMS at most
_BLOCK = 256  # boxes compared at once inside NMS (fastest of 64-1024 on yolov5n outputs)

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4) xyxy, scores (N,), class ids (N,)
NO_CANDIDATES: Candidates = (np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def nms(
    boxes_xyxy: np.ndarray,
    scores: np.ndarray,
    iou_threshold: float,
    class_ids: Optional[np.ndarray] = None,
    class_offset: Optional[float] = None,
) -> np.ndarray:
    """Greedy non-maximum suppression, the same boxes as ``torchvision.ops.nms`` / ``batched_nms`` keep.

    Boxes are visited by descending score (ties: lower index first); each box that overlaps an already kept box
    with IoU > ``iou_threshold`` is dropped. With ``class_ids``, only boxes of the same class suppress each
    other: every box is shifted by ``class_id * class_offset`` (default ``max coordinate + 1``, as
    ``batched_nms`` does), so the IoUs are computed on the same float32 numbers.

    A box whose score is NaN is dropped before NMS: it is never kept and suppresses nothing. (torchvision
    differs here: its descending sort puts NaN first, so a NaN box is kept and removes its neighbours.) For
    scores without NaN the kept indices are torchvision's.

    Args:
        boxes_xyxy: (N, 4) boxes ``x1, y1, x2, y2`` with ``0 <= x1 < x2`` and ``0 <= y1 < y2`` (cast to float32).
        scores: (N,) scores.
        iou_threshold: drop boxes whose IoU with a kept box is above it.
        class_ids: (N,) integer classes for class-aware NMS; ``None`` for class-agnostic.
        class_offset: shift per class id; default ``boxes.max() + 1``.

    Returns:
        (K,) int64 indices of the kept boxes, by descending score.

    Raises:
        ValueError: inconsistent shapes.
    """
    boxes = np.asarray(boxes_xyxy, dtype=np.float32)
    scores = np.asarray(scores, dtype=np.float32)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must have shape (N, 4), got {boxes.shape}")
    if scores.shape != (boxes.shape[0],):
        raise ValueError(f"scores must have shape ({boxes.shape[0]},) to match the boxes, got {scores.shape}")
    if class_ids is not None:
        class_ids = np.asarray(class_ids)
        if class_ids.shape != scores.shape:
            raise ValueError(f"class_ids must have shape {scores.shape} to match the boxes, got {class_ids.shape}")
    scored = np.flatnonzero(~np.isnan(scores))
    if scored.size < scores.size:
        kept = nms(boxes[scored], scores[scored], iou_threshold,
                   None if class_ids is None else class_ids[scored], class_offset)
        return scored[kept]
    n = boxes.shape[0]
    if n == 0:
        return np.zeros(0, np.int64)
    order = np.argsort(-scores, kind="stable")
    first = np.zeros(n, np.int64)  # per sorted position: where the boxes that may overlap it begin
    if class_ids is not None:
        offset = np.float32(class_offset) if class_offset is not None else boxes.max() + np.float32(1)
        shifted = boxes + (class_ids.astype(np.float32) * offset)[:, None]
        if boxes.min() >= 0 and boxes.max() < offset:
            # shifted classes cannot overlap: visit class by class, each box compared with its own class only
            order = np.lexsort((-scores, class_ids))
            sorted_ids = class_ids[order]
            starts = np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])
            first = starts[np.searchsorted(starts, np.arange(n), side="right") - 1]
        boxes = shifted
    threshold = np.float64(iou_threshold)  # compare float32 IoUs against the exact threshold, as torchvision does
    keep = order[_greedy(boxes[order], threshold, first)]
    return keep[np.lexsort((keep, -scores[keep]))].astype(np.int64)


def _greedy(boxes: np.ndarray, threshold: np.float64, first: np.ndarray) -> np.ndarray:
    """Greedy NMS over boxes in visiting order; returns the kept positions.

    Works in blocks of :data:`_BLOCK` boxes: a block first loses every box that overlaps a box kept earlier
    (from position ``first[block start]`` on: earlier boxes belong to other classes), then resolves itself
    exactly with the fixed-point iteration of Cluster-NMS (Zheng et al., 2020):
    ``alive[j] = not any(alive[i] and iou[i, j] > t for i < j)``, which reaches greedy NMS's answer.
    """
    n = boxes.shape[0]
    keep = np.zeros(n, bool)
    for start in range(0, n, _BLOCK):
        block = np.arange(start, min(start + _BLOCK, n))
        kept_before = first[start] + np.flatnonzero(keep[first[start] : start])
        if kept_before.size:
            overlapped = (box_iou(boxes[kept_before], boxes[block]) > threshold).any(axis=0)
            block = block[~overlapped]
        if block.size == 0:
            continue
        suppresses = np.triu(box_iou(boxes[block], boxes[block]) > threshold, k=1)
        alive = np.ones(block.size, bool)
        while True:
            updated = ~suppresses[alive].any(axis=0)
            if np.array_equal(updated, alive):
                break
            alive = updated
        keep[block[alive]] = True
    return np.flatnonzero(keep)


def candidates_yolov5(
    prediction: np.ndarray, conf: float, multi_label: bool = False, classes: Optional[Sequence[int]] = None
) -> Candidates:
    """Candidates from one image's YOLOv5 output.

    Args:
        prediction: (N, 5+nc) float32: ``cx, cy, w, h`` in input pixels, objectness, class scores.
        conf: keep objectness > conf and objectness x class score > conf.
        multi_label: one candidate per class above ``conf`` instead of the best class only.
        classes: keep only these class ids.

    Returns:
        ``(boxes (K, 4) xyxy float32, scores (K,) float32, class_ids (K,) int64)``.
    """
    x = prediction[prediction[:, 4] > conf]
    if len(x):
        # obj * max(cls) == max(obj * cls) in float32 (rounding is monotonic): drop hopeless rows before the products
        x = x[x[:, 4] * x[:, 5:].max(axis=1, initial=0) > conf]
    if not len(x):  # nothing to score: after an inference has swept the caches, every numpy call skipped counts
        return NO_CANDIDATES
    scores = x[:, 5:] * x[:, 4:5]
    boxes = np.empty((x.shape[0], 4), np.float32)
    half_w, half_h = x[:, 2] / 2, x[:, 3] / 2
    boxes[:, 0] = x[:, 0] - half_w
    boxes[:, 1] = x[:, 1] - half_h
    boxes[:, 2] = x[:, 0] + half_w
    boxes[:, 3] = x[:, 1] + half_h
    return _by_class(boxes, scores, conf, multi_label, classes)


def candidates_boxes_scores(
    boxes: np.ndarray, scores: np.ndarray, conf: float, multi_label: bool = False,
    classes: Optional[Sequence[int]] = None,
) -> Candidates:
    """Candidates from one image's ``boxes`` (N, 4) xyxy and ``scores`` (N, nc) (objectness x class score).

    Returns:
        ``(boxes (K, 4) xyxy float32, scores (K,) float32, class_ids (K,) int64)``.
    """
    scores = np.ascontiguousarray(scores, np.float32)
    rows = _rows_above(scores, conf)
    if not len(rows):
        return NO_CANDIDATES
    return _by_class(np.asarray(boxes, np.float32)[rows], scores[rows], conf, multi_label, classes)


def _rows_above(scores: np.ndarray, conf: float) -> np.ndarray:
    """Ascending indices of the rows of ``scores`` (N, nc), C-contiguous float32, whose best score is above ``conf``.

    OpenCV's ``compare`` and ``findNonZero`` find the few (row, class) pairs above ``conf`` in vectorised passes
    (numpy's row-wise max takes 1.3-1.5 ms on 25200 x 80 scores; this about 0.5-0.8 ms). The rows found are then held
    to ``max > conf`` itself, so a row with a NaN score is dropped as it always was.
    """
    if scores.size == 0:
        return np.zeros(0, np.int64)
    points = cv2.findNonZero(cv2.compare(scores, conf, cv2.CMP_GT))  # (x=class, y=row) pairs; None for none
    if points is None:
        return np.zeros(0, np.int64)
    rows = np.unique(points.reshape(-1, 2)[:, 1]).astype(np.int64)
    return rows[scores[rows].max(axis=1, initial=0) > conf]


def _by_class(
    boxes: np.ndarray, scores: np.ndarray, conf: float, multi_label: bool, classes: Optional[Sequence[int]]
) -> Candidates:
    if multi_label:
        rows, class_ids = np.nonzero(scores > conf)
        boxes, best = boxes[rows], scores[rows, class_ids]
    else:
        class_ids = scores.argmax(axis=1)
        best = scores[np.arange(scores.shape[0]), class_ids]
        keep = best > conf
        boxes, best, class_ids = boxes[keep], best[keep], class_ids[keep]
    if classes is not None:
        keep = np.isin(class_ids, np.asarray(classes))
        boxes, best, class_ids = boxes[keep], best[keep], class_ids[keep]
    return boxes, best.astype(np.float32, copy=False), class_ids.astype(np.int64, copy=False)


def select(
    candidates: Candidates, iou: float, max_det: int = 300, max_nms: int = MAX_NMS, agnostic: bool = False
) -> Candidates:
    """The ``max_nms`` best candidates through NMS, at most ``max_det`` of them, by descending score."""
    boxes, scores, class_ids = candidates
    if scores.shape[0] > max_nms:
        top = np.argsort(-scores, kind="stable")[:max_nms]
        boxes, scores, class_ids = boxes[top], scores[top], class_ids[top]
    keep = nms(boxes, scores, iou, None if agnostic else class_ids, class_offset=MAX_WH)[:max_det]
    return boxes[keep], scores[keep], class_ids[keep]


def decode_nms_outputs(
    num_dets: np.ndarray,
    det_boxes: np.ndarray,
    det_scores: np.ndarray,
    det_classes: np.ndarray,
    conf: float,
    max_det: int = 300,
    classes: Optional[Sequence[int]] = None,
) -> Candidates:
    """One image's in-graph NMS outputs (EfficientNMS style: count, padded boxes, scores, classes).

    Args:
        num_dets: (1,) or scalar count of valid rows (clamped to ``[0, K]``: a negative or too large count
            never invents rows).
        det_boxes: (K, 4) xyxy in input pixels.
        det_scores: (K,) scores.
        det_classes: (K,) class ids.
        conf: keep scores > conf (the graph's own threshold may be lower).
        max_det: keep at most this many.
        classes: keep only these class ids.
    """
    n = min(max(int(np.asarray(num_dets).reshape(-1)[0]), 0), len(det_boxes))
    boxes = np.asarray(det_boxes[:n], np.float32)
    scores = np.asarray(det_scores[:n], np.float32)
    class_ids = np.asarray(det_classes[:n]).astype(np.int64)
    keep = scores > conf
    if classes is not None:
        keep &= np.isin(class_ids, np.asarray(classes))
    order = np.flatnonzero(keep)
    order = order[np.argsort(-scores[order], kind="stable")][:max_det]
    return boxes[order], scores[order], class_ids[order]


def scale_boxes(boxes: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Map boxes from network-input pixels back to the original image and clip them to it.

    Args:
        boxes: (N, 4) xyxy float32 in network-input pixels.
        geometry: the letterbox of that image (ratio, left/top padding, original shape).

    Returns:
        (N, 4) float32 xyxy in original pixels (a new array).
    """
    out = boxes - np.array([geometry.left, geometry.top, geometry.left, geometry.top], np.float32)
    out /= np.float32(geometry.ratio)
    height, width = geometry.shape
    np.clip(out[:, 0::2], 0, width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, height, out=out[:, 1::2])
    return out
