"""YOLOv5 building blocks (v6.0-v7.0), re-implemented with YOLOv5's class names, constructor arithmetic and
attribute names so that state_dicts of real checkpoints load one to one.

The activation is passed down explicitly: every block takes ``act`` (see :func:`make_activation`) and hands it
to its convolutions, so two models with different activations can live in one process.
"""

from __future__ import annotations

import math
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from .registry import add_module, register_module

# What ``act`` may be: True (the default SiLU), False/None (no activation), an nn.Module instance (copied per use
# would change semantics, so it is shared like YOLOv5 shares ``Conv.default_act``) or a zero-argument factory.
Activation = Union[bool, None, nn.Module, Callable[[], nn.Module]]


def make_activation(act: Activation) -> nn.Module:
    """The activation module for a convolution.

    Args:
        act: ``True`` -> ``nn.SiLU()``; ``False``/``None`` -> ``nn.Identity()``; an ``nn.Module`` -> itself;
            a class or other zero-argument callable -> a new instance of it.
    """
    if act is True:
        return nn.SiLU()
    if act is False or act is None:
        return nn.Identity()
    if isinstance(act, nn.Module):
        return act
    if callable(act):
        return act()
    raise TypeError(f"act must be a bool, an nn.Module or a module factory, got {type(act).__name__}")


def autopad(k: Union[int, Sequence[int]], p: Optional[Union[int, Sequence[int]]] = None, d: int = 1):
    """'Same' padding for kernel ``k`` with dilation ``d`` (YOLOv5's ``autopad``)."""
    if d > 1:
        k = d * (k - 1) + 1 if isinstance(k, int) else [d * (x - 1) + 1 for x in k]
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


@register_module()
class Conv(nn.Module):
    """Conv2d (no bias) -> BatchNorm2d -> activation. Input (B, c1, H, W) -> (B, c2, H/s, W/s)."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, d: int = 1, act: Activation = True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p, d), groups=g, dilation=d, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = make_activation(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # after deploy.fuse() ``bn`` is an nn.Identity and ``conv`` carries the folded bias
        return self.act(self.bn(self.conv(x)))


@register_module()
class DWConv(Conv):
    """Depth-wise convolution: a :class:`Conv` with ``groups = gcd(c1, c2)``."""

    def __init__(self, c1: int, c2: int, k=1, s=1, d: int = 1, act: Activation = True):
        super().__init__(c1, c2, k, s, g=math.gcd(c1, c2), d=d, act=act)


@register_module()
class Bottleneck(nn.Module):
    """1x1 Conv -> 3x3 Conv, with a residual add when ``shortcut`` and ``c1 == c2``."""

    def __init__(self, c1: int, c2: int, shortcut: bool = True, g: int = 1, e: float = 0.5, act: Activation = True):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_, c2, 3, 1, g=g, act=act)
        self.add = shortcut and c1 == c2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.cv2(self.cv1(x))
        return x + y if self.add else y


@register_module(repeat=True)
class C3(nn.Module):
    """CSP bottleneck with 3 convolutions: ``cv3(cat(m(cv1(x)), cv2(x)))``."""

    def __init__(
        self, c1: int, c2: int, n: int = 1, shortcut: bool = True, g: int = 1, e: float = 0.5, act: Activation = True
    ):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.cv3 = Conv(2 * c_, c2, 1, act=act)
        self.m = nn.Sequential(*(Bottleneck(c_, c_, shortcut, g, e=1.0, act=act) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


@register_module()
class SPP(nn.Module):
    """Spatial pyramid pooling with parallel max-pools of kernels ``k`` (YOLOv3-SPP)."""

    def __init__(self, c1: int, c2: int, k: Tuple[int, ...] = (5, 9, 13), act: Activation = True):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * (len(k) + 1), c2, 1, 1, act=act)
        self.m = nn.ModuleList(nn.MaxPool2d(kernel_size=x, stride=1, padding=x // 2) for x in k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        return self.cv2(torch.cat([x] + [m(x) for m in self.m], 1))


@register_module()
class SPPF(nn.Module):
    """Fast SPP: three chained max-pools of kernel ``k``, equivalent to SPP(k=(5, 9, 13)) for k=5."""

    def __init__(self, c1: int, c2: int, k: int = 5, act: Activation = True):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c_ * 4, c2, 1, 1, act=act)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


@register_module()
class Focus(nn.Module):
    """Space-to-depth (B, c1, H, W) -> (B, 4*c1, H/2, W/2), then a :class:`Conv` (YOLOv5 <= v5.0 stem)."""

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, act: Activation = True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(
            torch.cat((x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]), 1)
        )


@register_module(channels="concat")
class Concat(nn.Module):
    """Concatenate a list of tensors along dimension ``dimension`` (channels by default)."""

    def __init__(self, dimension: int = 1):
        super().__init__()
        self.d = dimension

    def forward(self, x: List[torch.Tensor]) -> torch.Tensor:
        return torch.cat(x, self.d)


# torch modules a yaml may name as ``nn.<Class>``
for _name, _channels in (
    ("Upsample", "same"),
    ("MaxPool2d", "same"),
    ("AvgPool2d", "same"),
    ("Identity", "same"),
    ("Dropout", "same"),
    ("ReLU", "same"),
    ("SiLU", "same"),
    ("BatchNorm2d", "batchnorm"),
    ("ConvTranspose2d", "scaled"),
):
    add_module(f"nn.{_name}", getattr(nn, _name), channels=_channels)
