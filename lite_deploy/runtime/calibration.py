"""INT8 calibration blobs: image files fed through exactly the runtime's pre-processing (device side, torch-free).

The network sees calibration images the way it will see frames on the device: :class:`~lite_deploy.runtime.
pipeline.preprocess.Preprocessor` built from the artifact's own spec does the letterbox (size, stride, pad value,
centring), the BGR -> RGB swap, the scaling to [0, 1] and any mean/std, in the spec's layout. Used by every INT8
path: the host quantizers (:mod:`lite_deploy.quantize`, which also finds the images: ``find_images``) and the
TensorRT entropy calibrator on the device (:mod:`.backends.tensorrt.calib`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Iterator, Optional, Sequence

import numpy as np

from ..errors import ExportError
from ..io import read_image
from ..spec import ModelSpec
from .pipeline.preprocess import Preprocessor

DEFAULT_SIZE = 300  # calibration images used unless asked otherwise
HOW_TO_CALIBRATE = "pass --calib with a folder of images or a data.yaml (its train split is used)"
NO_SOURCE = "INT8 needs calibration images like the ones the model will see: " + HOW_TO_CALIBRATE + "."


def input_range(spec: ModelSpec) -> Dict[str, np.float32]:
    """The network input's full value range, ``{"rmin": ..., "rmax": ...}``: pixels 0-255 after the spec's scaling to
    [0, 1] and mean/std. The input's int8 range is pinned to it rather than calibrated, so no pixel is ever clipped."""
    low = [(0.0 - m) / s for m, s in zip(spec.mean, spec.std)]
    high = [(1.0 - m) / s for m, s in zip(spec.mean, spec.std)]
    return {"rmin": np.float32(min(low)), "rmax": np.float32(max(high))}


class CalibrationSet:
    """Calibration images as network input blobs, pre-processed as the runtime does for ``spec``.

    Args:
        images: image files (``lite_deploy.quantize.calibration.find_images`` picks them from a folder or a
            data.yaml).
        spec: the spec of the artifact being calibrated (letterbox, normalisation, layout).

    Raises:
        ExportError: no images.
    """

    def __init__(self, images: Sequence[Path], spec: ModelSpec) -> None:
        if not images:
            raise ExportError(NO_SOURCE)
        self.images = list(images)
        self.spec = spec

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
