"""File primitives shared by the host and the device side: image files and atomic writes.

numpy, OpenCV and the standard library only; Python 3.8 (it runs on the device).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Union

import cv2
import numpy as np

from .errors import DatasetError

PathLike = Union[str, Path]

# The suffixes YOLOv5 reads as images (dng, mpo and pfm as OpenCV decodes them).
IMAGE_SUFFIXES = (".bmp", ".dng", ".jpeg", ".jpg", ".mpo", ".png", ".tif", ".tiff", ".webp", ".pfm")


def read_image(path: PathLike) -> np.ndarray:
    """Decode an image file as OpenCV does (also for non-ASCII paths).

    Returns:
        (H, W, 3) uint8 BGR.

    Raises:
        DatasetError: the file is missing or cannot be decoded.
    """
    data = np.fromfile(str(path), np.uint8) if os.path.isfile(path) else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise DatasetError(f"{path}: cannot read the image (missing or corrupt); replace or remove it.")
    return image


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    The file is readable by everyone (0644), like an ordinary file; a failure leaves ``path`` as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared like ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
