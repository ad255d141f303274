"""EfficientNetV2 blocks as users' YOLOv5 yamls know them (the widely copied CSDN tutorial series, #9).

The constructor arithmetic and attribute names reproduce that tutorial exactly, so the state_dicts of models
trained with it load strictly:

- ``stem(c1, c2, kernel_size=3, stride=1, groups=1)``: ``conv`` (no bias, padding ``(k-1)//2``), ``bn``
  (eps 1e-3, momentum 0.1), ``act`` (SiLU).
- ``FusedMBConv(c1, c2, k=3, s=1, expansion=1, se_ration=0, dropout_rate=0.2, drop_connect_rate=0.2)``:
  ``expansion_conv = stem(c1, c1*expansion, k, s)`` and ``project_conv = stem(c1*expansion, c2, 1)``, or only
  ``project_conv = stem(c1, c2, k, s)`` when ``expansion == 1``. No squeeze-excite (``se_ration`` is ignored,
  as in the tutorial).
- ``MBConv(...same...)``: ``expansion_conv = stem(c1, e, 1)`` (always, even for ``expansion == 1``),
  ``dw_conv = stem(e, e, k, s, groups=e)``, ``se`` (:class:`SqueezeExcite`, or Identity when the ratio is 0),
  ``project_conv = stem(e, c2, 1)`` with ``e = c1 * expansion``. The projection keeps its SiLU, unlike the
  paper's linear bottleneck: that is what the tutorial (and its checkpoints) compute.
- Both add the input when ``s == 1 and c1 == c2`` (``has_shortcut``), through DropPath with
  ``drop_connect_rate`` (stochastic depth), which is the identity outside training.

Registered for yamls under the tutorial's names with the ``scaled`` channel policy (``[c1, scaled c2, *rest]``).
The name ``stem`` is this tutorial's; YOLOv5-Lite has an unrelated ``stem(c1, c2)`` (a fixed 3-channel input
stem) that is not provided here. The tutorial's ``dropout_rate`` is stored but never applied by the tutorial's
code either; it is accepted so its yamls and call sites keep working.
"""

from __future__ import annotations

from typing import Type

import torch
from torch import Tensor, nn

from ..registry import register_module


@register_module("stem", channels="scaled")
class Stem(nn.Module):
    """Conv -> BN(eps 1e-3) -> SiLU.

    Args:
        c1: input channels.
        c2: output channels.
        kernel_size: square kernel size; padding keeps the size at stride 1.
        stride: conv stride.
        groups: conv groups.
    """

    def __init__(self, c1: int, c2: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, kernel_size, stride, padding=(kernel_size - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(c2, eps=1e-3, momentum=0.1)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / stride, W / stride)."""
        return self.act(self.bn(self.conv(x)))


def drop_path(x: Tensor, drop_prob: float, training: bool) -> Tensor:
    """Stochastic depth: zero whole samples with probability ``drop_prob`` and rescale the rest (training only).

    Args:
        x: (B, ...) residual-branch output.
        drop_prob: probability of dropping a sample's branch.
        training: apply only when True; otherwise ``x`` is returned unchanged.
    """
    if drop_prob == 0.0 or not training:
        return x
    keep = 1.0 - drop_prob
    mask = torch.rand((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device).add_(keep).floor_()
    return x.div(keep) * mask


class DropPath(nn.Module):
    """Module form of :func:`drop_path`.

    Args:
        drop_prob: probability of dropping a sample's residual branch during training.
    """

    def __init__(self, drop_prob: float = 0.0) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: Tensor) -> Tensor:
        """(B, ...) -> same shape."""
        return drop_path(x, self.drop_prob, self.training)

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation gate of the tutorial (``SqueezeExcite_efficientv2``).

    ``x * sigmoid(conv_expand(relu(conv_reduce(avg_pool(x)))))`` with ``int(c1 * se_ratio)`` reduced channels;
    both 1x1 convs have biases.

    Args:
        c1: input channels.
        c2: output channels of the gate (equal to ``c1`` in every use).
        se_ratio: reduction ratio.
        act_layer: activation between the two convs.
    """

    def __init__(self, c1: int, c2: int, se_ratio: float = 0.25, act_layer: Type[nn.Module] = nn.ReLU) -> None:
        super().__init__()
        reduced = int(c1 * se_ratio)
        self.gate_fn = nn.Sigmoid()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(c1, reduced, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(reduced, c2, 1, bias=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C, H, W), each channel scaled by its gate."""
        gate = self.gate_fn(self.conv_expand(self.act1(self.conv_reduce(self.avg_pool(x)))))
        return x * gate


class _ResidualBlock(nn.Module):
    """Shared shortcut handling of the two MBConv variants."""

    def __init__(self, c1: int, c2: int, s: int, drop_connect_rate: float) -> None:
        super().__init__()
        self.has_shortcut = s == 1 and c1 == c2
        self.drop_connect_rate = drop_connect_rate
        if self.has_shortcut and drop_connect_rate > 0:
            self.dropout = DropPath(drop_connect_rate)

    def _residual(self, result: Tensor, x: Tensor) -> Tensor:
        if not self.has_shortcut:
            return result
        if self.drop_connect_rate > 0:
            result = self.dropout(result)
        return result + x


@register_module(channels="scaled")
class FusedMBConv(_ResidualBlock):
    """Fused-MBConv: a full k x k conv (expansion) and a 1x1 projection, or one k x k conv when ``expansion == 1``.

    Args:
        c1: input channels.
        c2: output channels.
        k: kernel size of the (expansion) conv.
        s: stride.
        expansion: expansion factor (hidden width ``c1 * expansion``).
        se_ration: accepted for the tutorial's signature; Fused-MBConv has no squeeze-excite.
        dropout_rate: accepted for the tutorial's signature; unused (see the module docstring).
        drop_connect_rate: stochastic-depth probability of the residual branch.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, expansion: int = 1, se_ration: float = 0,
                 dropout_rate: float = 0.2, drop_connect_rate: float = 0.2) -> None:
        super().__init__(c1, c2, s, drop_connect_rate)
        self.has_expansion = expansion != 1
        expanded = c1 * expansion
        if self.has_expansion:
            self.expansion_conv = Stem(c1, expanded, kernel_size=k, stride=s)
            self.project_conv = Stem(expanded, c2, kernel_size=1, stride=1)
        else:
            self.project_conv = Stem(c1, c2, kernel_size=k, stride=s)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / s, W / s)."""
        result = self.project_conv(self.expansion_conv(x) if self.has_expansion else x)
        return self._residual(result, x)


@register_module(channels="scaled")
class MBConv(_ResidualBlock):
    """MBConv: 1x1 expansion, k x k depthwise, squeeze-excite, 1x1 projection (with SiLU, as in the tutorial).

    Args:
        c1: input channels.
        c2: output channels.
        k: depthwise kernel size.
        s: depthwise stride.
        expansion: expansion factor (hidden width ``c1 * expansion``).
        se_ration: squeeze-excite ratio of the hidden width; 0 disables it (``se`` is Identity).
        dropout_rate: accepted for the tutorial's signature; unused.
        drop_connect_rate: stochastic-depth probability of the residual branch.
    """

    def __init__(self, c1: int, c2: int, k: int = 3, s: int = 1, expansion: int = 1, se_ration: float = 0,
                 dropout_rate: float = 0.2, drop_connect_rate: float = 0.2) -> None:
        super().__init__(c1, c2, s, drop_connect_rate)
        expanded = c1 * expansion
        self.expansion_conv = Stem(c1, expanded, kernel_size=1, stride=1)
        self.dw_conv = Stem(expanded, expanded, kernel_size=k, stride=s, groups=expanded)
        self.se = SqueezeExcite(expanded, expanded, se_ration) if se_ration > 0 else nn.Identity()
        self.project_conv = Stem(expanded, c2, kernel_size=1, stride=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / s, W / s)."""
        result = self.project_conv(self.se(self.dw_conv(self.expansion_conv(x))))
        return self._residual(result, x)
