"""Export-time rewrites: BatchNorm folding, GSConv shuffle as a static channel gather, the export-mode head.

None of these change the model's outputs beyond float rounding; all of them make the traced graph simpler:
no BatchNorm nodes, no 5-D tensors or batch-mixing reshapes (so a dynamic batch axis works and 4-D-only NPU
compilers accept it) and detector outputs ``boxes`` / ``scores`` ready for EfficientNMS / NonMaxSuppression.
"""

from __future__ import annotations

import copy
from typing import List

import torch
from torch import nn

from .backbones.shuffle import ChannelShuffle
from .gsconv import GSConv, GSConvns
from .heads import Detect


@torch.no_grad()
def fuse_conv_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d) -> nn.Conv2d:
    """A Conv2d (with bias) equal to ``bn(conv(x))`` with ``bn`` in eval mode."""
    fused = nn.Conv2d(
        conv.in_channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        dilation=conv.dilation,
        groups=conv.groups,
        bias=True,
        padding_mode=conv.padding_mode,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)  # (c2,)
    fused.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
    fused.bias.copy_(bn.bias + (bias - bn.running_mean) * scale)
    fused.requires_grad_(False)
    return fused


def fuse(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm2d into the Conv2d before it, in place; returns ``model``.

    Handles modules with ``conv`` / ``bn`` attributes (YOLOv5's Conv, DWConv and everything built like them; the
    BatchNorm becomes an ``nn.Identity``) and Conv2d -> BatchNorm2d pairs inside ``nn.Sequential`` containers
    (torchvision's Conv2dNormActivation and similar). Use it on a model in eval mode.
    """
    for module in list(model.modules()):
        conv, bn = getattr(module, "conv", None), getattr(module, "bn", None)
        if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
            module.conv = fuse_conv_bn(conv, bn)
            module.bn = nn.Identity()
        if isinstance(module, nn.Sequential):
            for j in range(len(module) - 1):
                if isinstance(module[j], nn.Conv2d) and isinstance(module[j + 1], nn.BatchNorm2d):
                    module[j] = fuse_conv_bn(module[j], module[j + 1])
                    module[j + 1] = nn.Identity()
    return model


def prepare_for_export(model: nn.Module) -> nn.Module:
    """An export-mode copy of ``model`` (``model`` itself is untouched): float32, eval, BN fused, no grad.

    Detectors: ``forward(x)`` with x (B, 3, H, W) float in [0, 1] returns ``(boxes, scores)``: boxes (B, N, 4) xyxy
    in input pixels, scores (B, N, nc) = objectness x class probability; N ordered P3 -> P5, anchor, y, x (the
    order of YOLOv5's output). GSConv shuffles become a constant gather on the channel axis. The graph holds
    tensors of rank <= 4 only and no batch size, so a dynamic batch axis exports.

    Classifiers: ``forward(x)`` returns (B, nc) logits (no softmax).
    """
    m = copy.deepcopy(model).float().eval()
    fuse(m)
    for module in m.modules():
        if isinstance(module, GSConv) and not isinstance(module, GSConvns):
            module.use_static_permutation()
        if isinstance(module, Detect):
            module.export = True
            module.reset_grids()
    m.requires_grad_(False)
    return m


def channels_last_shuffles(model: nn.Module) -> nn.Module:
    """Compute every channel shuffle (ShuffleNet's, GSConv's) on the channels-last view, in place; returns ``model``.

    For channels-last converters (TFLite): see
    :func:`~lite_deploy.models.backbones.shuffle.channel_shuffle_channels_last`. The values are the same. Measured
    on the bundled demo at 320 (litert-torch, XNNPACK, 2 threads): FP32 4.92 -> 4.39 ms, the 24 TRANSPOSE +
    GATHER_ND + TRANSPOSE shuffles gone from the graph.
    """
    for module in model.modules():
        if isinstance(module, ChannelShuffle):
            module.channels_last = True
        elif isinstance(module, GSConv) and not isinstance(module, GSConvns):
            module.use_channels_last_shuffle()
    return model


CHANNELS_LAST_MIN_CLASSES = 20  # heads with fewer classes keep the default decode


def channels_last_decode(model: nn.Module) -> bool:
    """Switch the YOLO heads of an export-mode ``model`` that have at least :data:`CHANNELS_LAST_MIN_CLASSES`
    classes to their channels-last decode, in place; returns whether any was switched.

    For backends whose convolutions write channels-last (OpenVINO): see
    :meth:`~lite_deploy.models.heads.Detect._forward_channels_last`. Its split convolution pays off on a wide
    class block and costs more than it saves on a narrow one. OpenVINO FP32, 2 threads: yolov5n (80 classes)
    33.5 -> 30.2 ms at 640 and 9.0-9.2 -> 7.9-8.3 ms at 320; the bundled demo (6 classes) 5.70 -> 5.94-6.12 ms at
    320 and 17.8-18.4 -> 18.3-19.0 ms at 640. The threshold lies between the two class counts measured.
    """
    heads = channels_last_heads(model)
    for head in heads:
        head.channels_last_decode = True
    return bool(heads)


def channels_last_heads(model: nn.Module) -> List[Detect]:
    """The YOLO heads of ``model`` that :func:`channels_last_decode` switches."""
    return [m for m in model.modules() if isinstance(m, Detect) and m.nc >= CHANNELS_LAST_MIN_CLASSES]
