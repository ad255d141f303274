"""Training augmentations with YOLOv5's semantics: mosaic, random affine, HSV jitter, left-right flip.

Labels travel as (n, 5) float32 rows ``cls x1 y1 x2 y2`` in pixels of the image they belong to. numpy + OpenCV.
"""

from __future__ import annotations

import math
from typing import Callable, Tuple

import cv2
import numpy as np

PAD_VALUE = 114


def resize_long_side(image: np.ndarray, imgsz: int, augment: bool) -> Tuple[np.ndarray, float]:
    """Resize so the long side is ``imgsz`` (YOLOv5 ``load_image``): linear when augmenting or enlarging, else area.

    Returns:
        ``(image, ratio)``.
    """
    h, w = image.shape[:2]
    r = imgsz / max(h, w)
    if r != 1:
        interp = cv2.INTER_LINEAR if (augment or r > 1) else cv2.INTER_AREA
        image = cv2.resize(image, (max(1, math.ceil(w * r)), max(1, math.ceil(h * r))), interpolation=interp)
    return image, r


def augment_hsv(image: np.ndarray, rng: np.random.Generator, hgain: float, sgain: float, vgain: float) -> None:
    """Random hue, saturation and value gains through lookup tables, in place on a BGR uint8 image."""
    if not (hgain or sgain or vgain):
        return
    r = rng.uniform(-1, 1, 3) * (hgain, sgain, vgain) + 1
    hue, sat, val = cv2.split(cv2.cvtColor(image, cv2.COLOR_BGR2HSV))
    x = np.arange(256, dtype=r.dtype)
    lut_hue = ((x * r[0]) % 180).astype(np.uint8)
    lut_sat = np.clip(x * r[1], 0, 255).astype(np.uint8)
    lut_val = np.clip(x * r[2], 0, 255).astype(np.uint8)
    merged = cv2.merge((cv2.LUT(hue, lut_hue), cv2.LUT(sat, lut_sat), cv2.LUT(val, lut_val)))
    cv2.cvtColor(merged, cv2.COLOR_HSV2BGR, dst=image)


def box_candidates(
    before: np.ndarray, after: np.ndarray, wh_thr: float = 2, ar_thr: float = 100, area_thr: float = 0.1
) -> np.ndarray:
    """Boxes that survive an augmentation: > ``wh_thr`` px, aspect < ``ar_thr``, > ``area_thr`` of their area left.

    Args:
        before: (4, n) x1 y1 x2 y2 before the transform (scaled by its gain).
        after: (4, n) after the transform and clipping.

    Returns:
        (n,) bool.
    """
    w1, h1 = before[2] - before[0], before[3] - before[1]
    w2, h2 = after[2] - after[0], after[3] - after[1]
    ar = np.maximum(w2 / (h2 + 1e-16), h2 / (w2 + 1e-16))
    return (w2 > wh_thr) & (h2 > wh_thr) & (w2 * h2 / (w1 * h1 + 1e-16) > area_thr) & (ar < ar_thr)


def random_affine(
    image: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    *,
    degrees: float = 0.0,
    translate: float = 0.1,
    scale: float = 0.5,
    shear: float = 0.0,
    border: Tuple[int, int] = (0, 0),
) -> Tuple[np.ndarray, np.ndarray]:
    """Random rotation, scale, shear and translation about the image centre (YOLOv5 ``random_perspective``).

    Args:
        image: (H, W, 3) uint8.
        labels: (n, 5) ``cls x1 y1 x2 y2`` pixels.
        rng: random generator.
        degrees: rotation range +- degrees.
        translate: translation range +- fraction of the output size.
        scale: scale range 1 +- scale.
        shear: shear range +- degrees.
        border: (y, x) pixels added to each side of the output (negative: crop; mosaic uses -imgsz/2).

    Returns:
        The warped image, of size ``(H + 2 * border[0], W + 2 * border[1])``, and the surviving labels.
    """
    height = image.shape[0] + border[0] * 2
    width = image.shape[1] + border[1] * 2
    centre = np.eye(3)
    centre[0, 2] = -image.shape[1] / 2
    centre[1, 2] = -image.shape[0] / 2
    rotate = np.eye(3)
    rotate[:2] = cv2.getRotationMatrix2D((0, 0), rng.uniform(-degrees, degrees), rng.uniform(1 - scale, 1 + scale))
    shear_m = np.eye(3)
    shear_m[0, 1] = math.tan(math.radians(rng.uniform(-shear, shear)))
    shear_m[1, 0] = math.tan(math.radians(rng.uniform(-shear, shear)))
    move = np.eye(3)
    move[0, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * width
    move[1, 2] = rng.uniform(0.5 - translate, 0.5 + translate) * height
    m = move @ shear_m @ rotate @ centre
    if border[0] or border[1] or (m != np.eye(3)).any():
        image = cv2.warpAffine(image, m[:2], dsize=(width, height), borderValue=(PAD_VALUE,) * 3)
    n = len(labels)
    if not n:
        return image, labels
    corners = np.ones((n * 4, 3))
    corners[:, :2] = labels[:, [1, 2, 3, 4, 1, 4, 3, 2]].reshape(n * 4, 2)  # x1y1, x2y2, x1y2, x2y1
    corners = (corners @ m.T)[:, :2].reshape(n, 8)
    xs, ys = corners[:, [0, 2, 4, 6]], corners[:, [1, 3, 5, 7]]
    boxes = np.stack([xs.min(1), ys.min(1), xs.max(1), ys.max(1)], 1)
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    gain = math.hypot(m[0, 0], m[1, 0])  # the transform's scale, for the area test
    keep = box_candidates(labels[:, 1:5].T * gain, boxes.T, area_thr=0.10)
    out = labels[keep].copy()
    out[:, 1:5] = boxes[keep]
    return image, out


def mosaic(
    indices: Tuple[int, int, int, int],
    load: Callable[[int], Tuple[np.ndarray, np.ndarray]],
    imgsz: int,
    rng: np.random.Generator,
) -> Tuple[np.ndarray, np.ndarray]:
    """Four images around a random centre on a 2*imgsz square canvas (YOLOv5 ``load_mosaic``, before the affine).

    Args:
        indices: the four dataset indices (the first is the sample's own).
        load: index -> (image resized to long side ``imgsz``, labels (n, 5) ``cls x1 y1 x2 y2`` pixels of it).
        imgsz: output size of the following affine crop.
        rng: random generator.

    Returns:
        ``(canvas (2*imgsz, 2*imgsz, 3) uint8, labels (n, 5) in canvas pixels, clipped)``.
    """
    s = imgsz
    yc, xc = (int(rng.uniform(s / 2, 3 * s / 2)) for _ in range(2))
    canvas = np.full((s * 2, s * 2, 3), PAD_VALUE, np.uint8)
    all_labels = []
    for k, index in enumerate(indices):
        img, labels = load(index)
        h, w = img.shape[:2]
        if k == 0:  # top left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), max(yc - h, 0), xc, yc
            xb1, yb1, xb2, yb2 = w - (xa2 - xa1), h - (ya2 - ya1), w, h
        elif k == 1:  # top right
            xa1, ya1, xa2, ya2 = xc, max(yc - h, 0), min(xc + w, s * 2), yc
            xb1, yb1, xb2, yb2 = 0, h - (ya2 - ya1), min(w, xa2 - xa1), h
        elif k == 2:  # bottom left
            xa1, ya1, xa2, ya2 = max(xc - w, 0), yc, xc, min(s * 2, yc + h)
            xb1, yb1, xb2, yb2 = w - (xa2 - xa1), 0, w, min(ya2 - ya1, h)
        else:  # bottom right
            xa1, ya1, xa2, ya2 = xc, yc, min(xc + w, s * 2), min(s * 2, yc + h)
            xb1, yb1, xb2, yb2 = 0, 0, min(w, xa2 - xa1), min(ya2 - ya1, h)
        canvas[ya1:ya2, xa1:xa2] = img[yb1:yb2, xb1:xb2]
        shifted = labels.copy()
        shifted[:, [1, 3]] += xa1 - xb1
        shifted[:, [2, 4]] += ya1 - yb1
        all_labels.append(shifted)
    labels = np.concatenate(all_labels, 0) if all_labels else np.zeros((0, 5), np.float32)
    np.clip(labels[:, 1:], 0, 2 * s, out=labels[:, 1:])
    return canvas, labels
