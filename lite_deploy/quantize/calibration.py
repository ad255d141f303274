"""Calibration images for INT8: found from a folder or a data.yaml, fed through exactly the runtime's pre-processing.

The network sees calibration images the way it will see frames on the device: :class:`~lite_deploy.runtime.
calibration.CalibrationSet` (device side, with :func:`~lite_deploy.runtime.calibration.input_range`) feeds them
through the runtime's own pre-processing for the artifact's spec. There is no default calibration
set: INT8 without ``--calib`` is refused, and so is a source with fewer than :data:`MIN_IMAGES` images unless
``calib_size`` explicitly asks for fewer.

Activation ranges are the mean over the calibration batches of each batch's min and max (ONNX Runtime's
``CalibMovingAverage``, which averages all batches with equal weight; ``MeanMinMaxObserver`` in :mod:`.tflite_int8`),
not the min and max over all batches: a few images can drive single channels far beyond their usual range, and one
such image then sets the int8 step for every image. Measured on the ShuffleNetV2 x0.5 shapes detector at 224 (FP32
mAP50-95 66.53, 300 calibration images, ONNX Runtime): in 11 of the 300 images a neck activation reaches 105-122
where the median image reaches 8; min/max ranges gave 35.52, the mean 65.79 (the 99.99th and 99.9th percentiles of
a histogram over all images did worse than the mean: 56.18 and 61.26 at conf 0.25, where FP32 gave 63.87). On the
x1.0 detector: min/max 55.04, the mean 55.91 (FP32 56.31).

Torch-free (numpy, OpenCV, PyYAML).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Union

import numpy as np

from ..data.yolo import list_images, load_data_config
from ..errors import ExportError
from ..runtime.calibration import DEFAULT_SIZE, HOW_TO_CALIBRATE, NO_SOURCE

LOGGER = logging.getLogger(__name__)

MIN_IMAGES = 100  # fewer calibration images than this need an explicit, smaller --calib-size


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
