"""Training of CenterNet-style detectors (:mod:`lite_deploy.models.centernet`): targets, loss and the training run.

Targets, per object (CenterNet, Zhou et al. 2019): its centre in heatmap cells (stride 4) falls in one cell, which
gets 1 in its class heatmap; around it a Gaussian of radius :func:`gaussian_radius` (sigma = diameter / 6, the
element-wise maximum where objects overlap) lowers the penalty of near misses. ``wh`` learns the box size and
``reg`` the centre's offset inside its cell, both in cells, at that one cell only.

Loss: the penalty-reduced focal loss on the heatmap (alpha 2, beta 4, summed and divided by the number of objects)
+ 0.1 x mean L1 of ``wh`` + 1 x mean L1 of ``reg``.

The run is :class:`~lite_deploy.train.trainer.Trainer`'s recipe with this loss: the same YOLO dataset, augmentation
(:class:`~lite_deploy.train.data.TrainDataset`), SGD groups, warmup, EMA, checkpoints and per-epoch validation
through the runtime (which decodes the heatmap peaks, so mAP is measured as deployed).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .trainer import TrainConfig, Trainer

LOGGER = logging.getLogger(__name__)

WH_WEIGHT = 0.1
OFFSET_WEIGHT = 1.0
MIN_OVERLAP = 0.7

Targets = Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def gaussian_radius(height: float, width: float, min_overlap: float = MIN_OVERLAP) -> float:
    """CornerNet/CenterNet radius (cells) within which a shifted box of this size keeps ``min_overlap`` IoU.

    The smallest root of the three cases of CornerNet's derivation (both corners inside, both outside, one of each),
    with the quadratic-formula simplifications of CenterNet's reference code, so radii match published models.
    """
    b1 = height + width
    c1 = width * height * (1 - min_overlap) / (1 + min_overlap)
    r1 = (b1 + math.sqrt(b1**2 - 4 * c1)) / 2
    b2 = 2 * (height + width)
    c2 = (1 - min_overlap) * width * height
    r2 = (b2 + math.sqrt(b2**2 - 16 * c2)) / 2
    a3 = 4 * min_overlap
    b3 = -2 * min_overlap * (height + width)
    c3 = (min_overlap - 1) * width * height
    r3 = (b3 + math.sqrt(b3**2 - 4 * a3 * c3)) / 2
    return min(r1, r2, r3)


def draw_gaussian(heatmap: np.ndarray, x: int, y: int, radius: int) -> None:
    """Raise ``heatmap`` (h, w) in place to a Gaussian peak of 1 at (x, y), sigma = (2 * radius + 1) / 6."""
    sigma = (2 * radius + 1) / 6
    span = np.arange(-radius, radius + 1, dtype=np.float32)
    gaussian = np.exp(-(span[None, :] ** 2 + span[:, None] ** 2) / (2 * sigma * sigma))
    h, w = heatmap.shape
    left, right = min(x, radius), min(w - x, radius + 1)
    top, bottom = min(y, radius), min(h - y, radius + 1)
    region = heatmap[y - top : y + bottom, x - left : x + right]
    np.maximum(region, gaussian[radius - top : radius + bottom, radius - left : radius + right], out=region)


def build_targets(labels: torch.Tensor, batch: int, nc: int, shape: Tuple[int, int]) -> Targets:
    """CenterNet targets of one batch.

    Args:
        labels: (n, 6) rows ``image index, class, cx, cy, w, h``, coordinates normalised to the image
            (:meth:`TrainDataset.collate`'s output).
        batch: images in the batch.
        nc: number of classes.
        shape: heatmap (h, w).

    Returns:
        ``(heatmap (B, nc, h, w), image index (n,), row (n,), column (n,), wh (n, 2), offset (n, 2))``; the last
        five for the objects with a positive size, sizes and offsets in cells.
    """
    h, w = shape
    heatmap = np.zeros((batch, nc, h, w), np.float32)
    rows = labels.detach().cpu().numpy().astype(np.float64)
    rows = rows[(rows[:, 4] > 0) & (rows[:, 5] > 0)]
    centre = np.stack([rows[:, 2] * w, rows[:, 3] * h], 1)
    cell = np.minimum(np.floor(centre), [w - 1, h - 1]).astype(np.int64)
    size = np.stack([rows[:, 4] * w, rows[:, 5] * h], 1)
    for (b, c), (x, y), (bw, bh) in zip(rows[:, :2].astype(np.int64), cell, size):
        draw_gaussian(heatmap[b, c], int(x), int(y), max(0, int(gaussian_radius(bh, bw))))
    as_tensor = torch.from_numpy
    return (as_tensor(heatmap), as_tensor(rows[:, 0].astype(np.int64)), as_tensor(cell[:, 1]), as_tensor(cell[:, 0]),
            as_tensor(size.astype(np.float32)), as_tensor((centre - cell).astype(np.float32)))


class CenterNetLoss(nn.Module):
    """Focal loss on the heatmap + L1 on size and offset (see the module docstring).

    ``forward((hm logits, wh, reg), targets)`` -> ``(loss, parts (3,) = hm, wh, offset terms, detached)``.
    """

    def __init__(self, wh_weight: float = WH_WEIGHT, offset_weight: float = OFFSET_WEIGHT) -> None:
        super().__init__()
        self.wh_weight, self.offset_weight = wh_weight, offset_weight

    def forward(self, outputs: Tuple[torch.Tensor, torch.Tensor, torch.Tensor],
                targets: Targets) -> Tuple[torch.Tensor, torch.Tensor]:
        logits, wh, reg = (o.float() for o in outputs)
        heatmap, b, y, x, wh_t, offset_t = targets
        pos = heatmap.eq(1).float()
        p = logits.sigmoid()
        pos_term = F.logsigmoid(logits) * (1 - p) ** 2 * pos
        neg_term = F.logsigmoid(-logits) * p**2 * (1 - heatmap) ** 4 * (1 - pos)
        hm_loss = -(pos_term.sum() + neg_term.sum()) / pos.sum().clamp(min=1)
        if len(b):
            wh_loss = F.l1_loss(wh[b, :, y, x], wh_t)
            offset_loss = F.l1_loss(reg[b, :, y, x], offset_t)
        else:
            wh_loss = offset_loss = wh.sum() * 0
        parts = torch.stack((hm_loss, self.wh_weight * wh_loss, self.offset_weight * offset_loss))
        return parts.sum(), parts.detach()


class CenterNetTrainer(Trainer):
    """:class:`Trainer` for models ending in a CenterNet head: its recipe with :class:`CenterNetLoss`.

    ``results.csv`` logs ``hm_loss``, ``wh_loss`` and ``offset_loss``; ``resume`` works as for YOLO detectors.
    """

    loss_names = ("hm", "wh", "offset")
    loss_sums_images = False  # per-batch means: DDP's gradient average is already the global batch's

    def build_model(self, names: Tuple[str, ...]) -> nn.Module:
        """The model to train (see :meth:`Trainer.build_model`); it must end in a CenterNet head."""
        model = super().build_model(names)
        if getattr(model, "output_layout", "") != "centernet":
            cfg = self.config
            raise ValueError(f"{cfg.cfg or cfg.weights} has no CenterNet head; train it with lite_deploy.train.trainer")
        return model

    def make_loss(self, model: nn.Module) -> Callable[[Any, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
        """:class:`CenterNetLoss` on targets drawn at the model's output stride."""
        loss_fn = CenterNetLoss()

        def loss(outputs: Tuple[torch.Tensor, ...], labels: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
            batch, nc, h, w = outputs[0].shape  # heatmap logits at the output stride
            targets = build_targets(labels, batch, nc, (h, w))
            return loss_fn(outputs, tuple(t.to(self.device) for t in targets))

        return loss


def uses_centernet(cfg: Optional[str] = None, weights: Optional[str] = None) -> bool:
    """Whether the model of ``cfg`` (bundled name or yaml), else of the checkpoint ``weights``, is a CenterNet."""
    from ..models import load_model, load_yaml
    from ..models.centernet import CenterNetModel
    from ..models.yolo import model_class

    if cfg:
        return model_class(load_yaml(cfg)) is CenterNetModel
    return bool(weights) and Path(weights).is_file() and isinstance(load_model(weights), CenterNetModel)


def train_detector(config: Optional[TrainConfig] = None, *, resume: Optional[str] = None,
                   progress: bool = True) -> Dict[str, Any]:
    """:func:`lite_deploy.train.trainer.train` for every detector of the zoo: models ending in a CenterNet head
    train with :class:`CenterNetTrainer`, the others with :class:`~lite_deploy.train.trainer.Trainer`."""
    if resume:
        last = Path(resume) / "weights" / "last.pt" if Path(resume).is_dir() else Path(resume)
        trainer_class = CenterNetTrainer if uses_centernet(weights=str(last)) else Trainer
        return trainer_class.resume(resume, progress=progress).run()
    if config is None:
        raise ValueError("give a TrainConfig, or resume= an interrupted run")
    trainer_class = CenterNetTrainer if uses_centernet(config.cfg, config.weights) else Trainer
    return trainer_class(config, progress=progress).run()
