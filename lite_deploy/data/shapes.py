"""A synthetic detection benchmark: six kinds of shapes on cluttered backgrounds, written as a YOLO dataset.

Classes: ``circle, square, triangle, star, cross, ring``. Each image (long side ``imgsz``, short side equal or
60-100 % of it) has 0-8 objects whose longest side is log-uniform between 5 % (at least :data:`MIN_SIZE` px) and 50 % of
the long side (16-160 px at 320, 16-112 px at 224), with random aspect (0.75-1.33), rotation, colour (at least
:data:`MIN_CONTRAST` away from the background under it) and a shading gradient. Objects may hide each other and
leave the image: the label is the box of the visible pixels, and a placement that would leave an object (new or
earlier) with less than :data:`MIN_VISIBLE` of its area visible is drawn again elsewhere, so no visible object is ever
unlabelled.
Backgrounds mix a low-frequency colour field, a linear gradient, blurred noise texture, soft blobs and long lines;
then sensor noise and sometimes blur are added and the image is stored as JPEG at quality :data:`JPEG_QUALITY`.

The difficulty is meant to keep small detectors from saturating at once without making them fail: small
objects, clutter, occlusion and truncation keep mAP50-95 well below 1, while a smallest side of about 16 px (at
320), at least 60 % of every object visible and a guaranteed colour contrast keep every object recognisable, so
mAP50 can approach 1 with training.

Determinism: image ``i`` of a split is drawn from ``numpy.random.default_rng([seed, split, i])`` with OpenCV
drawing only, so the same seed gives the same files (byte for byte with the same OpenCV build).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import List, Tuple, Union

import cv2
import numpy as np

from .yolo import label_text, write_data_config

LOGGER = logging.getLogger(__name__)

CLASSES = ("circle", "square", "triangle", "star", "cross", "ring")
SPLITS = ("train", "val")
MAX_OBJECTS = 8
SIZE_RANGE = (0.05, 0.5)  # longest object side, fraction of the image's long side (log-uniform)
MIN_SIZE = 16  # smallest longest object side in pixels, at any imgsz
MIN_VISIBLE = 0.6  # fraction of an object's area that must stay visible
MIN_BOX = 4  # smallest visible box side in pixels
MIN_CONTRAST = 70.0  # Euclidean BGR distance between object colour and the mean background under it
PLACEMENT_TRIES = 6
JPEG_QUALITY = 90
_SHIFT = 4  # sub-pixel bits for cv2.fillPoly
_CIRCLE_POINTS = 48


def _unit_polygons(kind: str, rng: np.random.Generator) -> List[np.ndarray]:
    """Outline(s) of a shape in a unit box centred at 0 (x, y in [-0.5, 0.5]); a second outline is a hole."""
    if kind in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, _CIRCLE_POINTS, endpoint=False)
        outer = 0.5 * np.stack([np.cos(t), np.sin(t)], 1)
        return [outer, outer * rng.uniform(0.45, 0.7)] if kind == "ring" else [outer]
    if kind == "square":
        return [np.array([[-0.5, -0.5], [0.5, -0.5], [0.5, 0.5], [-0.5, 0.5]])]
    if kind == "triangle":
        t = np.deg2rad([-90.0, 30.0, 150.0]) + rng.uniform(-0.15, 0.15, 3)
        pts = np.stack([np.cos(t), np.sin(t)], 1)
        pts -= (pts.max(0) + pts.min(0)) / 2
        return [pts / (pts.max(0) - pts.min(0)).max()]
    if kind == "star":
        t = np.linspace(-np.pi / 2, 1.5 * np.pi, 10, endpoint=False)
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.5 * rng.uniform(0.38, 0.5))
        return [np.stack([r * np.cos(t), r * np.sin(t)], 1)]
    if kind == "cross":
        a = 0.5 * rng.uniform(0.28, 0.42)
        return [
            np.array(
                [[-a, -0.5], [a, -0.5], [a, -a], [0.5, -a], [0.5, a], [a, a], [a, 0.5], [-a, 0.5], [-a, a],
                 [-0.5, a], [-0.5, -a], [-a, -a]]
            )
        ]
    raise ValueError(f"unknown shape {kind!r}; expected one of {CLASSES}")


def contrasting_colour(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """A random BGR colour at least :data:`MIN_CONTRAST` from ``under`` (3,), else black or white, whichever is farther.

    Up to 8 draws, so the same generator state always gives the same colour.
    """
    colour = rng.uniform(0, 255, 3)
    for _ in range(8):
        if np.linalg.norm(colour - under) >= MIN_CONTRAST:
            return colour
        colour = rng.uniform(0, 255, 3)
    return np.where(under > 127, 0.0, 255.0)


def _polygon_area(pts: np.ndarray) -> float:
    x, y = pts[:, 0], pts[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))


def _image_size(rng: np.random.Generator, imgsz: int) -> Tuple[int, int]:
    """(height, width): the long side is ``imgsz``; half of the images are square, the rest 0.6-1.0 as wide."""
    short = imgsz if rng.random() < 0.5 else int(round(imgsz * rng.uniform(0.6, 1.0)))
    return (short, imgsz) if rng.random() < 0.5 else (imgsz, short)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(h, w, 3) float32 background: colour field, gradient and soft blobs, then noise texture and long lines.

    The smooth layers are drawn at a quarter of the resolution and enlarged, which keeps generation fast.
    """
    sh, sw = max(h // 4, 2), max(w // 4, 2)
    gh, gw = rng.integers(2, 6, 2)
    field = cv2.resize(rng.uniform(0, 255, (gh, gw, 3)).astype(np.float32), (sw, sh), interpolation=cv2.INTER_CUBIC)
    if rng.random() < 0.5:
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * np.linspace(0, 1, sw)[None, :] + np.sin(angle) * np.linspace(0, 1, sh)[:, None]
        ramp = ((ramp - ramp.min()) / (np.ptp(ramp) + 1e-6)).astype(np.float32)[..., None]
        c0, c1 = rng.uniform(0, 255, (2, 3)).astype(np.float32)
        mix = np.float32(rng.uniform(0.3, 0.8))
        field = (1 - mix) * field + mix * (c0 + (c1 - c0) * ramp)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 6))):
            center = (int(rng.integers(0, sw)), int(rng.integers(0, sh)))
            axes = (int(rng.integers(sw // 16 + 1, sw // 3 + 2)), int(rng.integers(sh // 16 + 1, sh // 3 + 2)))
            cv2.ellipse(field, center, axes, float(rng.uniform(0, 180)), 0, 360, rng.uniform(0, 255, 3).tolist(), -1)
        field = cv2.GaussianBlur(field, (0, 0), float(rng.uniform(0.04, 0.07) * max(sh, sw)))
    k = int(rng.choice([1, 2, 4]))
    noise = rng.standard_normal((max(sh // k, 1), max(sw // k, 1), 3), dtype=np.float32)
    field += np.float32(rng.uniform(5, 30)) * cv2.resize(noise, (sw, sh), interpolation=cv2.INTER_LINEAR)
    field = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)
    if rng.random() < 0.6:
        for _ in range(int(rng.integers(1, 6))):
            p0 = rng.uniform(-0.2, 1.2, 2) * (w, h)
            angle = rng.uniform(0, np.pi)
            length = rng.uniform(0.6, 1.5) * max(h, w)
            p1 = p0 + length * np.array([np.cos(angle), np.sin(angle)])
            cv2.line(field, tuple(int(v) for v in p0), tuple(int(v) for v in p1), rng.uniform(0, 255, 3).tolist(),
                     int(rng.integers(1, 4)), cv2.LINE_AA)
    return field


def render_image(rng: np.random.Generator, imgsz: int = 320) -> Tuple[np.ndarray, np.ndarray]:
    """Draw one image.

    Args:
        rng: the image's random generator.
        imgsz: long side in pixels.

    Returns:
        ``(image, labels)``: (H, W, 3) uint8 BGR and (n, 5) float32 rows ``cls cx cy w h`` normalised to [0, 1].
    """
    h, w = _image_size(rng, imgsz)
    image = _background(rng, h, w)
    owner = np.full((h, w), -1, np.int16)
    areas: List[float] = []
    visible: List[int] = []
    classes: List[int] = []
    n_objects = 0 if rng.random() < 0.03 else int(rng.integers(1, MAX_OBJECTS + 1))
    for _ in range(n_objects):
        cls = int(rng.integers(len(CLASSES)))
        smallest = max(SIZE_RANGE[0] * imgsz, min(MIN_SIZE, SIZE_RANGE[1] * imgsz))
        size = math.exp(rng.uniform(math.log(smallest), math.log(SIZE_RANGE[1] * imgsz)))
        aspect = math.exp(rng.uniform(-0.29, 0.29))
        scale = np.array([size * min(aspect, 1.0), size * min(1.0 / aspect, 1.0)])
        angle = rng.uniform(0, 2 * np.pi)
        rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        outlines = [(p * scale) @ rot.T for p in _unit_polygons(CLASSES[cls], rng)]
        area = _polygon_area(outlines[0]) - sum(_polygon_area(p) for p in outlines[1:])
        for _ in range(PLACEMENT_TRIES):
            centre = rng.uniform((-0.25 * size, -0.25 * size), (w + 0.25 * size, h + 0.25 * size))
            placed = _place(outlines, centre, h, w, owner, areas, visible, area)
            if placed is not None:
                break
        else:
            continue
        (x0, y0, x1, y1), mask = placed
        region = image[y0:y1, x0:x1]
        colour = contrasting_colour(rng, region.reshape(-1, 3).mean(0))
        shade = (rng.uniform(-25, 25, 2) / max(size, 1.0)).astype(np.float32)
        xs = (np.arange(x0, x1, dtype=np.float32) - np.float32(centre[0])) * shade[0]
        ys = (np.arange(y0, y1, dtype=np.float32) - np.float32(centre[1])) * shade[1]
        fill = colour.astype(np.float32) + (ys[:, None] + xs[None, :])[..., None]
        alpha = (mask.astype(np.float32) / 255.0)[..., None]
        image[y0:y1, x0:x1] = region * (1 - alpha) + fill * alpha
        k = len(areas)
        solid = mask >= 128
        lost = np.bincount(owner[y0:y1, x0:x1][solid] + 1, minlength=k + 1)[1:]
        for j in np.flatnonzero(lost):
            visible[j] -= int(lost[j])
        owner[y0:y1, x0:x1][solid] = k
        areas.append(area)
        visible.append(int(solid.sum()))
        classes.append(cls)
    sigma = rng.uniform(0, 8)
    if sigma > 0.5:
        image += np.float32(sigma) * rng.standard_normal(image.shape, dtype=np.float32)
    if rng.random() < 0.25:
        image = cv2.GaussianBlur(image, (0, 0), float(rng.uniform(0.5, 1.2)))
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), _visible_boxes(owner, classes, w, h)


def _place(
    outlines: List[np.ndarray],
    centre: np.ndarray,
    h: int,
    w: int,
    owner: np.ndarray,
    areas: List[float],
    visible: List[int],
    area: float,
) -> Union[Tuple[Tuple[int, int, int, int], np.ndarray], None]:
    """Rasterise a shape at ``centre``; ``None`` if it, or an object it covers, would stay too little visible.

    Returns:
        ``((x0, y0, x1, y1), mask)``: the clipped pixel region and the anti-aliased uint8 mask over it.
    """
    pts = [p + centre for p in outlines]
    lo = np.floor(np.min(pts[0], 0)).astype(int) - 1
    hi = np.ceil(np.max(pts[0], 0)).astype(int) + 2
    x0, y0 = max(lo[0], 0), max(lo[1], 0)
    x1, y1 = min(hi[0], w), min(hi[1], h)
    if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
        return None
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    fixed = [np.round((p - (x0, y0)) * (1 << _SHIFT)).astype(np.int32) for p in pts]
    cv2.fillPoly(mask, fixed[:1], 255, cv2.LINE_AA, _SHIFT)
    if len(fixed) > 1:
        cv2.fillPoly(mask, fixed[1:], 0, cv2.LINE_AA, _SHIFT)
    solid = mask >= 128
    if solid.sum() < MIN_VISIBLE * area:
        return None
    lost = np.bincount(owner[y0:y1, x0:x1][solid] + 1, minlength=len(areas) + 1)[1:]
    for j in np.flatnonzero(lost):
        if visible[j] - lost[j] < MIN_VISIBLE * areas[j]:
            return None
    return (x0, y0, x1, y1), mask


def _visible_boxes(owner: np.ndarray, classes: List[int], w: int, h: int) -> np.ndarray:
    """YOLO labels (n, 5) from the visible pixels of each object; objects with a box side < MIN_BOX are dropped."""
    rows = []
    for k, cls in enumerate(classes):
        ys, xs = np.nonzero(owner == k)
        if not len(xs):
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        if x1 - x0 < MIN_BOX or y1 - y0 < MIN_BOX:
            continue
        rows.append([cls, (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h])
    return np.array(rows, np.float32).reshape(-1, 5)


def generate_shapes(
    out: Union[str, Path],
    *,
    train: int = 2000,
    val: int = 400,
    seed: int = 0,
    imgsz: int = 320,
    progress: bool = True,
) -> Path:
    """Write the benchmark as a YOLO dataset.

    Layout: ``out/images/{train,val}/NNNNNN.jpg``, ``out/labels/{train,val}/NNNNNN.txt`` and ``out/data.yaml``
    (``path`` absolute, written last).

    Args:
        out: output folder (created; existing files of the same names are replaced).
        train: number of training images.
        val: number of validation images.
        seed: random seed; the same seed gives the same files.
        imgsz: long side of every image in pixels (>= 64).
        progress: show a progress bar.

    Returns:
        The ``data.yaml`` path.

    Raises:
        ValueError: on a negative count or ``imgsz`` < 64.
    """
    from tqdm import tqdm

    if train < 0 or val < 0:
        raise ValueError(f"image counts must be >= 0, got train={train} val={val}")
    if imgsz < 64:
        raise ValueError(f"imgsz must be >= 64 pixels, got {imgsz}")
    out = Path(out).resolve()
    jobs = [(s, i) for s, n in zip(SPLITS, (train, val)) for i in range(n)]
    for split in SPLITS:
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for split, i in tqdm(jobs, desc="shapes", unit="img", disable=not progress):
        rng = np.random.default_rng([seed, SPLITS.index(split), i])
        image, labels = render_image(rng, imgsz)
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        if not ok:
            raise RuntimeError("OpenCV could not encode a JPEG image")
        (out / "images" / split / f"{i:06d}.jpg").write_bytes(encoded.tobytes())
        label = out / "labels" / split / f"{i:06d}.txt"
        label.write_text(label_text(labels[:, 0], labels[:, 1:]), encoding="utf-8")
    yaml_path = write_data_config(out, CLASSES)
    LOGGER.info("wrote %d train and %d val images to %s", train, val, out)
    return yaml_path
