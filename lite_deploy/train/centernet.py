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

import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .classify import append_csv_row
from .trainer import MAX_GRAD_NORM, STATE_SUFFIX, ModelEMA, TrainConfig, Trainer, fitness, lr_lambda, make_optimizer

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

    def run(self) -> Dict[str, Any]:
        """Train; returns the final validation results plus ``save_dir``, ``best`` and ``last`` paths."""
        from torch.utils.data import DataLoader
        from tqdm import tqdm

        from ..data.yolo import YoloDataset, load_data_config
        from ..eval.validate import validate
        from .data import TrainDataset

        cfg = self.config
        torch.manual_seed(cfg.seed)
        data = load_data_config(cfg.data)
        train_set = YoloDataset(data.splits["train"], data.names, what=f"{data.yaml_path} [train]")
        val_set = YoloDataset(data.splits["val"], data.names, what=f"{data.yaml_path} [val]")
        model = self.build_model(data.names)
        if getattr(model, "output_layout", "") != "centernet":
            raise ValueError(f"{cfg.cfg or cfg.weights} has no CenterNet head; train it with lite_deploy.train.trainer")
        if self._resume_state is None:
            self.save_dir = self._new_save_dir()
        weights_dir = self.save_dir / "weights"
        dataset = TrainDataset(train_set, cfg.imgsz, augment=True, config=cfg.augment)
        loader = DataLoader(
            dataset, batch_size=cfg.batch, shuffle=True, num_workers=cfg.workers, collate_fn=TrainDataset.collate,
            persistent_workers=cfg.workers > 0, generator=torch.Generator().manual_seed(cfg.seed + self.start_epoch),
        )
        nb = len(loader)
        accumulate = max(round(cfg.nominal_batch / cfg.batch), 1)
        optimizer = make_optimizer(model, cfg.lr0, cfg.momentum,
                                   cfg.weight_decay * cfg.batch * accumulate / cfg.nominal_batch)
        lf = lr_lambda(cfg.epochs, cfg.lrf, cfg.cos_lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
        ema = ModelEMA(model)
        if self._resume_state is not None:
            optimizer.load_state_dict(self._resume_state["optimizer"])
            ema.ema.load_state_dict(self._resume_state["ema"])
            ema.updates = int(self._resume_state["ema_updates"])
            scheduler.last_epoch = self.start_epoch - 1
        loss_fn = CenterNetLoss()
        nc, out_stride = len(data.names), model.output_stride
        amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        warmup_iters = max(round(cfg.warmup_epochs * nb), 100) if cfg.warmup_epochs > 0 else -1
        last_step = -1
        results: Dict[str, Any] = {}
        LOGGER.info("training %s (CenterNet) for %d epochs on %s (%d images, batch %d x %d accumulated), results in %s",
                    cfg.cfg or cfg.weights, cfg.epochs, self.device, len(train_set), cfg.batch, accumulate,
                    self.save_dir)
        for epoch in range(self.start_epoch, cfg.epochs):
            model.train()
            if cfg.close_mosaic and epoch == cfg.epochs - cfg.close_mosaic:
                dataset.config = dataclasses.replace(cfg.augment, mosaic=0.0)
            mean_loss = torch.zeros(3)
            optimizer.zero_grad()
            start = time.perf_counter()
            bar = tqdm(loader, total=nb, disable=not self.progress, desc=f"{epoch + 1}/{cfg.epochs}",
                       bar_format="{l_bar}{bar:10}{r_bar}")
            for i, (images, labels) in enumerate(bar):
                ni = i + nb * epoch
                images = images.to(self.device, non_blocking=True).float() / 255
                shape = (images.shape[2] // out_stride, images.shape[3] // out_stride)
                targets = tuple(t.to(self.device) for t in build_targets(labels, len(images), nc, shape))
                if ni <= warmup_iters:
                    accumulate = self._warmup(optimizer, ni, warmup_iters, lf(epoch), cfg.batch)
                with torch.autocast(self.device.type, enabled=amp):
                    outputs = model(images)
                loss, parts = loss_fn(outputs, targets)
                scaler.scale(loss).backward()
                if ni - last_step >= accumulate:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_GRAD_NORM)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad()
                    ema.update(model)
                    last_step = ni
                mean_loss = (mean_loss * i + parts.cpu()) / (i + 1)
                bar.set_postfix(hm=f"{mean_loss[0]:.4f}", wh=f"{mean_loss[1]:.4f}", off=f"{mean_loss[2]:.4f}",
                                inst=int(labels.shape[0]))
            scheduler.step()
            train_seconds = time.perf_counter() - start
            self._save(ema, model, optimizer, epoch, {}, improved=False)
            if (epoch + 1) % max(cfg.val_every, 1) and epoch + 1 < cfg.epochs:
                LOGGER.info("epoch %d/%d: %.0f s training", epoch + 1, cfg.epochs, train_seconds)
                continue
            results = validate(str(weights_dir / "last.pt"), val_set, imgsz=cfg.imgsz, batch=cfg.val_batch,
                               progress=self.progress, verbose=False)
            improved = fitness(results) > self.best_fitness
            self.best_fitness = max(fitness(results), self.best_fitness)
            self._log(epoch, mean_loss, results, optimizer, train_seconds)
            self._save(ema, model, optimizer, epoch, results, improved)
            LOGGER.info("epoch %d/%d: P %.3f R %.3f mAP50 %.3f mAP50-95 %.3f (%.0f s training)", epoch + 1,
                        cfg.epochs, results["precision"], results["recall"], results["map50"],
                        results["map50_95"], train_seconds)
        state = weights_dir / f"last{STATE_SUFFIX}"
        if state.exists():
            state.unlink()
        if (weights_dir / "best.pt").exists():
            best = validate(str(weights_dir / "best.pt"), val_set, imgsz=cfg.imgsz, batch=cfg.val_batch,
                            plots=self.save_dir, progress=False, verbose=True)
            LOGGER.info("best.pt: mAP50 %.3f mAP50-95 %.3f", best["map50"], best["map50_95"])
        return dict(results, save_dir=str(self.save_dir), best=str(weights_dir / "best.pt"),
                    last=str(weights_dir / "last.pt"))

    def _log(self, epoch: int, loss: torch.Tensor, results: Dict[str, Any], optimizer: torch.optim.Optimizer,
             seconds: float) -> None:
        """Append the epoch's row to ``results.csv`` (loss columns ``hm_loss``, ``wh_loss``, ``offset_loss``)."""
        row = {"epoch": epoch + 1, **{f"{k}_loss": round(float(v), 6) for k, v in zip(("hm", "wh", "offset"), loss)},
               **{k: round(results[k], 6) for k in ("precision", "recall", "map50", "map50_95")},
               "lr": round(optimizer.param_groups[1]["lr"], 8), "train_seconds": round(seconds, 2)}
        append_csv_row(self.save_dir / "results.csv", row)


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
