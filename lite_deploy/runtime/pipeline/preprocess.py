"""Image pre-processing shared by every backend: checks, letterbox (detectors), centre crop (classifiers), blobs.

The letterbox reproduces YOLOv5's for the same arguments, pixel for pixel: scale ``r = min(h_new/h, w_new/w)``
(at most 1 without ``scaleup``), resize with ``cv2.INTER_LINEAR`` to ``(round(w*r), round(h*r))``, pad with
``pad_value`` to the target (or, with ``auto``, to the next multiple of ``stride``), the padding split as
``top = round(dh - 0.1)``, ``bottom = round(dh + 0.1)`` (left/right likewise).
"""

from __future__ import annotations

import math
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ...spec import ModelSpec

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Size = Union[int, Tuple[int, int]]


class Geometry(NamedTuple):
    """Where an image went inside the network input, to map boxes back.

    Attributes:
        ratio: resize gain (network pixels per original pixel).
        left: padding left of the image, pixels.
        top: padding above the image, pixels.
        shape: original (height, width).
    """

    ratio: float
    left: int
    top: int
    shape: Tuple[int, int]


class LetterboxPlan(NamedTuple):
    """The letterbox's arithmetic for one image size (see :func:`plan_letterbox`)."""

    ratio: float
    resized: Tuple[int, int]  # (width, height) after the resize
    dw: float
    dh: float
    top: int
    bottom: int
    left: int
    right: int


def check_image(image: object) -> np.ndarray:
    """Return ``image`` as an HxWx3 uint8 BGR array; HxW grey and HxWx4 BGRA are converted.

    Raises:
        ValueError: anything else, saying what was expected and what came.
    """
    expected = "an HxWx3 uint8 BGR image (as cv2.imread returns it)"
    if image is None:
        raise ValueError(f"expected {expected}, got None (did cv2.imread fail to read the file?)")
    if not isinstance(image, np.ndarray):
        raise ValueError(f"expected {expected}, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"expected {expected}, got dtype {image.dtype}; convert to uint8 0-255 first "
            "(e.g. (img * 255).round().astype(np.uint8) for values in [0, 1])"
        )
    if image.ndim in (2, 3) and 0 in image.shape[:2]:
        raise ValueError(f"expected {expected}, got an empty image of shape {image.shape}")
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.ndim == 3 and image.shape[2] == 3:
        return image
    if image.ndim == 3 and image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim == 3 and image.shape[2] == 1:
        return cv2.cvtColor(image[:, :, 0], cv2.COLOR_GRAY2BGR)
    raise ValueError(f"expected {expected} (or HxW grey, HxWx4 BGRA), got shape {image.shape}")


def plan_letterbox(
    shape: Tuple[int, int], new_shape: Size, stride: int = 32, auto: bool = False, scaleup: bool = True,
    center: bool = True,
) -> LetterboxPlan:
    """Scale, resized size and padding of a letterbox, without touching pixels.

    Args:
        shape: image (height, width).
        new_shape: target (height, width) or one int for a square.
        stride: with ``auto``, pad only up to a multiple of it.
        auto: minimal rectangle (pad modulo ``stride``) instead of the full ``new_shape``.
        scaleup: allow enlarging; without it small images keep their size.
        center: split the padding over both sides; otherwise all of it goes bottom/right.

    A side that the scale would round to 0 pixels (a 1x5000 image into 640) keeps 1 pixel, so every image has
    a letterbox; mapping back by ``ratio`` is then off by less than one network pixel on that side.

    Raises:
        ValueError: an image or target side of 0 pixels.
    """
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    h, w = shape
    if h < 1 or w < 1 or new_shape[0] < 1 or new_shape[1] < 1:
        raise ValueError(f"cannot letterbox an image of {w}x{h} pixels into {new_shape[1]}x{new_shape[0]}: "
                         "both need at least 1 pixel per side")
    r = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    width, height = max(int(round(w * r)), 1), max(int(round(h * r)), 1)
    dw, dh = float(new_shape[1] - width), float(new_shape[0] - height)
    if auto:
        dw, dh = float(np.mod(dw, stride)), float(np.mod(dh, stride))
    if center:
        dw, dh = dw / 2, dh / 2
        top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
        left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    else:
        top, bottom, left, right = 0, int(round(dh)), 0, int(round(dw))
    return LetterboxPlan(r, (width, height), dw, dh, top, bottom, left, right)


def letterbox(
    image: np.ndarray,
    new_shape: Size = 640,
    stride: int = 32,
    auto: bool = False,
    scaleup: bool = True,
    pad_value: int = 114,
    center: bool = True,
) -> Tuple[np.ndarray, Tuple[float, float], Tuple[float, float]]:
    """Resize keeping the aspect ratio and pad, as YOLOv5's ``letterbox`` does.

    Args:
        image: HxWxC uint8 image.
        new_shape: target (height, width) or one int for a square.
        stride: with ``auto``, pad only up to a multiple of it.
        auto: minimal rectangle instead of the full ``new_shape``.
        scaleup: allow enlarging.
        pad_value: border value of every channel.
        center: split the padding over both sides (YOLOv5) instead of bottom/right only.

    Returns:
        ``(padded image, (ratio, ratio), (dw, dh))``; ``dw``/``dh`` is the padding per side (halved when
        ``center``) as YOLOv5 returns it.
    """
    plan = plan_letterbox(image.shape[:2], new_shape, stride, auto, scaleup, center)
    if (image.shape[1], image.shape[0]) != plan.resized:
        image = cv2.resize(image, plan.resized, interpolation=cv2.INTER_LINEAR)
    value = (pad_value,) * (image.shape[2] if image.ndim == 3 else 1)
    padded = cv2.copyMakeBorder(image, plan.top, plan.bottom, plan.left, plan.right, cv2.BORDER_CONSTANT, value=value)
    return padded, (plan.ratio, plan.ratio), (plan.dw, plan.dh)


def center_crop(image: np.ndarray, size: Tuple[int, int], crop_fraction: float = 0.875) -> np.ndarray:
    """Classifier pre-processing: resize the short side to ``size / crop_fraction``, then crop the centre.

    Args:
        image: HxWx3 uint8 image.
        size: crop (height, width).
        crop_fraction: fraction of the resized short side the crop covers (timm's ``crop_pct``).

    Returns:
        The ``size`` crop, uint8.
    """
    h, w = image.shape[:2]
    scale_size = int(math.floor(min(size) / crop_fraction))
    if h <= w:
        new_h, new_w = scale_size, int(scale_size * w / h)
    else:
        new_h, new_w = int(scale_size * h / w), scale_size
    new_h, new_w = max(new_h, size[0]), max(new_w, size[1])
    if (new_h, new_w) != (h, w):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    top = int(round((new_h - size[0]) / 2.0))
    left = int(round((new_w - size[1]) / 2.0))
    return image[top : top + size[0], left : left + size[1]]


class Preprocessor:
    """Frames -> one network input blob, as the spec says, into buffers reused across calls.

    Args:
        spec: the artifact's spec (preprocess kind, imgsz, letterbox settings, mean/std, layout, channel order).
        dtype: blob dtype, the runtime input's: float32/float16 (scaled to [0, 1] then mean/std) or uint8
            (raw pixels).
    """

    def __init__(self, spec: ModelSpec, dtype: Union[np.dtype, type] = np.float32) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float16, np.uint8):
            raise ValueError(f"the model input takes {self.dtype}; lite-deploy feeds float32, float16 or uint8 images")
        mean = np.asarray(spec.mean, np.float32)  # per network input channel (RGB when bgr_to_rgb)
        std = np.asarray(spec.std, np.float32)
        # (x / 255 - mean) / std in float32 for each of the 256 pixel values, per network channel: one table
        # lookup per pixel gives the same numbers as YOLOv5's and torchvision's transforms
        levels = np.arange(256, dtype=np.float32) / np.float32(255)
        self._luts = [(levels - mean[c]) / std[c] for c in range(3)]
        self._lut3 = np.ascontiguousarray(np.stack(self._luts, axis=-1)[None])  # (1, 256, 3) for NHWC
        self._canvases: Dict[Tuple[int, int, int], np.ndarray] = {}
        self._planes: Dict[Tuple[int, int], List[np.ndarray]] = {}
        self._blobs: Dict[Tuple[int, ...], np.ndarray] = {}
        self._float_blobs: Dict[Tuple[int, ...], np.ndarray] = {}
        # what the padding of each canvas / blob slot was last written for: the same letterbox again only
        # rewrites the rows that hold the image
        self._painted: Dict[Tuple[object, ...], LetterboxPlan] = {}

    def __call__(self, images: Sequence[np.ndarray]) -> Tuple[np.ndarray, List[Optional[Geometry]]]:
        """Pre-process a batch.

        Args:
            images: HxWx3 uint8 BGR frames (grey and BGRA are converted; see :func:`check_image`).

        Returns:
            ``(blob, geometries)``: blob (B, 3, H, W) or (B, H, W, 3) in the spec's layout (a view of a buffer
            reused by the next call: copy it to keep it), and per image its :class:`Geometry` (``None`` for
            centre crops).
        """
        frames = [check_image(image) for image in images]
        letterbox_mode = self.spec.preprocess == "letterbox"
        auto = letterbox_mode and self.spec.letterbox_auto and len(frames) == 1
        height, width = self.spec.imgsz
        plans = []
        if letterbox_mode:
            plans = [
                plan_letterbox(f.shape[:2], (height, width), self.spec.stride, auto, self.spec.scaleup,
                               self.spec.letterbox_center)
                for f in frames
            ]
            if auto:
                height = plans[0].resized[1] + plans[0].top + plans[0].bottom
                width = plans[0].resized[0] + plans[0].left + plans[0].right
        blob = self._blob(len(frames), height, width)
        geometries: List[Optional[Geometry]] = []
        for i, frame in enumerate(frames):
            rows = slice(0, height)
            if letterbox_mode:
                plan = plans[i]
                canvas = self._letterbox_into(frame, plan, height, width, i)
                geometries.append(Geometry(plan.ratio, plan.left, plan.top, (frame.shape[0], frame.shape[1])))
                if self._painted.get((blob.shape, i)) == plan:
                    rows = slice(plan.top, plan.top + plan.resized[1])
                self._painted[(blob.shape, i)] = plan
            else:
                canvas = center_crop(frame, (height, width), self.spec.crop_fraction)
                geometries.append(None)
                self._painted.pop((blob.shape, i), None)
            self._to_blob(canvas, blob, i, rows)
        return blob, geometries

    def _letterbox_into(self, frame: np.ndarray, plan: LetterboxPlan, height: int, width: int, slot: int) -> np.ndarray:
        """Resize ``frame`` straight into its place in a reused (height, width, 3) uint8 canvas; pad as needed."""
        key = (slot, height, width)
        canvas = self._canvases.get(key)
        if canvas is None:
            canvas = self._canvases[key] = np.empty((height, width, 3), np.uint8)
        rw, rh = plan.resized
        top, left = plan.top, plan.left
        if self._painted.get(key) != plan:
            pad = self.spec.pad_value
            canvas[:top] = pad
            canvas[top + rh :] = pad
            canvas[top : top + rh, :left] = pad
            canvas[top : top + rh, left + rw :] = pad
            self._painted[key] = plan
        roi = canvas[top : top + rh, left : left + rw]
        if (frame.shape[1], frame.shape[0]) == (rw, rh):
            roi[...] = frame
        else:
            cv2.resize(frame, (rw, rh), dst=roi, interpolation=cv2.INTER_LINEAR)
        return canvas

    def _blob(self, batch: int, height: int, width: int) -> np.ndarray:
        shape = (batch, 3, height, width) if self.spec.layout == "NCHW" else (batch, height, width, 3)
        blob = self._blobs.get(shape)
        if blob is None:
            blob = self._blobs[shape] = np.empty(shape, self.dtype)
        return blob

    def _to_blob(self, canvas: np.ndarray, blob: np.ndarray, i: int, rows: slice) -> None:
        """Rows ``rows`` of one HxWx3 uint8 BGR canvas -> ``blob[i]``: channel order, layout, scaling, dtype.

        Float blobs take one table lookup per pixel (see ``_luts``) written straight into the blob's planes.
        """
        order = (2, 1, 0) if self.spec.bgr_to_rgb else (0, 1, 2)
        band = canvas[rows]
        nchw = self.spec.layout == "NCHW"
        if self.dtype == np.uint8:
            if nchw:
                for c, src in enumerate(order):
                    blob[i, c, rows] = band[:, :, src]
            else:
                blob[i, rows] = band[:, :, list(order)] if self.spec.bgr_to_rgb else band
            return
        target = blob if self.dtype == np.float32 else self._float_buffer(blob.shape)
        if nchw:
            planes = self._planes.get(band.shape[:2])
            if planes is None:
                planes = self._planes[band.shape[:2]] = [np.empty(band.shape[:2], np.uint8) for _ in range(3)]
            cv2.split(band, planes)
            for c, src in enumerate(order):
                cv2.LUT(planes[src], self._luts[c], dst=target[i, c, rows])
        else:
            ordered = cv2.cvtColor(band, cv2.COLOR_BGR2RGB) if self.spec.bgr_to_rgb else band
            cv2.LUT(ordered, self._lut3, dst=target[i, rows])
        if target is not blob:
            if nchw:
                blob[i, :, rows] = target[i, :, rows]
            else:
                blob[i, rows] = target[i, rows]

    def _float_buffer(self, shape: Tuple[int, ...]) -> np.ndarray:
        buffer = self._float_blobs.get(shape)
        if buffer is None:
            buffer = self._float_blobs[shape] = np.empty(shape, np.float32)
        return buffer
