"""What every detection dataset offers to validation, training and the COCO writers.

Needs numpy and OpenCV only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from ..io import read_image


class Targets(NamedTuple):
    """Ground truth of one image.

    Attributes:
        class_ids: (n,) int64 class indices.
        boxes: (n, 4) float32 xyxy in image pixels.
        crowd: (n,) bool, COCO ``iscrowd`` regions (matched detections are ignored, never counted).
    """

    class_ids: np.ndarray
    boxes: np.ndarray
    crowd: np.ndarray


class Sample(NamedTuple):
    """One image with its ground truth.

    Attributes:
        index: position in the dataset.
        path: image file.
        image: (H, W, 3) uint8 BGR.
        targets: its ground truth in pixels.
    """

    index: int
    path: Path
    image: np.ndarray
    targets: Targets


class DetectionDataset:
    """Base of the dataset readers: image files, class names, ground truth and COCO ids.

    Subclasses set ``names`` and ``images`` and implement ``__len__``, :meth:`image_id` and :meth:`targets`.

    Attributes:
        names: class names, index = class id.
        images: image files.
        category_ids: COCO category id of each class id.
    """

    names: Tuple[str, ...]
    images: List[Path]

    def __init__(self, category_ids: Sequence[int]) -> None:
        self.category_ids = tuple(int(c) for c in category_ids)
        self._sizes: Dict[int, Tuple[int, int]] = {}

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    def __len__(self) -> int:
        raise NotImplementedError

    def image_id(self, index: int) -> int:
        """COCO image id of the image at ``index``."""
        raise NotImplementedError

    def targets(self, index: int, size: Tuple[int, int]) -> Targets:
        """Ground truth of the image at ``index``, whose (width, height) is ``size``."""
        raise NotImplementedError

    def load_image(self, index: int) -> np.ndarray:
        """The image at ``index``, (H, W, 3) uint8 BGR; its size is remembered for :meth:`image_size`."""
        image = read_image(self.images[index])
        self._sizes[index] = (image.shape[1], image.shape[0])
        return image

    def image_size(self, index: int) -> Tuple[int, int]:
        """(width, height) of the image at ``index`` in pixels (decodes it once if it was never loaded)."""
        if index not in self._sizes:
            self.load_image(index)
        return self._sizes[index]

    def __getitem__(self, index: int) -> Sample:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for a dataset of {len(self)} images")
        image = self.load_image(index)
        return Sample(index, self.images[index], image, self.targets(index, (image.shape[1], image.shape[0])))
