"""GSConv slim-neck modules (Li et al., "Slim-neck by GSConv"), checkpoint-compatible with the slim-neck
yolov5 fork (variant A: attribute names, constructor arithmetic and quirks such as the unused ``res`` conv kept).

GSConv ends in a parameter-free channel shuffle, and the published code has two different ones (the state_dict
cannot tell them apart), so the variant is always explicit:

- ``"evenodd"``: the fork's 3-D ShuffleNet shuffle: all even channels, then all odd ones. n=8 -> [0,2,4,6,1,3,5,7].
- ``"interleave"``: the paper code's 5-D shuffle: ``[x1_0, dw_0, x1_1, dw_1, ...]``. n=8 -> [0,4,1,5,2,6,3,7].

Both are textbook channel shuffles (:mod:`lite_deploy.models.backbones.shuffle`): ``"evenodd"`` with ``n / 2``
groups, ``"interleave"`` with 2. :func:`lite_deploy.models.deploy.prepare_for_export` replaces either by a static
4-D channel gather; :func:`lite_deploy.models.deploy.channels_last_shuffles` by its channels-last form.
"""

from __future__ import annotations

from typing import List, Optional

import torch
from torch import nn

from .backbones.shuffle import channel_shuffle_channels_last, channel_shuffle_index
from .common import Activation, Conv, DWConv
from .registry import register_module

SHUFFLES = ("evenodd", "interleave")


def shuffle_groups(n: int, variant: str) -> int:
    """Groups of the textbook shuffle over ``n`` channels that equals a GSConv shuffle (see the module docstring)."""
    return n // 2 if _check_shuffle(variant) == "evenodd" else 2


def shuffle_permutation(n: int, variant: str) -> List[int]:
    """Input channel index of each output channel of a GSConv shuffle over ``n`` (even) channels."""
    return channel_shuffle_index(n, shuffle_groups(n, variant)).tolist()


def _check_shuffle(shuffle: str) -> str:
    if shuffle not in SHUFFLES:
        raise ValueError(f"unknown GSConv shuffle {shuffle!r}; use one of {SHUFFLES}")
    return shuffle


@register_module()
class GSConv(nn.Module):
    """Conv to c2/2 channels, a 5x5 depth-wise conv of that, concatenated and channel-shuffled.

    Input (B, c1, H, W) -> (B, 2*(c2//2), H/s, W/s).

    Args:
        c1, c2: input and output channels.
        k, s, g: kernel, stride and groups of the first convolution.
        act: activation of both convolutions (see :func:`lite_deploy.models.common.make_activation`).
        shuffle: ``"evenodd"`` or ``"interleave"`` (module docstring).
    """

    def __init__(self, c1: int, c2: int, k=1, s=1, g: int = 1, act: Activation = True, *, shuffle: str = "evenodd"):
        super().__init__()
        c_ = c2 // 2
        self.cv1 = Conv(c1, c_, k, s, None, g, act=act)
        self.cv2 = Conv(c_, c_, 5, 1, None, c_, act=act)
        self.shuffle = _check_shuffle(shuffle)
        self.perm: Optional[torch.Tensor]
        self.register_buffer("perm", None, persistent=False)
        self.channels_last = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        x2 = torch.cat((x1, self.cv2(x1)), 1)
        if self.perm is not None:
            return x2.index_select(1, self.perm)
        b, n, h, w = x2.shape
        if self.channels_last:
            return channel_shuffle_channels_last(x2, shuffle_groups(n, self.shuffle))
        if self.shuffle == "interleave":
            return x2.reshape(b, 2, n // 2, h, w).permute(0, 2, 1, 3, 4).reshape(b, -1, h, w)
        y = x2.reshape(b * n // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, n // 2, h, w)
        return torch.cat((y[0], y[1]), 1)

    def use_static_permutation(self) -> None:
        """Replace the reshape/permute shuffle by an equivalent gather on the channel axis (4-D, any batch)."""
        n = 2 * self.cv2.conv.out_channels
        self.perm = torch.tensor(shuffle_permutation(n, self.shuffle), device=self.cv1.conv.weight.device)

    def use_channels_last_shuffle(self) -> None:
        """Compute the shuffle on the channels-last view (:func:`channel_shuffle_channels_last`), for TFLite."""
        self.perm = None
        self.channels_last = True


@register_module()
class GSConvns(GSConv):
    """GSConv with a learnable 1x1 "normative shuffle" conv instead of the permutation, then ReLU.

    The published class hard-codes k, s, g and act and returns an ``nn.ReLU`` module; this one honours all
    arguments and returns ``relu(shuf(x2))`` (the fix of the ultralytics port). Not equivalent to GSConv: it adds
    ``(2*(c2//2)) * c2`` weights and the ReLU clips negative outputs.
    """

    def __init__(self, c1: int, c2: int, k=1, s=1, g: int = 1, act: Activation = True, *, shuffle: str = "evenodd"):
        super().__init__(c1, c2, k, s, g, act, shuffle=shuffle)
        c_ = c2 // 2
        self.shuf = nn.Conv2d(c_ * 2, c2, 1, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.cv1(x)
        x2 = torch.cat((x1, self.cv2(x1)), 1)
        return self.shuf(x2).relu()


class GSBottleneck(nn.Module):
    """Two GSConvs (the second without activation) plus a 1x1 conv shortcut; ``k`` and ``s`` are unused."""

    def __init__(
        self, c1: int, c2: int, k=3, s=1, e: float = 0.5, act: Activation = True, *, shuffle: str = "evenodd"
    ):
        super().__init__()
        c_ = int(c2 * e)
        self.conv_lighting = nn.Sequential(
            GSConv(c1, c_, 1, 1, act=act, shuffle=shuffle), GSConv(c_, c2, 3, 1, act=False, shuffle=shuffle)
        )
        self.shortcut = Conv(c1, c2, 1, 1, act=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_lighting(x) + self.shortcut(x)


class GSBottleneckC(GSBottleneck):
    """GSBottleneck whose shortcut is a depth-wise ``k`` x ``k`` conv."""

    def __init__(self, c1: int, c2: int, k=3, s=1, act: Activation = True, *, shuffle: str = "evenodd"):
        super().__init__(c1, c2, k, s, act=act, shuffle=shuffle)
        self.shortcut = DWConv(c1, c2, k, s, act=False)


@register_module(repeat=True)
class VoVGSCSP(nn.Module):
    """VoV-GSCSP: ``cv3(cat(cv2(x), gsb(cv1(x))))`` with ``n`` GSBottlenecks; ``shortcut`` and ``g`` unused.

    ``res`` is built but never called, as in the fork, so its parameters stay in the state_dict.
    """

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
        act: Activation = True,
        *,
        shuffle: str = "evenodd",
    ):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1, act=act)
        self.cv2 = Conv(c1, c_, 1, 1, act=act)
        self.gsb = nn.Sequential(*(GSBottleneck(c_, c_, e=1.0, act=act, shuffle=shuffle) for _ in range(n)))
        self.res = Conv(c_, c_, 3, 1, act=False)
        self.cv3 = Conv(2 * c_, c2, 1, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.gsb(self.cv1(x))
        y = self.cv2(x)
        return self.cv3(torch.cat((y, x1), 1))


@register_module(repeat=True)
class VoVGSCSPC(VoVGSCSP):
    """VoVGSCSP with one GSBottleneckC (1x1 depth-wise shortcut); ``n`` and ``e`` are ignored as in the fork."""

    def __init__(
        self,
        c1: int,
        c2: int,
        n: int = 1,
        shortcut: bool = True,
        g: int = 1,
        e: float = 0.5,
        act: Activation = True,
        *,
        shuffle: str = "evenodd",
    ):
        super().__init__(c1, c2, act=act, shuffle=shuffle)
        c_ = int(c2 * 0.5)
        self.gsb = GSBottleneckC(c_, c_, 1, 1, act=act, shuffle=shuffle)
