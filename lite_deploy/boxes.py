"""Box primitives shared by the host and the device side: IoU, box format conversions, image sizes.

numpy only; Python 3.8 (it runs on the device).
"""

from __future__ import annotations

from typing import Sequence, Tuple, Union

import numpy as np

ImageSize = Union[int, Sequence[int]]


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix of corner boxes, in float32 and in the order of torchvision's CPU NMS kernel.

    Two zero-area boxes have IoU 0/0 = NaN, which is above no threshold (as in torchvision's kernel); numpy is asked
    not to warn of it.

    Args:
        a: (N, 4) float32 xyxy.
        b: (M, 4) float32 xyxy.

    Returns:
        (N, M) float32 IoU.
    """
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    w = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), np.float32(0))
    h = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), np.float32(0))
    inter = w * h
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / (area_a[:, None] + area_b[None, :] - inter)


def xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """Corner boxes to COCO ``x y w h`` in float64, the way they are written to COCO JSON.

    Args:
        boxes: (n, 4) xyxy.

    Returns:
        (n, 4) float64 ``x1, y1, x2 - x1, y2 - y1``.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    return np.concatenate([b[:, :2], b[:, 2:] - b[:, :2]], axis=1)


def xywhn_to_xyxy(xywhn: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Normalised centre boxes (YOLO labels) to pixel corner boxes.

    Args:
        xywhn: (n, 4) ``cx cy w h`` in [0, 1].
        size: (width, height) in pixels.

    Returns:
        (n, 4) float32 xyxy in pixels, clipped to the image.
    """
    w, h = size
    b = np.asarray(xywhn, np.float32).reshape(-1, 4)
    out = np.empty_like(b)
    out[:, 0] = (b[:, 0] - b[:, 2] / 2) * w
    out[:, 1] = (b[:, 1] - b[:, 3] / 2) * h
    out[:, 2] = (b[:, 0] + b[:, 2] / 2) * w
    out[:, 3] = (b[:, 1] + b[:, 3] / 2) * h
    np.clip(out[:, 0::2], 0, w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, h, out=out[:, 1::2])
    return out


def xyxy_to_xywhn(boxes: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """Pixel corner boxes to normalised centre boxes (YOLO labels); the inverse of :func:`xywhn_to_xyxy`.

    Args:
        boxes: (n, 4) xyxy in pixels.
        size: (width, height) in pixels.

    Returns:
        (n, 4) float64 ``cx cy w h`` in [0, 1] for boxes inside the image.
    """
    scale = np.array(size * 2, np.float64)
    b = np.asarray(boxes, np.float64).reshape(-1, 4) / scale
    return np.concatenate([(b[:, :2] + b[:, 2:]) / 2, b[:, 2:] - b[:, :2]], axis=1)


def to_hw(imgsz: ImageSize) -> Tuple[int, int]:
    """An input size as ``(height, width)`` pixels: one number is a square, two are height and width.

    Raises:
        ValueError: not one or two numbers.
    """
    if isinstance(imgsz, (int, np.integer)):
        return int(imgsz), int(imgsz)
    values = [int(v) for v in imgsz]
    if len(values) == 1:
        return values[0], values[0]
    if len(values) != 2:
        raise ValueError(f"an input size is one number or height and width, got {list(imgsz)}")
    return values[0], values[1]
