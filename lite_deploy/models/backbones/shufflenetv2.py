"""ShuffleNetV2 (Ma et al., 2018) with torchvision's layout and keys, and a rank-4 channel shuffle.

torchvision's ``channel_shuffle`` is a 5-D view/transpose/view; here each block ends with
:class:`~lite_deploy.models.backbones.shuffle.ChannelShuffle`, the same permutation as one rank-4 gather, so the
ONNX, TFLite and TensorRT graphs contain no tensor of rank above 4. The index is not in the state_dict, so the
keys stay torchvision's.

- :class:`ShuffleNetV2Classifier`: keys equal ``torchvision.models.shufflenet_v2_x{0_5,1_0,1_5,2_0}``'s.
- :class:`ShuffleNetV2Features`: a yaml backbone layer holding consecutive parts of the network, in the order
  ``conv1, maxpool, stage2, stage3, stage4, conv5`` (indices 0-5), under torchvision's attribute names::

      [-1, 1, ShuffleNetV2Features, [116, 0, 3, 1.0]]  # conv1 + maxpool + stage2: stride 8
      [-1, 1, ShuffleNetV2Features, [232, 3, 4, 1.0]]  # stage3: stride 16
      [-1, 1, ShuffleNetV2Features, [464, 4, 5, 1.0]]  # stage4: stride 32

- ``Shuffle_Block`` (the YOLOv5-Lite / tutorial yaml name of the block, ``(c1, c2, stride)`` with scaled
  channels) and ``conv_bn_relu_maxpool`` (their stem) are registered too, with the same key names as those
  projects (``branch1``/``branch2``, ``conv``/``maxpool``), so their yamls and state_dicts rebuild.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..registry import add_module, register_module
from .classifier import ImageClassifier, Names, register_classifier
from .shuffle import ChannelShuffle
from .torchvision_weights import TorchvisionSlice

STAGE_REPEATS = (4, 8, 4)
# width_mult -> output channels of conv1, stage2, stage3, stage4, conv5 (torchvision / the paper's Table 5)
STAGE_OUT_CHANNELS: Dict[float, Tuple[int, int, int, int, int]] = {
    0.5: (24, 48, 96, 192, 1024),
    1.0: (24, 116, 232, 464, 1024),
    1.5: (24, 176, 352, 704, 1024),
    2.0: (24, 244, 488, 976, 2048),
}
PARTS = ("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5")


def _depthwise(channels: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False)


class InvertedResidual(nn.Module):
    """ShuffleNetV2 unit. Stride 1: split channels in half, transform one half. Stride 2: transform both copies.

    Args:
        c1: input channels (with stride 1 it must equal ``c2``).
        c2: output channels (even).
        stride: 1, 2 or 3 (torchvision accepts up to 3).

    Raises:
        ValueError: stride out of range, or ``c1 != c2`` with stride 1.
    """

    def __init__(self, c1: int, c2: int, stride: int) -> None:
        super().__init__()
        if not 1 <= stride <= 3:
            raise ValueError(f"ShuffleNetV2 block stride must be 1, 2 or 3, got {stride}")
        c_ = c2 // 2
        if stride == 1 and c1 != c_ * 2:
            raise ValueError(f"a stride-1 ShuffleNetV2 block needs equal even input and output channels, "
                             f"got {c1} -> {c2}")
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                _depthwise(c1, stride), nn.BatchNorm2d(c1),
                nn.Conv2d(c1, c_, 1, 1, 0, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(c1 if stride > 1 else c_, c_, 1, 1, 0, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
            _depthwise(c_, stride), nn.BatchNorm2d(c_),
            nn.Conv2d(c_, c_, 1, 1, 0, bias=False), nn.BatchNorm2d(c_), nn.ReLU(inplace=True),
        )
        self.shuffle = ChannelShuffle(2 * c_, 2)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / stride, W / stride)."""
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), 1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), 1)
        return self.shuffle(out)


def stage_channels(width_mult: float) -> Tuple[int, int, int, int, int]:
    """Output channels of conv1, stage2-4 and conv5 for a torchvision width.

    Raises:
        ConfigError: the width has no torchvision definition.
    """
    try:
        return STAGE_OUT_CHANNELS[float(width_mult)]
    except KeyError:
        raise ConfigError(
            f"ShuffleNetV2 width_mult must be one of {sorted(STAGE_OUT_CHANNELS)}, got {width_mult}"
        ) from None


def build_part(name: str, width_mult: float) -> nn.Module:
    """One named part of torchvision's ShuffleNetV2 (``conv1``, ``maxpool``, ``stage2``-``stage4``, ``conv5``)."""
    widths = stage_channels(width_mult)
    if name == "conv1":
        return nn.Sequential(nn.Conv2d(3, widths[0], 3, 2, 1, bias=False), nn.BatchNorm2d(widths[0]),
                             nn.ReLU(inplace=True))
    if name == "maxpool":
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    if name == "conv5":
        return nn.Sequential(nn.Conv2d(widths[3], widths[4], 1, 1, 0, bias=False), nn.BatchNorm2d(widths[4]),
                             nn.ReLU(inplace=True))
    i = int(name[-1]) - 2
    c1, c2 = widths[i], widths[i + 1]
    blocks: List[nn.Module] = [InvertedResidual(c1, c2, 2)]
    blocks += [InvertedResidual(c2, c2, 1) for _ in range(STAGE_REPEATS[i] - 1)]
    return nn.Sequential(*blocks)


def part_out_channels(index: int, width_mult: float) -> int:
    """Output channels after part ``PARTS[index]``."""
    widths = stage_channels(width_mult)
    return (widths[0], widths[0], widths[1], widths[2], widths[3], widths[4])[index]


class ShuffleNetV2Classifier(ImageClassifier):
    """ShuffleNetV2 classifier, state_dict-compatible with ``torchvision.models.shufflenet_v2_x*``.

    Args:
        num_classes: number of logits.
        width_mult: 0.5, 1.0, 1.5 or 2.0 (torchvision's x0_5 … x2_0).
        names: class names.
    """

    head_prefixes = ("fc.",)

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, names: Names = None) -> None:
        super().__init__(num_classes, names)
        for name in PARTS:
            setattr(self, name, build_part(name, width_mult))
        self.fc = nn.Linear(stage_channels(width_mult)[-1], num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised image -> (B, num_classes) logits."""
        for name in PARTS:
            x = getattr(self, name)(x)
        return self.fc(x.mean([2, 3]))


@register_module(channels="fixed")
class ShuffleNetV2Features(TorchvisionSlice):
    """Parts ``PARTS[start:end]`` of torchvision's ShuffleNetV2 as one yaml layer, under torchvision's names.

    Args:
        c2: output channels the yaml declares; must equal the slice's real output width.
        start: first part index (0 = ``conv1``, which takes the RGB image).
        end: one past the last part index (at most 6).
        width_mult: 0.5, 1.0, 1.5 or 2.0.

    Raises:
        ConfigError: the slice is empty or out of range, the width is unknown, or ``c2`` is wrong.
    """

    def __init__(self, c2: int, start: int, end: int, width_mult: float = 1.0) -> None:
        super().__init__()
        if not 0 <= start < end <= len(PARTS):
            raise ConfigError(f"ShuffleNetV2Features slice [{start}:{end}] must satisfy 0 <= start < end <= "
                              f"{len(PARTS)} over the parts {', '.join(PARTS)}")
        out = part_out_channels(end - 1, width_mult)
        if out != c2:
            raise ConfigError(f"ShuffleNetV2Features [{start}:{end}] at width {width_mult} outputs {out} channels; "
                              f"set its first yaml argument to {out} (got {c2})")
        self.torchvision_arch = f"shufflenet_v2_x{float(width_mult):.1f}".replace(".", "_")
        self.parts = PARTS[start:end]
        for name in self.parts:
            setattr(self, name, build_part(name, width_mult))

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, c2, H / s, W / s), s = the slice's total stride."""
        for name in self.parts:
            x = getattr(self, name)(x)
        return x


class ConvBNReLUMaxPool(nn.Module):
    """YOLOv5-Lite's ``conv_bn_relu_maxpool`` stem: 3x3 s2 conv, BN, ReLU, 3x3 s2 max-pool (stride 4 in all).

    Args:
        c1: input channels.
        c2: output channels.
    """

    def __init__(self, c1: int, c2: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(c1, c2, 3, 2, 1, bias=False), nn.BatchNorm2d(c2), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / 4, W / 4)."""
        return self.maxpool(self.conv(x))


add_module("Shuffle_Block", InvertedResidual, channels="scaled")
add_module("conv_bn_relu_maxpool", ConvBNReLUMaxPool, channels="scaled")
register_classifier("shufflenetv2_x0_5", lambda **kw: ShuffleNetV2Classifier(width_mult=0.5, **kw))
register_classifier("shufflenetv2_x1_0", lambda **kw: ShuffleNetV2Classifier(width_mult=1.0, **kw))
register_classifier("shufflenetv2_x1_5", lambda **kw: ShuffleNetV2Classifier(width_mult=1.5, **kw))
register_classifier("shufflenetv2_x2_0", lambda **kw: ShuffleNetV2Classifier(width_mult=2.0, **kw))
