"""Model summary: per-layer table, parameter count and FLOPs measured with forward hooks."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Tuple, Union

import torch
from torch import nn

from ..boxes import to_hw


@dataclass
class LayerInfo:
    """One top-level layer: index, ``from``, repeats, parameters, class name, yaml args, output shape (C, H, W)."""

    index: int
    source: Any
    repeats: int
    params: int
    module: str
    args: List[Any]
    output: Tuple[int, ...] = ()
    gflops: float = 0.0


@dataclass
class ModelSummary:
    """What ``lite-deploy info`` prints.

    Attributes:
        task: ``"detect"`` or ``"classify"``.
        layers: one entry per top-level layer.
        params: number of parameters.
        gflops: 2 x multiply-accumulates of every Conv2d and Linear for one image of ``imgsz``, in 1e9.
        imgsz: (height, width) the FLOPs were counted at.
        strides: detection strides in pixels (empty for classifiers).
        names: class names.
    """

    task: str
    layers: List[LayerInfo]
    params: int
    gflops: float
    imgsz: Tuple[int, int]
    strides: List[float]
    names: Dict[int, str] = field(default_factory=dict)


def _depth(n: int, gd: float) -> int:
    """Repeats after depth scaling, as the yaml parser computes them."""
    return max(round(n * gd), 1) if n > 1 else n


def _macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one Conv2d / Linear call for the first image of the batch."""
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output[0].numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output[0].numel() * module.in_features
    return 0


def count_flops(model: nn.Module, imgsz: Union[int, Tuple[int, int]] = 640, ch: int = 3) -> float:
    """GFLOPs (2 x MACs of Conv2d and Linear layers, 1e9) of one forward pass of a (1, ch, H, W) image."""
    return summarize(model, imgsz, ch).gflops


def summarize(model: nn.Module, imgsz: Union[int, Tuple[int, int]] = 640, ch: int = 3) -> ModelSummary:
    """Per-layer table, parameters and GFLOPs of ``model`` at input size ``imgsz`` (one batch-1 forward pass).

    Args:
        model: a zoo model (layers in ``model.model`` with ``i``/``f``/``type``) or any ``nn.Module``.
        imgsz: input height and width in pixels (an int for square).
        ch: input channels.
    """
    h, w = to_hw(imgsz)
    layers_seq = getattr(model, "model", None)
    top = list(layers_seq) if isinstance(layers_seq, nn.Sequential) else list(model.children())
    rows = []
    yaml = getattr(model, "yaml", None) or {}
    cfg_rows = list(yaml.get("backbone") or []) + list(yaml.get("head") or [])
    for k, m in enumerate(top):
        row = cfg_rows[k] if k < len(cfg_rows) and isinstance(cfg_rows[k], (list, tuple)) else None
        rows.append(
            LayerInfo(
                index=getattr(m, "i", k),
                source=getattr(m, "f", -1),
                repeats=_depth(row[1], yaml.get("depth_multiple", 1.0)) if row else 1,
                params=sum(p.numel() for p in m.parameters()),
                module=str(row[2]) if row else type(m).__name__,
                args=list(row[3] or []) if row else [],
            )
        )

    current: List[int] = [0]
    macs_per_layer = [0] * len(top)
    hooks = []

    def count(module: nn.Module, _inputs: Any, output: Any) -> None:
        if isinstance(output, torch.Tensor):
            macs_per_layer[current[0]] += _macs(module, output)

    def enter(k: int):
        def pre(_module: nn.Module, _inputs: Any) -> None:
            current[0] = k

        return pre

    def leave(k: int):
        def post(_module: nn.Module, _inputs: Any, output: Any) -> None:
            if isinstance(output, torch.Tensor):
                rows[k].output = tuple(output.shape[1:])

        return post

    for k, m in enumerate(top):
        hooks.append(m.register_forward_pre_hook(enter(k)))
        hooks.append(m.register_forward_hook(leave(k)))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            hooks.append(m.register_forward_hook(count))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            p = next(model.parameters())
            model(torch.zeros(1, ch, h, w, dtype=p.dtype, device=p.device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    for row, macs in zip(rows, macs_per_layer):
        row.gflops = 2 * macs / 1e9
    task = getattr(model, "task", "") or "classify"
    strides = [float(s) for s in getattr(model, "stride", [])] if task == "detect" else []
    return ModelSummary(
        task=task,
        layers=rows,
        params=sum(p.numel() for p in model.parameters()),
        gflops=sum(r.gflops for r in rows),
        imgsz=(h, w),
        strides=strides,
        names=dict(getattr(model, "names", {}) or {}),
    )


def format_summary(s: ModelSummary) -> str:
    """The summary as a text table followed by totals."""
    header = f"{'':>3} {'from':>14} {'n':>3} {'params':>10} {'GFLOPs':>7}  {'module':<22} {'arguments':<34} output"
    lines = [header]
    for r in s.layers:
        args = str(r.args)
        args = args if len(args) <= 34 else args[:31] + "..."
        out = "x".join(str(v) for v in r.output)
        lines.append(
            f"{r.index:>3} {str(r.source):>14} {r.repeats:>3} {r.params:>10,} {r.gflops:>7.3f}  {r.module:<22} "
            f"{args:<34} {out}"
        )
    names = ", ".join(f"{k}: {v}" for k, v in list(s.names.items())[:10])
    if len(s.names) > 10:
        names += f", ... ({len(s.names)} classes)"
    lines += [
        "",
        f"task: {s.task}",
        f"parameters: {s.params:,}",
        f"GFLOPs at {s.imgsz[0]}x{s.imgsz[1]}: {s.gflops:.2f}",
    ]
    if s.strides:
        lines.append(f"strides: {', '.join(f'{v:g}' for v in s.strides)}")
    lines.append(f"classes ({len(s.names)}): {names}")
    return "\n".join(lines)
