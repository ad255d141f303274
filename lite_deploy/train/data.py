"""A torch ``Dataset`` over a YOLO dataset for training: mosaic, affine, HSV and flip augmentation, square batches."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
import torch

from ..boxes import xywhn_to_xyxy
from ..data.yolo import YoloDataset
from ..runtime.pipeline.preprocess import letterbox, plan_letterbox
from .augment import augment_hsv, mosaic, random_affine, resize_long_side


@dataclass(frozen=True)
class AugmentConfig:
    """Augmentation strengths (YOLOv5 ``hyp.scratch-low`` defaults).

    Attributes:
        hsv_h: hue gain (fraction).
        hsv_s: saturation gain (fraction).
        hsv_v: value gain (fraction).
        degrees: rotation +- degrees.
        translate: translation +- fraction.
        scale: scale gain +-.
        shear: shear +- degrees.
        fliplr: probability of a left-right flip.
        mosaic: probability of a 4-image mosaic.
    """

    hsv_h: float = 0.015
    hsv_s: float = 0.7
    hsv_v: float = 0.4
    degrees: float = 0.0
    translate: float = 0.1
    scale: float = 0.5
    shear: float = 0.0
    fliplr: float = 0.5
    mosaic: float = 1.0


class TrainDataset(torch.utils.data.Dataset):
    """Square ``imgsz`` training samples from a :class:`YoloDataset`.

    Each item is ``(image, labels)``: image (3, imgsz, imgsz) uint8 RGB, labels (n, 6) float32 rows
    ``0, cls, cx, cy, w, h`` normalised to the image (:meth:`collate` fills the first column with the index in the
    batch). Random draws come from torch's generator, so ``torch.manual_seed`` and the DataLoader's worker seeding
    make runs repeatable.

    Args:
        dataset: the split.
        imgsz: output side in pixels (a multiple of the model stride).
        augment: apply :class:`AugmentConfig`; without it images are letterboxed as at validation.
        config: augmentation strengths.
    """

    def __init__(self, dataset: YoloDataset, imgsz: int, augment: bool = True, config: AugmentConfig = AugmentConfig()):
        self.dataset = dataset
        self.imgsz = imgsz
        self.augment = augment
        self.config = config

    def __len__(self) -> int:
        return len(self.dataset)

    def load(self, index: int) -> Tuple[np.ndarray, np.ndarray]:
        """Image resized to long side ``imgsz`` and its labels (n, 5) ``cls x1 y1 x2 y2`` in its pixels."""
        image, _ = resize_long_side(self.dataset.load_image(index), self.imgsz, self.augment)
        lab = self.dataset.labels[index]
        boxes = xywhn_to_xyxy(lab[:, 1:], (image.shape[1], image.shape[0]))
        return image, np.concatenate([lab[:, :1], boxes], 1).astype(np.float32)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
        cfg, s = self.config, self.imgsz
        if self.augment and rng.random() < cfg.mosaic:
            picks = (index, *(int(i) for i in rng.integers(0, len(self), 3)))
            image, labels = mosaic(picks, self.load, s, rng)
            image, labels = random_affine(image, labels, rng, degrees=cfg.degrees, translate=cfg.translate,
                                          scale=cfg.scale, shear=cfg.shear, border=(-s // 2, -s // 2))
        else:
            image, labels = self.load(index)
            plan = plan_letterbox(image.shape[:2], s, auto=False, scaleup=self.augment)
            image = letterbox(image, s, auto=False, scaleup=self.augment)[0]
            labels[:, [1, 3]] = labels[:, [1, 3]] * plan.ratio + plan.left
            labels[:, [2, 4]] = labels[:, [2, 4]] * plan.ratio + plan.top
            if self.augment:
                image, labels = random_affine(image, labels, rng, degrees=cfg.degrees, translate=cfg.translate,
                                              scale=cfg.scale, shear=cfg.shear)
        if self.augment:
            augment_hsv(image, rng, cfg.hsv_h, cfg.hsv_s, cfg.hsv_v)
            if rng.random() < cfg.fliplr:
                image = image[:, ::-1]
                labels[:, [1, 3]] = image.shape[1] - labels[:, [3, 1]]
        h, w = image.shape[:2]
        out = np.zeros((len(labels), 6), np.float32)
        out[:, 1] = labels[:, 0]
        out[:, 2] = (labels[:, 1] + labels[:, 3]) / 2 / w
        out[:, 3] = (labels[:, 2] + labels[:, 4]) / 2 / h
        out[:, 4] = (labels[:, 3] - labels[:, 1]) / w
        out[:, 5] = (labels[:, 4] - labels[:, 2]) / h
        chw = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))
        return torch.from_numpy(chw), torch.from_numpy(out)

    @staticmethod
    def collate(batch: List[Tuple[torch.Tensor, torch.Tensor]]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Stack images (B, 3, H, W) uint8 and concatenate labels (n, 6) with their index in the batch."""
        images, labels = zip(*batch)
        for i, lab in enumerate(labels):
            lab[:, 0] = i
        return torch.stack(images, 0), torch.cat(labels, 0)
