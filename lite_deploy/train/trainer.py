"""Training loop for the zoo's detectors, with YOLOv5's recipe.

SGD (momentum 0.937, Nesterov) with three parameter groups (biases and norm weights without weight decay; decay
scaled by the effective batch over ``nominal_batch``), gradient accumulation to ``nominal_batch`` images (64, as
YOLOv5; on small datasets a smaller one gives more optimizer steps per epoch), a warmup of ``warmup_epochs``
(at least 100 iterations) in which the bias learning rate falls from ``warmup_bias_lr`` and the others rise from 0
while momentum rises from ``warmup_momentum``, then a linear (or cosine) decay to ``lr0 * lrf``; gradient norm
clipped at 10; an exponential moving average of the weights (decay ``0.9999 * (1 - exp(-updates / 2000))``) that
is validated and saved. Mixed precision on CUDA only.

Devices and processes (:mod:`lite_deploy.train.distributed`): one CPU or GPU, or DDP processes started by
``torchrun``. ``batch`` is the global batch: each of the ``world_size`` processes loads ``batch / world_size``
images per iteration from its shard of a :class:`~torch.utils.data.DistributedSampler` (reshuffled each epoch with
``set_epoch``), DDP sums the shards' gradients (the YOLO loss is a per-image sum, so each process's loss is scaled
by ``world_size`` against DDP's averaging), and accumulation to ``nominal_batch`` counts global batches. Rank 0
alone keeps the EMA, validates and writes files; the others wait at a barrier. Every rank resumes from the same
``last.pt``. ``sync_bn`` turns BatchNorm into SyncBatchNorm (GPUs only) so statistics span the global batch.

Transfer learning: ``backbone_weights`` loads a torchvision ImageNet ``.pth`` into the backbone layers
(:func:`~lite_deploy.models.backbones.load_torchvision_backbone`, which reports what was loaded and what stays
random); ``freeze`` (``"backbone"`` or the first ``N`` yaml layers) keeps those parameters out of every optimizer
step, for ``freeze_epochs`` epochs or, with 0, the whole run. Frozen parameters get no update at all (no
momentum, no weight decay); their BatchNorm running statistics still follow the data, as in YOLOv5.

Each epoch the EMA model is written to ``weights/last.pt`` in the project's checkpoint format and that file is
validated exactly as ``lite-deploy val`` does it (the runtime's ``.pt`` backend: export-mode model, the runtime's
letterbox, decoding and NMS, conf 0.001, IoU 0.6); ``weights/best.pt`` keeps the epoch of best fitness
(``0.1 * mAP50 + 0.9 * mAP50-95``). ``weights/last.state.pt`` keeps
the raw weights, optimizer and EMA state so an interrupted run can be resumed; it is removed when a run ends.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import io
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import nn

from ..data.yolo import YoloDataset, load_data_config
from ..errors import CheckpointError, ConfigError
from ..io import atomic_write_bytes
from .data import AugmentConfig, TrainDataset
from .distributed import DistContext, context_from_env, init_process_group, resolve_device, shutdown
from .loss import ANCHOR_T, BOX_GAIN, CLS_GAIN, OBJ_GAIN, DetectionLoss, scaled_loss_gains

LOGGER = logging.getLogger(__name__)

MAX_GRAD_NORM = 10.0
STATE_SUFFIX = ".state.pt"


@dataclass
class TrainConfig:
    """Everything a training run needs; saved into its checkpoints so ``resume`` can rebuild it.

    Attributes:
        data: YOLO ``data.yaml``.
        cfg: model config (bundled name or yaml path); default: the architecture of ``weights``.
        weights: starting checkpoint (this project's, YOLOv5's or slim-neck's); tensors of matching name and
            shape are transferred, so the class count may differ.
        epochs: training epochs.
        imgsz: square training and validation size in pixels (a multiple of the model stride).
        batch: images per iteration, over all processes (the global batch; a multiple of the process count).
        workers: DataLoader worker processes (per training process).
        project: folder of runs.
        name: run name; ``name``, ``name2``, ... when taken.
        device: ``cpu``, ``0``, ``cuda:0``, or under torchrun ``0,1,...`` (one GPU per local rank); default the
            local rank's CUDA GPU when available.
        seed: seed of weights init, shuffling and augmentation.
        optimizer: ``SGD`` or ``AdamW``.
        lr0: initial learning rate.
        lrf: final learning rate as a fraction of ``lr0``.
        cos_lr: cosine instead of linear decay.
        momentum: SGD momentum.
        weight_decay: weight decay at a batch of 64.
        nominal_batch: images whose gradients are accumulated into one optimizer step (at least ``batch``).
        warmup_epochs: warmup length in epochs (at least 100 iterations).
        warmup_momentum: momentum at the start of the warmup.
        warmup_bias_lr: bias learning rate at the start of the warmup.
        box: box loss gain (before scaling by levels).
        cls: class loss gain (before scaling by classes and levels).
        obj: objectness loss gain (before scaling by image size and levels).
        anchor_t: largest target/anchor size ratio.
        augment: augmentation strengths.
        close_mosaic: turn mosaic off for this many final epochs.
        ema_tau: optimizer steps over which the weight average's decay ramps up to 0.9999 (YOLOv5: 2000, which
            suits runs of many thousand steps; a short run wants a fraction of its steps).
        val_batch: frames per validation call.
        val_every: validate (and consider for ``best.pt``) every this many epochs, and always after the last.
        backbone_weights: torchvision ImageNet ``.pth`` state_dict loaded into the backbone (a new run only).
        freeze: ``"backbone"`` or ``"N"``: the parameters of the model's first N yaml layers are not trained.
        freeze_epochs: epochs the freeze lasts; 0: the whole run.
        sync_bn: SyncBatchNorm across the DDP processes (CUDA only).
    """

    data: str
    cfg: Optional[str] = None
    weights: Optional[str] = None
    epochs: int = 100
    imgsz: int = 320
    batch: int = 16
    workers: int = 2
    project: str = "runs/train"
    name: str = "exp"
    device: Optional[str] = None
    seed: int = 0
    optimizer: str = "SGD"
    lr0: float = 0.01
    lrf: float = 0.01
    cos_lr: bool = False
    momentum: float = 0.937
    weight_decay: float = 5e-4
    nominal_batch: int = 64
    warmup_epochs: float = 3.0
    warmup_momentum: float = 0.8
    warmup_bias_lr: float = 0.1
    box: float = BOX_GAIN
    cls: float = CLS_GAIN
    obj: float = OBJ_GAIN
    anchor_t: float = ANCHOR_T
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    close_mosaic: int = 0
    ema_tau: float = 2000.0
    val_batch: int = 8
    val_every: int = 1
    backbone_weights: Optional[str] = None
    freeze: Optional[str] = None
    freeze_epochs: int = 0
    sync_bn: bool = False

    def to_dict(self) -> Dict[str, Any]:
        """Plain-data form."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "TrainConfig":
        """Inverse of :meth:`to_dict` (unknown keys are ignored)."""
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["augment"] = AugmentConfig(**values.get("augment", {}))
        return cls(**values)


class ModelEMA:
    """Exponential moving average of a model's floating-point state (YOLOv5 ``ModelEMA``).

    Args:
        model: the model being trained.
        decay: the asymptotic decay.
        tau: ramp of the decay: ``decay * (1 - exp(-updates / tau))``, so early weights fade fast.
        updates: updates already made (when resuming).
    """

    def __init__(self, model: nn.Module, decay: float = 0.9999, tau: float = 2000, updates: int = 0) -> None:
        import copy

        self.ema = copy.deepcopy(model).eval()
        self.updates = updates
        self.decay = decay
        self.tau = tau
        for p in self.ema.parameters():
            p.requires_grad_(False)

    def update(self, model: nn.Module) -> None:
        """Blend ``model``'s current state into the average."""
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.tau))
        state = model.state_dict()
        with torch.no_grad():
            for k, v in self.ema.state_dict().items():
                if v.dtype.is_floating_point:
                    v.mul_(d).add_(state[k].detach(), alpha=1 - d)


def make_optimizer(model: nn.Module, lr: float, momentum: float, weight_decay: float,
                   algorithm: str = "SGD") -> torch.optim.Optimizer:
    """An optimizer with three groups: biases, decayed weights, norm-layer weights (YOLOv5 order).

    Args:
        algorithm: ``SGD`` (Nesterov, ``momentum``) or ``AdamW`` (betas ``(momentum, 0.999)``).

    Only group 1 (weights of convolutions and linear layers) gets ``weight_decay``.
    """
    biases, decayed, norm_weights = [], [], []
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name == "bias":
                biases.append(p)
            elif name == "weight" and isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)):
                norm_weights.append(p)
            else:
                decayed.append(p)
    if algorithm == "SGD":
        optimizer: torch.optim.Optimizer = torch.optim.SGD(biases, lr=lr, momentum=momentum, nesterov=True)
    elif algorithm == "AdamW":
        optimizer = torch.optim.AdamW(biases, lr=lr, betas=(momentum, 0.999), weight_decay=0.0)
    else:
        raise ValueError(f"unknown optimizer {algorithm!r}; use SGD or AdamW")
    optimizer.add_param_group({"params": decayed, "weight_decay": weight_decay})
    optimizer.add_param_group({"params": norm_weights, "weight_decay": 0.0})
    return optimizer


def lr_lambda(epochs: int, lrf: float, cosine: bool):
    """Learning-rate factor per epoch: linear from 1 to ``lrf``, or half a cosine from 1 to ``lrf``."""
    if cosine:
        return lambda x: ((1 - math.cos(x * math.pi / epochs)) / 2) * (lrf - 1) + 1
    return lambda x: (1 - x / epochs) * (1.0 - lrf) + lrf


def transfer_weights(model: nn.Module, source: Dict[str, torch.Tensor], skip_anchors: bool) -> Tuple[int, List[str]]:
    """Copy the tensors of ``source`` whose name and shape match into ``model``.

    Args:
        model: the model to fill.
        source: a state dict (e.g. of a checkpoint trained on other classes).
        skip_anchors: keep ``model``'s own anchors (its config gave them).

    Returns:
        ``(number transferred, names of model tensors left as initialised)``.
    """
    own = model.state_dict()
    take = {
        k: v for k, v in source.items()
        if k in own and v.shape == own[k].shape and not (skip_anchors and k.endswith(".anchors"))
    }
    model.load_state_dict(take, strict=False)
    return len(take), [k for k in own if k not in take]


def frozen_layers(model: nn.Module, freeze: Optional[str]) -> int:
    """How many leading yaml layers ``freeze`` names: ``"backbone"`` -> the yaml's backbone length, ``"N"`` -> N.

    Raises:
        ConfigError: ``freeze`` is neither, or N leaves no layer to train.
    """
    if not freeze:
        return 0
    layers = len(model.model)
    count = len(model.yaml["backbone"]) if freeze == "backbone" else int(freeze) if freeze.isdigit() else -1
    if not 0 < count < layers:
        raise ConfigError(f"--freeze {freeze!r}: give 'backbone' or a layer count from 1 to {layers - 1} "
                          f"(this model has {layers} yaml layers)")
    return count


def new_run_dir(project: str, name: str) -> Path:
    """A fresh ``project/name`` folder (``name2``, ``name3`` ... when taken) with a ``weights`` sub-folder."""
    base = Path(project) / name
    path, n = base, 2
    while path.exists():
        path, n = base.with_name(f"{base.name}{n}"), n + 1
    (path / "weights").mkdir(parents=True)
    return path


def read_resume(last: str, task: str) -> Tuple[Path, Dict[str, Any], Dict[str, Any]]:
    """What an interrupted run left to continue from: its ``weights/last.pt`` (``last`` is that file or the run
    folder), the training config kept in it, and the optimizer / schedule state of ``last.state.pt`` beside it.

    Args:
        last: the run's ``weights/last.pt`` or its run folder.
        task: the run's task, ``detect`` or ``classify`` (the checkpoint's must match).

    Returns:
        ``(path of last.pt, training config as plain data, state)``.

    Raises:
        CheckpointError: no ``last.pt``, not the last.pt of an unfinished lite-deploy run, a run of another task, or
            a run with no epoch left.
    """
    from ..models.archive import check_weights_file

    path = Path(last)
    if path.is_dir():
        path = path / "weights" / "last.pt"
    if not path.is_file():
        raise CheckpointError(f"{last}: no last.pt to resume from; give a run folder or its weights/last.pt")
    check_weights_file(path)  # a TorchScript archive is refused in one sentence before torch sees it
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    args = (ckpt.get("extra") or {}).get("train_config") if isinstance(ckpt, dict) else None
    state_path = path.with_name(path.stem + STATE_SUFFIX)
    if not args or not state_path.is_file():
        raise CheckpointError(
            f"{path} cannot be resumed: it is not the last.pt of an unfinished lite-deploy training run "
            f"(its {state_path.name} is missing); start a new run with --weights {path}"
        )
    if ckpt.get("task", "detect") != task:
        option = "--task classify " if ckpt.get("task") == "classify" else ""
        raise CheckpointError(f"{path} is the last.pt of a {ckpt.get('task')} run: resume it with "
                              f"lite-deploy train {option}--resume {last}")
    state = torch.load(state_path, map_location="cpu", weights_only=True)
    if int(state["epoch"]) + 1 >= int(args["epochs"]):  # stopped between the last epoch's save and the run's end
        raise CheckpointError(f"{path}: the run already trained all its {args['epochs']} epochs; use its weights "
                              f"(best.pt, last.pt), or start a new run with --weights {path}")
    return path, args, state


def write_state(path: Path, state: Dict[str, Any]) -> None:
    """Write what resuming needs besides ``last.pt`` (epoch, weights, EMA, optimizer ...), atomically."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def append_csv_row(path: Path, row: Dict[str, Any]) -> None:
    """Append ``row`` to the CSV file ``path``, writing the header first when the file is new."""
    new = not path.exists()
    with path.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(row))
        if new:
            writer.writeheader()
        writer.writerow(row)


def finish_run(run: Path) -> None:
    """Close a run that trained all its epochs: drop its resume state (a finished run is not resumed) and draw
    ``run/results.png`` from ``run/results.csv`` (the curves of every logged epoch), when it has rows."""
    from ..eval.plots import plot_results

    (run / "weights" / f"last{STATE_SUFFIX}").unlink(missing_ok=True)
    table = run / "results.csv"
    if table.is_file() and len(table.read_text().splitlines()) > 1:
        LOGGER.info("training curves: %s", plot_results(table, run / "results.png"))


def fitness(metrics: Dict[str, Any]) -> float:
    """YOLOv5's model selection score: ``0.1 * mAP50 + 0.9 * mAP50-95``."""
    return 0.1 * max(metrics["map50"], 0.0) + 0.9 * max(metrics["map50_95"], 0.0)


class Trainer:
    """One training run (see the module docstring for the recipe).

    Args:
        config: the run's settings.
        progress: show progress bars.
    """

    def __init__(self, config: TrainConfig, *, progress: bool = True) -> None:
        self.config = config
        self.progress = progress
        self.ctx: DistContext = context_from_env()
        self.device = resolve_device(config.device, self.ctx)
        self.save_dir: Path = Path()
        self.start_epoch = 0
        self.best_fitness = -1.0
        self._resume_state: Optional[Dict[str, Any]] = None

    @classmethod
    def resume(cls, last: str, *, progress: bool = True) -> "Trainer":
        """A trainer continuing the run whose ``weights/last.pt`` is ``last`` (or whose run folder it is).

        Raises:
            CheckpointError: ``last`` is not a lite-deploy training checkpoint or its state file is missing.
        """
        path, args, state = read_resume(last, "detect")
        trainer = cls(TrainConfig.from_dict(args), progress=progress)
        trainer.save_dir = path.parent.parent
        trainer._resume_state = state
        trainer.start_epoch = int(trainer._resume_state["epoch"]) + 1
        trainer.best_fitness = float(trainer._resume_state["best_fitness"])
        return trainer

    # ------------------------------------------------------------------------------------------------------------

    loss_names: Tuple[str, ...] = ("box", "obj", "cls")  # the parts of the loss, as logged
    loss_sums_images = True  # the loss is a sum over the batch's images (scaled by world_size under DDP)

    def make_loss(self, model: nn.Module) -> Callable[[Any, torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]:
        """The training loss: ``(model outputs, labels) -> (loss, parts)``.

        ``labels`` is (n, 6) rows ``image index, class, cx, cy, w, h`` normalised to the batch's images; ``parts``
        holds one detached value per :attr:`loss_names`.
        """
        cfg = self.config
        head = model.model[-1]
        loss_fn = DetectionLoss(model, scaled_loss_gains(head.nl, head.nc, cfg.imgsz, cfg.box, cfg.cls, cfg.obj),
                                anchor_t=cfg.anchor_t)
        return lambda outputs, labels: loss_fn(outputs, labels.to(self.device))

    def build_model(self, names: Tuple[str, ...]) -> nn.Module:
        """The model to train: from ``cfg`` and/or ``weights``, with ``len(names)`` classes."""
        from ..models import build_model, load_model

        cfg, weights = self.config.cfg, self.config.weights
        if self._resume_state is not None:
            model = build_model(load_model(self.save_dir / "weights" / "last.pt").yaml, nc=len(names))
            model.load_state_dict(self._resume_state["model"])
        elif weights:
            source = load_model(weights)
            model = build_model(cfg if cfg else source.yaml, nc=len(names))
            count, fresh = transfer_weights(model, source.state_dict(), skip_anchors=bool(cfg))
            LOGGER.info("transferred %d/%d tensors from %s", count, len(model.state_dict()), weights)
            if fresh:
                LOGGER.info("initialised anew (shape or name differs): %s", ", ".join(fresh[:12])
                            + (f" and {len(fresh) - 12} more" if len(fresh) > 12 else ""))
        elif cfg:
            model = build_model(cfg, nc=len(names))
        else:
            raise ValueError("give a model config (--cfg) or starting weights (--weights)")
        if getattr(model, "task", "") != "detect":
            raise ValueError(f"{cfg or weights} is not a detector; train classifiers elsewhere")
        if self.config.backbone_weights and self._resume_state is None:
            from ..models.backbones import load_torchvision_backbone

            try:
                report = load_torchvision_backbone(model, self.config.backbone_weights)
            except ValueError as exc:  # the model has no torchvision backbone layers
                raise ConfigError(f"--backbone-weights: {exc}") from None
            if self.ctx.is_main:
                LOGGER.info("backbone weights %s: %s", self.config.backbone_weights, report.summary())
        model.names = dict(enumerate(names))
        stride = int(max(model.stride))
        if self.config.imgsz % stride:
            raise ValueError(f"imgsz {self.config.imgsz} must be a multiple of the model's stride {stride}")
        return model.to(self.device, memory_format=torch.channels_last)

    def run(self) -> Dict[str, Any]:
        """Train; returns the final validation results plus ``save_dir``, ``best`` and ``last`` paths (rank 0; the
        other DDP ranks return an empty dict). The process group of a torchrun run is left on every exit."""
        if self.ctx.distributed:
            init_process_group(self.ctx, self.device)
        try:
            return self._train()
        finally:
            shutdown()

    def _train(self) -> Dict[str, Any]:
        from torch.nn.parallel import DistributedDataParallel
        from torch.utils.data import DataLoader, DistributedSampler
        from tqdm import tqdm

        from ..eval.validate import validate

        cfg, ctx = self.config, self.ctx
        if cfg.batch % ctx.world_size:
            raise ConfigError(f"--batch {cfg.batch} is the global batch: make it a multiple of the "
                              f"{ctx.world_size} training processes")
        if cfg.sync_bn and ctx.distributed and self.device.type != "cuda":
            raise ConfigError("--sync-bn needs CUDA GPUs (torch's SyncBatchNorm runs on GPUs only); drop it on CPU")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        torch.manual_seed(cfg.seed)
        data = load_data_config(cfg.data)
        train_set = YoloDataset(data.splits["train"], data.names, what=f"{data.yaml_path} [train]")
        val_set = YoloDataset(data.splits["val"], data.names, what=f"{data.yaml_path} [val]")
        model = self.build_model(data.names)
        torch.manual_seed(cfg.seed + ctx.rank)  # each rank its own augmentation draws
        if self._resume_state is None:
            self.save_dir = new_run_dir(cfg.project, cfg.name) if ctx.is_main else Path()
            if ctx.distributed:
                shared = [str(self.save_dir)]
                torch.distributed.broadcast_object_list(shared, src=0)
                self.save_dir = Path(shared[0])
        weights_dir = self.save_dir / "weights"
        dataset = TrainDataset(train_set, cfg.imgsz, augment=True, config=cfg.augment)
        sampler = DistributedSampler(dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=True,
                                     seed=cfg.seed)
        loader = DataLoader(
            dataset, batch_size=cfg.batch // ctx.world_size, sampler=sampler, num_workers=cfg.workers,
            collate_fn=TrainDataset.collate, persistent_workers=cfg.workers > 0,
            pin_memory=self.device.type == "cuda",
        )
        nb = len(loader)
        accumulate = max(round(cfg.nominal_batch / cfg.batch), 1)
        weight_decay = cfg.weight_decay * cfg.batch * accumulate / cfg.nominal_batch
        optimizer = make_optimizer(model, cfg.lr0, cfg.momentum, weight_decay, cfg.optimizer)
        lf = lr_lambda(cfg.epochs, cfg.lrf, cfg.cos_lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=lf)
        ema = ModelEMA(model, tau=cfg.ema_tau) if ctx.is_main else None
        if self._resume_state is not None:
            optimizer.load_state_dict(self._resume_state["optimizer"])
            if ema is not None:
                ema.ema.load_state_dict(self._resume_state["ema"])
                ema.updates = int(self._resume_state["ema_updates"])
            scheduler.last_epoch = self.start_epoch - 1
            LOGGER.info("resuming %s from epoch %d", self.save_dir, self.start_epoch + 1)
        loss_fn = self.make_loss(model)
        loss_scale = ctx.world_size if self.loss_sums_images else 1  # DDP averages gradients over the ranks
        n_frozen = frozen_layers(model, cfg.freeze)
        frozen = [p for name, p in model.named_parameters()
                  if name.startswith(tuple(f"model.{i}." for i in range(n_frozen)))]
        train_model: nn.Module = model
        if ctx.distributed:
            if cfg.sync_bn:  # the EMA (already copied) keeps plain BatchNorm; the parameters are shared
                train_model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            train_model = DistributedDataParallel(
                train_model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        amp = self.device.type == "cuda"
        scaler = torch.amp.GradScaler("cuda", enabled=amp)
        warmup_iters = max(round(cfg.warmup_epochs * nb), 100) if cfg.warmup_epochs > 0 else -1
        last_step = -1
        results: Dict[str, Any] = {}
        if ctx.is_main:
            LOGGER.info("training %s for %d epochs on %s x %d (%d images, global batch %d x %d accumulated%s), "
                        "results in %s", cfg.cfg or cfg.weights, cfg.epochs, self.device.type, ctx.world_size,
                        len(train_set), cfg.batch, accumulate,
                        f", {len(frozen)} parameters of {n_frozen} layers frozen" if frozen else "", self.save_dir)
        for epoch in range(self.start_epoch, cfg.epochs):
            model.train()
            sampler.set_epoch(epoch)
            freezing = bool(frozen) and (cfg.freeze_epochs <= 0 or epoch < cfg.freeze_epochs)
            if cfg.close_mosaic and epoch == cfg.epochs - cfg.close_mosaic:
                dataset.config = dataclasses.replace(cfg.augment, mosaic=0.0)
            mean_loss = torch.zeros(3)
            optimizer.zero_grad()
            start = time.perf_counter()
            bar = tqdm(loader, total=nb, disable=not (self.progress and ctx.is_main),
                       desc=f"{epoch + 1}/{cfg.epochs}", bar_format="{l_bar}{bar:10}{r_bar}")
            for i, (images, targets) in enumerate(bar):
                ni = i + nb * epoch
                images = images.to(self.device, non_blocking=True, memory_format=torch.channels_last).float() / 255
                if ni <= warmup_iters:
                    accumulate = self._warmup(optimizer, ni, warmup_iters, lf(epoch), cfg.batch)
                step = ni - last_step >= accumulate
                sync = contextlib.nullcontext() if step or not ctx.distributed else train_model.no_sync()
                with sync:
                    with torch.autocast(self.device.type, enabled=amp):
                        loss, parts = loss_fn(train_model(images), targets)
                    scaler.scale(loss * loss_scale).backward()
                if step:
                    for p in frozen if freezing else ():
                        p.grad = None  # the optimizer skips parameters without a gradient
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), max_norm=MAX_GRAD_NORM)
                    scaler.step(optimizer)
                    scaler.update()
                    optimizer.zero_grad()
                    if ema is not None:
                        ema.update(model)
                    last_step = ni
                mean_loss = (mean_loss * i + parts.cpu()) / (i + 1)
                bar.set_postfix(**{k: f"{v:.4f}" for k, v in zip(self.loss_names, mean_loss)},
                                inst=int(targets.shape[0]))
            scheduler.step()
            train_seconds = time.perf_counter() - start
            if ema is not None:
                results = self._end_epoch(ema, model, optimizer, epoch, mean_loss, val_set, train_seconds)
            if ctx.distributed:
                torch.distributed.barrier()  # the others wait while rank 0 validates and writes
        if not ctx.is_main:
            return {}
        finish_run(self.save_dir)
        if (weights_dir / "best.pt").exists():
            best = validate(str(weights_dir / "best.pt"), val_set, imgsz=cfg.imgsz, batch=cfg.val_batch,
                            plots=self.save_dir, progress=False, verbose=True)
            LOGGER.info("best.pt: mAP50 %.3f mAP50-95 %.3f; precision-recall curve: %s", best["map50"],
                        best["map50_95"], best["files"]["pr_curve"])
        results = dict(results, save_dir=str(self.save_dir), best=str(weights_dir / "best.pt"),
                       last=str(weights_dir / "last.pt"))
        return results

    def _end_epoch(self, ema: ModelEMA, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
                   mean_loss: torch.Tensor, val_set: YoloDataset, train_seconds: float) -> Dict[str, Any]:
        """Rank 0 after an epoch: save ``last.pt``, validate it when due, log, keep ``best.pt``; returns the
        validation results (empty when not validated)."""
        from ..eval.validate import validate

        cfg = self.config
        self._save(ema, model, optimizer, epoch, {}, improved=False)
        if (epoch + 1) % max(cfg.val_every, 1) and epoch + 1 < cfg.epochs:
            LOGGER.info("epoch %d/%d: %.0f s training", epoch + 1, cfg.epochs, train_seconds)
            return {}
        results = validate(str(self.save_dir / "weights" / "last.pt"), val_set, imgsz=cfg.imgsz,
                           batch=cfg.val_batch, progress=self.progress, verbose=False)
        score = fitness(results)
        improved = score > self.best_fitness
        self.best_fitness = max(score, self.best_fitness)
        self._log(epoch, mean_loss, results, optimizer, train_seconds)
        self._save(ema, model, optimizer, epoch, results, improved)
        LOGGER.info("epoch %d/%d: P %.3f R %.3f mAP50 %.3f mAP50-95 %.3f (%.0f s training)", epoch + 1,
                    cfg.epochs, results["precision"], results["recall"], results["map50"],
                    results["map50_95"], train_seconds)
        return results

    def _warmup(self, optimizer: torch.optim.Optimizer, ni: int, warmup_iters: int, lr_factor: float,
                batch: int) -> int:
        """Set the warmup learning rates and momentum for iteration ``ni``; returns the accumulation steps."""
        cfg = self.config
        xi = [0, warmup_iters]
        accumulate = max(1, int(np.interp(ni, xi, [1, cfg.nominal_batch / batch]).round()))
        for j, group in enumerate(optimizer.param_groups):
            start = cfg.warmup_bias_lr if j == 0 else 0.0  # group 0: biases
            group["lr"] = float(np.interp(ni, xi, [start, group["initial_lr"] * lr_factor]))
            momentum = float(np.interp(ni, xi, [cfg.warmup_momentum, cfg.momentum]))
            if "betas" in group:  # AdamW: the first beta plays momentum's part
                group["betas"] = (momentum, group["betas"][1])
            else:
                group["momentum"] = momentum
        return accumulate

    def _log(self, epoch: int, loss: torch.Tensor, results: Dict[str, Any], optimizer: torch.optim.Optimizer,
             seconds: float) -> None:
        row = {
            "epoch": epoch + 1,
            **{f"{k}_loss": round(float(v), 6) for k, v in zip(self.loss_names, loss)},
            "precision": round(results["precision"], 6),
            "recall": round(results["recall"], 6),
            "map50": round(results["map50"], 6),
            "map50_95": round(results["map50_95"], 6),
            "lr": round(optimizer.param_groups[1]["lr"], 8),
            "train_seconds": round(seconds, 2),
        }
        append_csv_row(self.save_dir / "results.csv", row)

    def _save(self, ema: ModelEMA, model: nn.Module, optimizer: torch.optim.Optimizer, epoch: int,
              results: Dict[str, Any], improved: bool) -> None:
        from ..models.checkpoint import save_checkpoint

        cfg = self.config
        weights_dir = self.save_dir / "weights"
        summary = {k: v for k, v in results.items() if k not in ("per_class", "files")}
        provenance = {"data": str(Path(cfg.data).resolve()), "cfg": cfg.cfg, "weights": cfg.weights,
                      "epoch": epoch + 1, "epochs": cfg.epochs, "metrics": summary}
        extra = {"train_config": cfg.to_dict(), "best_fitness": self.best_fitness}
        save_checkpoint(ema.ema, weights_dir / "last.pt", imgsz=cfg.imgsz, provenance=provenance, extra=extra)
        if improved:
            save_checkpoint(ema.ema, weights_dir / "best.pt", imgsz=cfg.imgsz, provenance=provenance, extra=extra)
        state = {
            "epoch": epoch,
            "best_fitness": self.best_fitness,
            "model": model.state_dict(),
            "ema": ema.ema.state_dict(),
            "ema_updates": ema.updates,
            "optimizer": optimizer.state_dict(),
        }
        write_state(weights_dir / f"last{STATE_SUFFIX}", state)


def train(config: Optional[TrainConfig] = None, *, resume: Optional[str] = None,
          progress: bool = True) -> Dict[str, Any]:
    """Train a detector, or continue an interrupted run; see :class:`TrainConfig` and :class:`Trainer`.

    Args:
        config: the run's settings (not needed when resuming: the run's own are used).
        resume: ``last.pt`` or run folder of an interrupted run to continue.
        progress: show progress bars.

    Returns:
        Final validation results (see :func:`lite_deploy.eval.validate.validate`) with ``save_dir``, ``best`` and
        ``last``.

    Raises:
        DatasetError: the dataset is malformed.
        CheckpointError: starting, backbone or resume weights cannot be read or do not fit.
        ConfigError: bad ``device``, ``freeze`` or ``backbone_weights`` for this model, a global batch that the
            processes do not divide, or ``sync_bn`` on CPU.
        ValueError: no config, no model given, a classifier given, or ``imgsz`` not a multiple of the stride.
    """
    if resume:
        return Trainer.resume(resume, progress=progress).run()
    if config is None:
        raise ValueError("give a TrainConfig, or resume= an interrupted run")
    return Trainer(config, progress=progress).run()
