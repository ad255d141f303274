"""Calibration images for INT8: found from a folder or a data.yaml, fed through exactly the runtime's pre-processing.

The network sees calibration images the way it will see frames on the device: :class:`~lite_deploy.runtime.
preprocess.Preprocessor` built from the artifact's own spec does the letterbox (size, stride, pad value, centring),
the BGR -> RGB swap, the scaling to [0, 1] and any mean/std, in the spec's layout. There is no default calibration
set: INT8 without ``--calib`` is refused, and so is a source with fewer than :data:`MIN_IMAGES` images unless
``calib_size`` explicitly asks for fewer.

Torch-free (numpy, OpenCV, PyYAML): the TensorRT entropy calibrator uses it on the device.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Union

import numpy as np

from ..data.dataset import read_image
from ..data.yolo import list_images, load_data_config
from ..errors import ExportError
from ..runtime.preprocess import Preprocessor
from ..spec import ModelSpec

LOGGER = logging.getLogger(__name__)

MIN_IMAGES = 100  # fewer calibration images than this need an explicit, smaller --calib-size
DEFAULT_SIZE = 300
HOW_TO_CALIBRATE = "pass --calib with a folder of images or a data.yaml (its train split is used)"
NO_SOURCE = "INT8 needs calibration images like the ones the model will see: " + HOW_TO_CALIBRATE + "."


def find_images(source: Union[str, Path, None], size: int = DEFAULT_SIZE, *, seed: int = 0) -> List[Path]:
    """The calibration images of ``source``: at most ``size`` of them, spread over the whole source.

    Args:
        source: a folder (searched recursively) or a YOLO ``data.yaml`` (its ``train`` split).
        size: the number of images to use. A source with more images gives a seeded random sample of ``size``
            (the same files every time); one with fewer gives all of them.
        seed: seed of the sample.

    Returns:
        Image paths, sorted.

    Raises:
        ExportError: no source; the source does not exist or has no images; it has fewer than
            ``min(size, MIN_IMAGES)`` images (the message says to add images or pass a smaller ``--calib-size``).
        ValueError: ``size`` < 1.
    """
    if source is None or str(source) == "":
        raise ExportError(NO_SOURCE)
    if size < 1:
        raise ValueError(f"calib_size must be >= 1, got {size}")
    path = Path(source)
    if path.suffix.lower() in (".yaml", ".yml") and path.is_file():
        config = load_data_config(path)
        sources = config.splits.get("train", ())
        where = f"the train split of {path}"
    elif path.is_dir():
        sources, where = (path,), str(path)
    else:
        raise ExportError(f"calibration source {source} does not exist; {HOW_TO_CALIBRATE}.")
    images, _ = list_images(list(sources))
    if not images:
        raise ExportError(f"no images found in {where}; {HOW_TO_CALIBRATE}.")
    needed = min(size, MIN_IMAGES)
    if len(images) < needed:
        raise ExportError(
            f"only {len(images)} calibration images in {where}, fewer than the {needed} a reliable INT8 calibration "
            f"needs: add images, or pass --calib-size {len(images)} to accept that few"
        )
    if size < MIN_IMAGES:
        LOGGER.warning(
            "calibrating INT8 on %d images (--calib-size %d, under %d): scales may not cover real frames; "
            "judge the result with --data", min(size, len(images)), size, MIN_IMAGES,
        )
    elif len(images) < size:
        LOGGER.warning("calibrating INT8 on all %d images of %s (fewer than --calib-size %d)", len(images), where, size)
    if len(images) > size:
        pick = np.random.default_rng(seed).choice(len(images), size, replace=False)
        images = [images[i] for i in sorted(pick)]
    return images


class CalibrationSet:
    """Calibration images as network input blobs, pre-processed as the runtime does for ``spec``.

    Args:
        images: image files (see :func:`find_images`).
        spec: the spec of the artifact being calibrated (letterbox, normalisation, layout).
    """

    def __init__(self, images: Sequence[Path], spec: ModelSpec) -> None:
        if not images:
            raise ExportError(NO_SOURCE)
        self.images = list(images)
        self.spec = spec

    @classmethod
    def from_source(cls, source: Union[str, Path, None], spec: ModelSpec, size: int = DEFAULT_SIZE) -> "CalibrationSet":
        """:func:`find_images` of ``source``, for ``spec``."""
        return cls(find_images(source, size), spec)

    def with_spec(self, spec: ModelSpec) -> "CalibrationSet":
        """The same images for another artifact's spec (e.g. the NHWC TFLite input)."""
        return CalibrationSet(self.images, spec)

    def __len__(self) -> int:
        return len(self.images)

    def batches(self, batch: int = 1, limit: Optional[int] = None) -> Iterator[np.ndarray]:
        """Float32 blobs of ``batch`` images, (B, 3, H, W) or (B, H, W, 3) as the spec's layout says.

        Each blob is a new array. The last, partial batch is filled up by repeating its last image.

        Args:
            batch: images per blob.
            limit: use only the first ``limit`` images.
        """
        preprocess = Preprocessor(self.spec, np.float32)
        paths = self.images[:limit] if limit is not None else self.images
        for start in range(0, len(paths), batch):
            chunk = [read_image(p) for p in paths[start : start + batch]]
            chunk += [chunk[-1]] * (batch - len(chunk))
            blob, _ = preprocess(chunk)
            yield blob.copy()
