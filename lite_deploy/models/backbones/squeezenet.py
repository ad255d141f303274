"""SqueezeNet 1.1 (Iandola et al., 2016; the 1.1 revision) with torchvision's module names.

- :class:`SqueezeNetClassifier`: keys equal ``torchvision.models.squeezenet1_1``'s (``features.*``,
  ``classifier.1.*``).
- :class:`SqueezeNetFeatures`: a yaml backbone layer holding ``features[start:end]`` under the same keys::

      [-1, 1, SqueezeNetFeatures, [256, 0, 8]]   # conv, pool, 2 Fire, pool, 2 Fire: stride 8
      [-1, 1, SqueezeNetFeatures, [512, 8, 13]]  # pool, 4 Fire: stride 16

  torchvision's stem conv has no padding, which with its ceil-mode pools maps a 320-px input to 159/79/39/19
  pixels instead of 160/80/40/20, so feature maps no longer line up with a detector's strides. The yaml layer
  therefore pads the stem conv by 1 by default (``stem_padding``); weights load unchanged, only the one-pixel
  border differs from ImageNet pre-training. The classifier keeps torchvision's exact layout.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import List, Optional

import torch
from torch import Tensor, nn

from ...errors import ConfigError
from ..registry import register_module
from .classifier import ImageClassifier, Names, register_classifier
from .torchvision_weights import TorchvisionSlice


class Fire(nn.Module):
    """Fire module: 1x1 squeeze conv, then parallel 1x1 and 3x3 expand convs, concatenated (ReLU after each).

    Args:
        c1: input channels.
        squeeze: squeeze channels.
        expand1x1: output channels of the 1x1 expand conv.
        expand3x3: output channels of the 3x3 expand conv.
    """

    def __init__(self, c1: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(c1, squeeze, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, expand1x1 + expand3x3, H, W)."""
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat(
            (self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))), 1
        )


def _pool() -> nn.MaxPool2d:
    return nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True)


def _features(stem_padding: int) -> List[nn.Module]:
    """The 13 entries of torchvision's ``squeezenet1_1().features``."""
    return [
        nn.Conv2d(3, 64, kernel_size=3, stride=2, padding=stem_padding), nn.ReLU(inplace=True), _pool(),
        Fire(64, 16, 64, 64), Fire(128, 16, 64, 64), _pool(),
        Fire(128, 32, 128, 128), Fire(256, 32, 128, 128), _pool(),
        Fire(256, 48, 192, 192), Fire(384, 48, 192, 192), Fire(384, 64, 256, 256), Fire(512, 64, 256, 256),
    ]


# output channels after features[i]
_OUT_CHANNELS = (64, 64, 64, 128, 128, 128, 256, 256, 256, 384, 384, 512, 512)


def init_weights(model: nn.Module, final_conv: Optional[nn.Module] = None) -> None:
    """torchvision's SqueezeNet initialisation: Kaiming-uniform convs, N(0, 0.01) final conv, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            if m is final_conv:
                nn.init.normal_(m.weight, mean=0.0, std=0.01)
            else:
                nn.init.kaiming_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class SqueezeNetClassifier(ImageClassifier):
    """SqueezeNet 1.1 classifier, state_dict-compatible with ``torchvision.models.squeezenet1_1``.

    The head is dropout -> 1x1 conv to ``num_classes`` -> ReLU -> global average pool, as in torchvision
    (so logits are non-negative).

    Args:
        num_classes: number of logits.
        dropout: dropout before the final conv.
        names: class names.
    """

    head_prefixes = ("classifier.1.",)

    def __init__(self, num_classes: int = 1000, dropout: float = 0.5, names: Names = None) -> None:
        super().__init__(num_classes, names)
        self.features = nn.Sequential(*_features(stem_padding=0))
        final_conv = nn.Conv2d(512, num_classes, kernel_size=1)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout), final_conv, nn.ReLU(inplace=True),
                                        nn.AdaptiveAvgPool2d((1, 1)))
        init_weights(self, final_conv)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised image -> (B, num_classes) logits."""
        return torch.flatten(self.classifier(self.features(x)), 1)


@register_module(channels="fixed")
class SqueezeNetFeatures(TorchvisionSlice):
    """``torchvision.models.squeezenet1_1().features[start:end]`` as one yaml layer, keys ``features.<i>.*``.

    Args:
        c2: output channels the yaml declares; must equal the slice's real output width.
        start: first feature index (0 = the stride-2 stem conv, which takes the RGB image).
        end: one past the last feature index (at most 13).
        stem_padding: padding of the stem conv: 1 keeps feature maps at exactly H/4, H/8, H/16 for even
            input sizes; 0 is torchvision's classifier layout.

    Raises:
        ConfigError: the slice is empty or out of range, or ``c2`` is not its output width.
    """

    torchvision_arch = "squeezenet1_1"

    def __init__(self, c2: int, start: int, end: int, stem_padding: int = 1) -> None:
        super().__init__()
        if not 0 <= start < end <= len(_OUT_CHANNELS):
            raise ConfigError(f"SqueezeNetFeatures slice [{start}:{end}] must satisfy 0 <= start < end <= "
                              f"{len(_OUT_CHANNELS)}")
        if _OUT_CHANNELS[end - 1] != c2:
            raise ConfigError(f"SqueezeNetFeatures [{start}:{end}] outputs {_OUT_CHANNELS[end - 1]} channels; "
                              f"set its first yaml argument to {_OUT_CHANNELS[end - 1]} (got {c2})")
        layers = _features(stem_padding)
        self.features = nn.Sequential(OrderedDict((str(i), layers[i]) for i in range(start, end)))
        init_weights(self)

    def forward(self, x: Tensor) -> Tensor:
        """(B, C_in, H, W) -> (B, c2, H / s, W / s), s = the slice's total stride."""
        return self.features(x)


register_classifier("squeezenet1_1", SqueezeNetClassifier)
