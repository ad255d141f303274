"""Training of the zoo's image classifiers on an image-folder dataset, with transfer learning from local weights.

Recipe: random resized crop (scale 0.25-1, aspect 3/4-4/3), left-right flip and HSV jitter for training; the
deployed pre-processing (resize, centre crop ``crop_fraction``, ImageNet normalisation) for validation. SGD with
Nesterov momentum or AdamW (no weight decay on biases and norm weights either way), cosine decay to ``lr0 * lrf``
after a linear warmup over the first epoch, cross-entropy with label smoothing, optionally an EMA of the weights.
Each epoch the model (its EMA when enabled) is saved as ``weights/last.pt`` in the project's checkpoint format and
validated through the runtime (:func:`~lite_deploy.eval.classify.validate_classifier`); ``weights/best.pt`` keeps the
best top-1.

Devices and processes as for detectors (:mod:`lite_deploy.train.distributed`): one CPU or GPU, or DDP processes
started by ``torchrun`` (``--device 0,1,2,3`` starts it), each training on its shard of every global batch.

``weights`` may be a torchvision ``.pth`` state_dict or a lite-deploy classifier checkpoint of the same
architecture: every tensor whose name and shape match is loaded, and a head for another number of classes is
reported as new (expected when fine-tuning on other classes).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import cv2
import numpy as np
import torch
from torch import nn

from ..data.image_folder import ImageFolder
from ..errors import CheckpointError, ConfigError
from ..runtime.pipeline.preprocess import center_crop
from .augment import augment_hsv
from .distributed import DistContext, context_from_env, init_process_group, resolve_device, shutdown
from .trainer import (
    STATE_SUFFIX,
    ModelEMA,
    append_csv_row,
    finish_run,
    lr_lambda,
    make_optimizer,
    new_run_dir,
    read_resume,
    write_state,
)

LOGGER = logging.getLogger(__name__)

CROP_SCALE = (0.25, 1.0)
CROP_RATIO = (3 / 4, 4 / 3)


@dataclass
class ClassifyConfig:
    """A classifier training run.

    Attributes:
        data: image-folder dataset root (``train/`` and ``val/``, one sub-folder per class).
        cfg: architecture, one of :func:`~lite_deploy.models.backbones.list_classifiers`.
        weights: starting weights: a torchvision ``.pth`` state_dict or a lite-deploy classifier checkpoint.
        epochs: training epochs.
        imgsz: square input size in pixels (a multiple of 32).
        batch: global batch: images per iteration over all DDP processes (each loads ``batch / world_size``).
        workers: DataLoader worker processes.
        project: folder of runs.
        name: run name; ``name2``, ``name3`` ... when taken.
        device: ``cpu``, ``0``, ``cuda:0`` ...; default CUDA when available; under ``torchrun`` a list (``0,1``)
            gives each process its GPU.
        seed: seed of initialisation, shuffling and augmentation.
        optimizer: ``SGD`` (Nesterov, ``momentum``) or ``AdamW`` (betas ``(momentum, 0.999)``, ``lr0`` about 0.002).
        lr0: peak learning rate.
        lrf: final learning rate as a fraction of ``lr0``.
        momentum: SGD momentum.
        weight_decay: weight decay of convolution and linear weights.
        label_smoothing: cross-entropy label smoothing.
        ema: validate and save an exponential moving average of the weights.
        val_batch: frames per validation call.
    """

    data: str
    cfg: str = "mobilenetv2"
    weights: Optional[str] = None
    epochs: int = 30
    imgsz: int = 224
    batch: int = 32
    workers: int = 2
    project: str = "runs/train-cls"
    name: str = "exp"
    device: Optional[str] = None
    seed: int = 0
    optimizer: str = "SGD"
    lr0: float = 0.01
    lrf: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 4e-5
    label_smoothing: float = 0.1
    ema: bool = False
    val_batch: int = 16

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data form (kept in ``last.pt`` to resume the run)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ClassifyConfig":
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def random_resized_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``CROP_SCALE`` of the area and ``CROP_RATIO`` aspect, resized to ``size`` x ``size``
    (torchvision's ``RandomResizedCrop``; the centre crop after 10 failed draws)."""
    h, w = image.shape[:2]
    for _ in range(10):
        area = h * w * rng.uniform(*CROP_SCALE)
        aspect = math.exp(rng.uniform(*np.log(CROP_RATIO)))
        cw, ch = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
            return cv2.resize(image[top : top + ch, left : left + cw], (size, size), interpolation=cv2.INTER_LINEAR)
    return center_crop(image, (size, size), 1.0)


class ClassifyDataset(torch.utils.data.Dataset):
    """``(image (3, imgsz, imgsz) uint8 RGB, class id)`` items of an :class:`ImageFolder` split.

    Args:
        folder: the split.
        imgsz: output side in pixels.
        augment: training augmentation; without it the runtime's centre crop.
        crop_fraction: centre crop of the resized short side (the spec's ``crop_fraction``).
    """

    def __init__(self, folder: ImageFolder, imgsz: int, augment: bool, crop_fraction: float = 0.875) -> None:
        self.folder, self.imgsz, self.augment, self.crop_fraction = folder, imgsz, augment, crop_fraction

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, int]:
        image = self.folder.load_image(index)
        if self.augment:
            rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, ()).item()))
            image = random_resized_crop(image, self.imgsz, rng)
            if rng.random() < 0.5:
                image = np.ascontiguousarray(image[:, ::-1])
            augment_hsv(image, rng, 0.015, 0.4, 0.3)
        else:
            image = center_crop(image, (self.imgsz, self.imgsz), self.crop_fraction)
        chw = np.ascontiguousarray(image[:, :, ::-1].transpose(2, 0, 1))
        return torch.from_numpy(chw), self.folder.samples[index][1]


def load_start_weights(model: nn.Module, path: str) -> str:
    """Load ``path`` (torchvision ``.pth`` or lite-deploy checkpoint) into ``model``; returns the report text.

    Raises:
        CheckpointError: the file cannot be read or holds another architecture.
    """
    from ..models.archive import check_weights_file
    from ..models.backbones import load_torchvision_backbone
    from ..models.checkpoint import FORMAT

    try:
        check_weights_file(path)  # a TorchScript archive is refused before torch.load sees it
    except CheckpointError as exc:
        raise CheckpointError(f"--weights {path}: {exc}") from None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # not a tensor-only file: read_state_dict below says what it is not
        ckpt = None
    source = ckpt["state_dict"] if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT else path
    try:
        report = load_torchvision_backbone(model, source, strict=False)
    except CheckpointError as exc:
        raise CheckpointError(f"--weights {path}: {exc}") from None
    if not report.ok:
        arch = model.config.get("arch", type(model).__name__)
        raise CheckpointError(
            f"--weights {path} does not fit {arch}: {len(report.missing)} of its tensors are missing and "
            f"{len(report.mismatched)} have another shape; give weights of the same architecture and width"
        )
    text = report.summary()
    if report.new:
        text += f"\nthe classifier head is new for the dataset's {model.num_classes} classes (expected when " \
                "fine-tuning)"
    return text


def train_classifier(config: Optional[ClassifyConfig] = None, *, resume: Optional[str] = None,
                     progress: bool = True) -> Dict[str, Any]:
    """Train a classifier, or continue an interrupted run; see the module docstring for the recipe.

    Args:
        config: the run (ignored when resuming).
        resume: an interrupted run's folder or its ``weights/last.pt``: training goes on from the epoch after the
            last one saved, with that run's config, weights, optimizer, schedule and EMA, in the same folder.
        progress: show a progress bar per epoch.

    Under ``torchrun`` (``WORLD_SIZE`` > 1) every process trains on its shard of each global batch of
    ``config.batch`` images and DDP averages the gradients, as the detector trainer does; rank 0 alone keeps the EMA,
    validates and writes the run folder while the others wait. The process group is left on every exit.

    Returns:
        The last validation results (``top1``, ``top5`` ...) with ``save_dir``, ``best``, ``last``, ``best_top1``
        and ``weights_report`` (the partial-load report of ``weights``, or ``""``); an empty dict on the other DDP
        ranks.

    Raises:
        DatasetError: the dataset is malformed (missing split, empty class folder, no images).
        CheckpointError: ``weights`` cannot be read or belong to another architecture; ``resume`` is not an
            unfinished classifier run.
        ConfigError: unknown architecture, or a global batch that the processes cannot share evenly.
        ValueError: ``imgsz`` not a multiple of 32, or neither ``config`` nor ``resume`` given.
    """
    run, state = None, None
    if resume is not None:
        last, args, state = read_resume(resume, "classify")
        config, run = ClassifyConfig.from_dict(args), last.parent.parent
    if config is None:
        raise ValueError("train_classifier needs a config or a run to resume")
    if config.imgsz % 32:
        raise ValueError(f"imgsz {config.imgsz} must be a multiple of 32")
    ctx = context_from_env()
    device = resolve_device(config.device, ctx)
    if config.batch % ctx.world_size:
        raise ConfigError(f"--batch {config.batch} is the global batch: make it a multiple of the "
                          f"{ctx.world_size} training processes")
    if ctx.distributed:
        init_process_group(ctx, device)
    try:
        return _train(config, ctx, device, progress, run, state)
    finally:
        shutdown()


def _train(cfg: ClassifyConfig, ctx: DistContext, device: torch.device, progress: bool, run: Optional[Path],
           state: Optional[Dict[str, Any]]) -> Dict[str, Any]:
    """The training loop; ``run`` and ``state`` are those of a resumed run (else None)."""
    from torch.nn.parallel import DistributedDataParallel
    from torch.utils.data import DataLoader, DistributedSampler
    from tqdm import tqdm

    from ..models.backbones import build_classifier

    train_set, val_set = ImageFolder(cfg.data, "train"), ImageFolder(cfg.data, "val")
    torch.manual_seed(cfg.seed)
    try:
        model = build_classifier(cfg.cfg, num_classes=train_set.nc, names=train_set.names)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    model.imgsz = cfg.imgsz
    report = load_start_weights(model, cfg.weights) if cfg.weights and state is None else ""
    if state is not None:
        model.load_state_dict(state["model"])
    if report and ctx.is_main:
        LOGGER.info("%s: %s", cfg.weights, report)
    model.to(device)
    torch.manual_seed(cfg.seed + ctx.rank)  # each rank its own augmentation draws
    save_dir = (run or new_run_dir(cfg.project, cfg.name)) if ctx.is_main else None
    dataset = ClassifyDataset(train_set, cfg.imgsz, augment=True)
    sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True, seed=cfg.seed)
    batch = cfg.batch // ctx.world_size
    loader = DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=cfg.workers,
                        persistent_workers=cfg.workers > 0, pin_memory=device.type == "cuda",
                        drop_last=len(sampler) > batch)
    optimizer = make_optimizer(model, cfg.lr0, cfg.momentum, cfg.weight_decay, cfg.optimizer)
    lf = lr_lambda(cfg.epochs, cfg.lrf, cosine=True)
    warmup = len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: min(1.0, (it + 1) / warmup) * lf(it / len(loader)))
    criterion = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)  # a per-batch mean: DDP's average of the
    # ranks' gradients is the global batch's
    ema = ModelEMA(model) if cfg.ema and ctx.is_main else None
    train_model: nn.Module = model
    if ctx.distributed:
        train_model = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    mean = torch.tensor(model.mean, device=device).view(1, 3, 1, 1)
    std = torch.tensor(model.std, device=device).view(1, 3, 1, 1)
    amp = device.type == "cuda"
    start_epoch, best_top1, results = 0, -1.0, {}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if ema is not None and state["ema"] is not None:
            ema.ema.load_state_dict(state["ema"])
            ema.updates = int(state["ema_updates"])
        start_epoch, best_top1 = int(state["epoch"]) + 1, float(state["best_top1"])
    if ctx.is_main:
        LOGGER.info("training %s for %d epochs on %s x %d (%d images, %d classes, global batch %d), results in %s",
                    cfg.cfg, cfg.epochs, device.type, ctx.world_size, len(train_set), train_set.nc, cfg.batch,
                    save_dir)
        if state is not None:
            LOGGER.info("resuming %s from epoch %d", save_dir, start_epoch + 1)
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        sampler.set_epoch(epoch)
        mean_loss, start = 0.0, time.perf_counter()
        bar = tqdm(loader, disable=not (progress and ctx.is_main), desc=f"{epoch + 1}/{cfg.epochs}",
                   bar_format="{l_bar}{bar:10}{r_bar}")
        for i, (images, labels) in enumerate(bar):
            images = (images.to(device, non_blocking=True).float() / 255 - mean) / std
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss = criterion(train_model(images).float(), labels.to(device))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(model)
            mean_loss = (mean_loss * i + loss.item()) / (i + 1)
            bar.set_postfix(loss=f"{mean_loss:.4f}")
        seconds = time.perf_counter() - start
        if save_dir is not None:
            kept = ema.ema if ema is not None else model
            results, best_top1 = _end_epoch(cfg, kept, val_set, save_dir, epoch, mean_loss, best_top1,
                                            optimizer.param_groups[1]["lr"], seconds)
            write_state(save_dir / "weights" / f"last{STATE_SUFFIX}", {
                "epoch": epoch, "best_top1": best_top1, "model": model.state_dict(),
                "ema": None if ema is None else ema.ema.state_dict(), "ema_updates": 0 if ema is None else ema.updates,
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()})
        if ctx.distributed:
            torch.distributed.barrier()  # the others wait while rank 0 validates and writes
    if save_dir is None:
        return {}
    finish_run(save_dir)
    weights_dir = save_dir / "weights"
    return dict(results, save_dir=str(save_dir), best=str(weights_dir / "best.pt"), last=str(weights_dir / "last.pt"),
                best_top1=best_top1, weights_report=report)


def _end_epoch(cfg: ClassifyConfig, kept: nn.Module, val_set: ImageFolder, save_dir: Path, epoch: int,
               mean_loss: float, best_top1: float, lr: float, seconds: float) -> Tuple[Dict[str, Any], float]:
    """Rank 0 after an epoch: save ``last.pt``, validate it, keep ``best.pt``, log; returns the validation results
    and the best top-1 so far. ``mean_loss`` is this rank's mean over its shard."""
    from ..eval.classify import validate_classifier
    from ..models.checkpoint import save_checkpoint

    weights_dir = save_dir / "weights"
    provenance = {"data": str(Path(cfg.data).resolve()), "cfg": cfg.cfg, "weights": cfg.weights,
                  "epoch": epoch + 1, "epochs": cfg.epochs}
    save_checkpoint(kept, weights_dir / "last.pt", imgsz=cfg.imgsz, provenance=provenance,
                    extra={"train_config": cfg.to_dict()})
    results = validate_classifier(weights_dir / "last.pt", val_set, imgsz=cfg.imgsz, batch=cfg.val_batch,
                                  progress=False, verbose=False)
    if results["top1"] > best_top1:
        best_top1 = results["top1"]
        metrics = {k: results[k] for k in ("images", "top1", "top5")}
        save_checkpoint(kept, weights_dir / "best.pt", imgsz=cfg.imgsz, provenance=dict(provenance, metrics=metrics))
    append_csv_row(save_dir / "results.csv", {"epoch": epoch + 1, "loss": round(mean_loss, 6),
                                             "top1": round(results["top1"], 6), "top5": round(results["top5"], 6),
                                             "lr": round(lr, 8), "train_seconds": round(seconds, 2)})
    LOGGER.info("epoch %d/%d: loss %.4f top-1 %.4f top-5 %.4f (%.0f s training)", epoch + 1, cfg.epochs,
                mean_loss, results["top1"], results["top5"], seconds)
    return results, best_top1
