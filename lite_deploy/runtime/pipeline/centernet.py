"""Decoding of CenterNet-style outputs (output layout ``centernet``): heatmap peaks, top-k, boxes. numpy only.

The artifact outputs, per image, ``hm`` (nc, h, w) class heatmaps after the sigmoid, ``wh`` (2, h, w) box width and
height and ``reg`` (2, h, w) sub-cell offset of the box centre, both in output cells (one cell = ``stride`` input
pixels). An object is a peak of ``hm``: a cell equal to the maximum of its 3x3 neighbourhood in its class map (the
max-pool test of CenterNet, Zhou et al. 2019, so no NMS follows). Of the peaks, the ``top_k`` highest scores
(ties: lower class, then row, then column first) above ``conf`` are kept; box ``i`` at cell (x, y) is centred at
``(x + reg_x, y + reg_y) * stride`` with size ``wh * stride``, in network-input pixels.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

import numpy as np

TOP_K = 100  # peaks kept per image (CenterNet's K)

Candidates = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4) xyxy, scores (N,), class ids (N,)


def max_pool3x3(heatmap: np.ndarray) -> np.ndarray:
    """3x3 max filter of each (h, w) map of a (c, h, w) array, stride 1, cells outside the map ignored.

    Equal to ``torch.nn.functional.max_pool2d(x, 3, stride=1, padding=1)``, computed separably (rows, then columns).
    """
    hm = np.asarray(heatmap, np.float32)
    rows = hm.copy()
    np.maximum(rows[:, :, 1:], hm[:, :, :-1], out=rows[:, :, 1:])
    np.maximum(rows[:, :, :-1], hm[:, :, 1:], out=rows[:, :, :-1])
    out = rows.copy()
    np.maximum(out[:, 1:], rows[:, :-1], out=out[:, 1:])
    np.maximum(out[:, :-1], rows[:, 1:], out=out[:, :-1])
    return out


def decode_centernet(
    hm: np.ndarray,
    wh: np.ndarray,
    reg: np.ndarray,
    stride: float,
    conf: float,
    top_k: int = TOP_K,
    classes: Optional[Sequence[int]] = None,
) -> Candidates:
    """Detections of one image from its CenterNet outputs.

    Args:
        hm: (nc, h, w) heatmap scores in [0, 1] (after the sigmoid).
        wh: (2, h, w) box width and height in output cells.
        reg: (2, h, w) centre offset (x, y) within the cell, in output cells.
        stride: input pixels per output cell (4 for CenterNet).
        conf: keep peaks scoring above it.
        top_k: peaks considered at most, best first (before ``conf`` and ``classes`` filter them).
        classes: keep only these class ids.

    Returns:
        ``(boxes (N, 4) xyxy float32 in input pixels, scores (N,) float32, class_ids (N,) int64)``, by
        descending score.

    Raises:
        ValueError: inconsistent shapes.
    """
    hm = np.asarray(hm, np.float32)
    if hm.ndim != 3 or np.shape(wh) != (2,) + hm.shape[1:] or np.shape(reg) != (2,) + hm.shape[1:]:
        raise ValueError(
            f"expected hm (nc, h, w), wh (2, h, w) and reg (2, h, w); got {hm.shape}, {np.shape(wh)}, {np.shape(reg)}"
        )
    _, height, width = hm.shape
    flat = np.where(hm == max_pool3x3(hm), hm, np.float32(-1)).reshape(-1)
    top = np.flatnonzero(flat > conf)  # filtering before the top-k keeps the same peaks and leaves fewer to sort
    if top.size > top_k > 0:
        kth = -np.partition(-flat[top], top_k - 1)[top_k - 1]
        top = top[flat[top] >= kth]
    top = top[np.argsort(-flat[top], kind="stable")][:top_k]  # by descending score, ties by flat index
    class_ids, cell = np.divmod(top, height * width)
    ys, xs = np.divmod(cell, width)
    if classes is not None:
        keep = np.isin(class_ids, np.asarray(classes))
        top, class_ids, ys, xs = top[keep], class_ids[keep], ys[keep], xs[keep]
    cx = (xs + np.asarray(reg[0], np.float32)[ys, xs]) * np.float32(stride)
    cy = (ys + np.asarray(reg[1], np.float32)[ys, xs]) * np.float32(stride)
    half_w = np.asarray(wh[0], np.float32)[ys, xs] * np.float32(stride / 2)
    half_h = np.asarray(wh[1], np.float32)[ys, xs] * np.float32(stride / 2)
    boxes = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], 1).astype(np.float32, copy=False)
    return boxes.reshape(-1, 4), flat[top].astype(np.float32), class_ids.astype(np.int64)
