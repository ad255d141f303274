"""MobileNetV2 (Sandler et al., 2018) with torchvision's module layout and state_dict keys.

Two forms share the blocks:

- :class:`MobileNetV2Classifier`: keys equal ``torchvision.models.mobilenet_v2``'s (``features.*``,
  ``classifier.1.*``), so a torchvision ImageNet ``.pth`` loads strictly.
- :class:`MobileNetV2Features`: a yaml backbone layer holding ``features[start:end]`` under the same keys, so a
  detector picks its P3/P4/P5 maps from torchvision's feature indices::

      [-1, 1, MobileNetV2Features, [32, 0, 7]]     # features 0-6, stride 8, 32 channels
      [-1, 1, MobileNetV2Features, [96, 7, 14]]    # features 7-13, stride 16, 96 channels
      [-1, 1, MobileNetV2Features, [320, 14, 18]]  # features 14-17, stride 32, 320 channels

  Registered with the ``fixed`` channel policy: widths come from ``width_mult``, not the yaml's
  ``width_multiple``, because pretrained weights exist for fixed widths only.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, NamedTuple

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..registry import register_module
from .classifier import ImageClassifier, Names, register_classifier
from .torchvision_weights import TorchvisionSlice

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
INVERTED_RESIDUAL_SETTING = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
                             (6, 160, 3, 2), (6, 320, 1, 1))


def round_channels(value: float, divisor: int = 8) -> int:
    """torchvision's/TensorFlow's ``_make_divisible``: nearest multiple of ``divisor``, never more than 10 % down."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def conv_bn_relu6(c1: int, c2: int, kernel_size: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    """torchvision's ``Conv2dNormActivation`` with ReLU6: keys ``0.weight`` (conv, no bias) and ``1.*`` (BN)."""
    return nn.Sequential(
        nn.Conv2d(c1, c2, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """MobileNetV2 block: 1x1 expand (skipped when ``expand_ratio == 1``), 3x3 depthwise, linear 1x1 project.

    Args:
        c1: input channels.
        c2: output channels.
        stride: 1 or 2 (depthwise conv).
        expand_ratio: hidden width = ``round(c1 * expand_ratio)``.
    """

    def __init__(self, c1: int, c2: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"InvertedResidual stride must be 1 or 2, got {stride}")
        hidden = int(round(c1 * expand_ratio))
        self.use_res_connect = stride == 1 and c1 == c2
        layers: List[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(c1, hidden, kernel_size=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, groups=hidden),
            nn.Conv2d(hidden, c2, 1, 1, 0, bias=False),
            nn.BatchNorm2d(c2),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / stride, W / stride)."""
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class _LayerSpec(NamedTuple):
    c1: int
    c2: int
    stride: int
    expand_ratio: int  # 0 marks a plain conv_bn_relu6 (the stem and the final 1x1)


def _feature_specs(width_mult: float) -> List[_LayerSpec]:
    """The 19 entries of torchvision's ``features``: stem, 17 inverted residuals, final 1x1 conv."""
    c = round_channels(32 * width_mult)
    specs = [_LayerSpec(3, c, 2, 0)]
    for t, out, n, s in INVERTED_RESIDUAL_SETTING:
        c2 = round_channels(out * width_mult)
        for i in range(n):
            specs.append(_LayerSpec(c, c2, s if i == 0 else 1, t))
            c = c2
    specs.append(_LayerSpec(c, round_channels(1280 * max(1.0, width_mult)), 1, 0))
    return specs


def _build(spec: _LayerSpec) -> nn.Module:
    if spec.expand_ratio == 0:
        return conv_bn_relu6(spec.c1, spec.c2, kernel_size=3 if spec.c1 == 3 else 1, stride=spec.stride)
    return InvertedResidual(spec.c1, spec.c2, spec.stride, spec.expand_ratio)


def init_weights(model: nn.Module) -> None:
    """torchvision's MobileNet initialisation: Kaiming-normal convs, unit BN, N(0, 0.01) linear layers."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


class MobileNetV2Classifier(ImageClassifier):
    """MobileNetV2 ImageNet-style classifier, state_dict-compatible with ``torchvision.models.mobilenet_v2``.

    Args:
        num_classes: number of logits.
        width_mult: channel multiplier (torchvision's ``width_mult``).
        dropout: dropout before the linear head.
        names: class names.
    """

    head_prefixes = ("classifier.1.",)

    def __init__(self, num_classes: int = 1000, width_mult: float = 1.0, dropout: float = 0.2,
                 names: Names = None) -> None:
        super().__init__(num_classes, names)
        specs = _feature_specs(width_mult)
        self.features = nn.Sequential(*(_build(s) for s in specs))
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), nn.Linear(specs[-1].c2, num_classes))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised image -> (B, num_classes) logits."""
        x = nn.functional.adaptive_avg_pool2d(self.features(x), 1)
        return self.classifier(torch.flatten(x, 1))


@register_module(channels="fixed")
class MobileNetV2Features(TorchvisionSlice):
    """``torchvision.models.mobilenet_v2(...).features[start:end]`` as one yaml layer, keys ``features.<i>.*``.

    Args:
        c2: output channels the yaml declares; must equal the slice's real output width.
        start: first feature index (0 = the stride-2 stem, which takes the RGB image).
        end: one past the last feature index (at most 19).
        width_mult: channel multiplier of the whole network.

    Raises:
        ConfigError: the slice is empty or out of range, or ``c2`` is not its output width.
    """

    torchvision_arch = "mobilenet_v2"

    def __init__(self, c2: int, start: int, end: int, width_mult: float = 1.0) -> None:
        super().__init__()
        specs = _feature_specs(width_mult)
        if not 0 <= start < end <= len(specs):
            raise ConfigError(
                f"MobileNetV2Features slice [{start}:{end}] must satisfy 0 <= start < end <= {len(specs)}"
            )
        if specs[end - 1].c2 != c2:
            raise ConfigError(
                f"MobileNetV2Features [{start}:{end}] at width {width_mult} outputs {specs[end - 1].c2} channels; "
                f"set its first yaml argument to {specs[end - 1].c2} (got {c2})"
            )
        self.features = nn.Sequential(OrderedDict((str(i), _build(specs[i])) for i in range(start, end)))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, c2, H / s, W / s), s = the slice's total stride."""
        return self.features(x)


register_classifier("mobilenetv2", MobileNetV2Classifier)
# the width multipliers of the MobileNetV2 paper's Table 6 (torchvision: mobilenet_v2(width_mult=...))
for _width in (0.35, 0.5, 0.75, 1.4):
    register_classifier(f"mobilenetv2_x{_width}".replace(".", "_"),
                        lambda _w=_width, **kw: MobileNetV2Classifier(width_mult=_w, **kw))
