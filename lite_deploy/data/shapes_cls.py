"""A synthetic image-folder classification set: one shape per image, the shapes benchmark's classes and drawing.

Each image (``imgsz`` square) has one shape of :data:`~lite_deploy.data.shapes.CLASSES` on a background of the
shapes benchmark (colour field, gradient, texture, lines), 35-80 % of the image side, randomly rotated and
stretched (aspect 0.75-1.33), placed with its centre in the middle half, in a colour at least
:data:`~lite_deploy.data.shapes.MIN_CONTRAST` away from the background under it, then sensor noise. Classes are
balanced (image ``i`` shows class ``i % 6``). Layout: ``out/{train,val}/<class>/NNNNNN.jpg``.

Determinism: image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])`` with OpenCV drawing
only, so the same seed gives the same files (byte for byte with the same OpenCV build).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .shapes import CLASSES, JPEG_QUALITY, SPLITS, _background, _unit_polygons, contrasting_colour

LOGGER = logging.getLogger(__name__)

SIZE_RANGE = (0.35, 0.8)  # longest shape side, fraction of the image side
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly


def render_shape_image(rng: np.random.Generator, cls: int, imgsz: int = 96) -> np.ndarray:
    """Draw one ``imgsz`` x ``imgsz`` uint8 BGR image showing one shape of class ``cls``."""
    image = _background(rng, imgsz, imgsz)
    size = imgsz * rng.uniform(*SIZE_RANGE)
    aspect = math.exp(rng.uniform(-0.29, 0.29))
    scale = np.array([size * min(aspect, 1.0), size * min(1.0 / aspect, 1.0)])
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rng.uniform(0.25, 0.75, 2) * imgsz
    mask = np.zeros((imgsz, imgsz), np.uint8)
    outlines = [np.round(((p * scale) @ rot.T + centre) * (1 << _SHIFT)).astype(np.int32)
                for p in _unit_polygons(CLASSES[cls], rng)]
    cv2.fillPoly(mask, outlines[:1], 255, cv2.LINE_AA, _SHIFT)
    if len(outlines) > 1:
        cv2.fillPoly(mask, outlines[1:], 0, cv2.LINE_AA, _SHIFT)
    alpha = (mask.astype(np.float32) / 255)[..., None]
    under = image[mask >= 128].mean(0) if (mask >= 128).any() else image.reshape(-1, 3).mean(0)
    colour = contrasting_colour(rng, under)
    image = image * (1 - alpha) + colour.astype(np.float32) * alpha
    image += np.float32(rng.uniform(0, 8)) * rng.standard_normal(image.shape, dtype=np.float32)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def generate_shapes_cls(
    out: Union[str, Path], *, train: int = 600, val: int = 120, seed: int = 0, imgsz: int = 96, progress: bool = True
) -> Path:
    """Write the set as an image-folder dataset.

    Args:
        out: output folder (created; existing files of the same names are replaced).
        train: number of training images.
        val: number of validation images.
        seed: random seed; the same seed gives the same files.
        imgsz: image side in pixels (>= 32).
        progress: show a progress bar.

    Returns:
        ``out`` (absolute), the dataset root to pass to ``lite-deploy train --task classify --data``.

    Raises:
        ValueError: a count below the number of classes (every class folder needs an image) or ``imgsz`` < 32.
    """
    from tqdm import tqdm

    if min(train, val) < len(CLASSES):
        raise ValueError(f"train and val need at least {len(CLASSES)} images each (one per class), got {train}, {val}")
    if imgsz < 32:
        raise ValueError(f"imgsz must be >= 32 pixels, got {imgsz}")
    out = Path(out).resolve()
    for split in SPLITS:
        for name in CLASSES:
            (out / split / name).mkdir(parents=True, exist_ok=True)
    jobs = [(s, i) for s, n in zip(SPLITS, (train, val)) for i in range(n)]
    for split, i in tqdm(jobs, desc="shapes-cls", unit="img", disable=not progress):
        cls = i % len(CLASSES)
        image = render_shape_image(np.random.default_rng([seed, SPLITS.index(split), i]), cls, imgsz)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG image")
        (out / split / CLASSES[cls] / f"{i:06d}.jpg").write_bytes(encoded.tobytes())
    LOGGER.info("wrote %d train and %d val images to %s", train, val, out)
    return out
