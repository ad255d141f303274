"""Image-folder classification datasets: ``ROOT/<split>/<class name>/<image>``, one sub-folder per class.

The classes are the sub-folders of ``ROOT/train`` in sorted order (class id = position), for every split, so a
validation split may lack a class but not add one. Needs numpy and OpenCV only.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Tuple, Union

import numpy as np

from ..errors import DatasetError
from ..io import IMAGE_SUFFIXES, read_image

TRAIN_SPLIT = "train"


def _images(folder: Path) -> List[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


class ImageFolder:
    """One split of an image-folder dataset.

    Args:
        root: the dataset folder (holding ``train/`` and ``val/``).
        split: the split's sub-folder.

    Attributes:
        names: class names (the train split's sub-folders, sorted).
        samples: ``(image path, class id)`` pairs, by class then file name.

    Raises:
        DatasetError: the split or train folder is missing, holds no class folders, a class folder holds no images,
            or the split has a class the train split lacks.
    """

    def __init__(self, root: Union[str, Path], split: str = "val") -> None:
        self.root = Path(root)
        self.split = split
        self.names: Tuple[str, ...] = tuple(p.name for p in self._class_folders(TRAIN_SPLIT))
        self.samples: List[Tuple[Path, int]] = []
        for folder in self._class_folders(split):
            if folder.name not in self.names:
                raise DatasetError(f"{folder}: class {folder.name!r} is not among the classes of "
                                   f"{self.root / TRAIN_SPLIT}; add it to the train split or remove it")
            images = _images(folder)
            if not images:
                raise DatasetError(f"{folder}: the class folder holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                                   "add images or remove the folder")
            self.samples += [(path, self.names.index(folder.name)) for path in images]

    def _class_folders(self, split: str) -> List[Path]:
        folder = self.root / split
        if not folder.is_dir():
            raise DatasetError(f"{self.root} has no {split}/ folder; an image-folder dataset holds train/ and val/, "
                               "each with one sub-folder of images per class")
        classes = sorted(p for p in folder.iterdir() if p.is_dir())
        if not classes:
            raise DatasetError(f"{folder} holds no class folders; put each class's images in a sub-folder named "
                               "after the class")
        return classes

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    @property
    def labels(self) -> np.ndarray:
        """(N,) int64 class ids of the samples."""
        return np.array([label for _, label in self.samples], np.int64)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        """Sample ``index`` as (H, W, 3) uint8 BGR (raises DatasetError when it cannot be read)."""
        return read_image(self.samples[index][0])
