"""ShuffleNet (V1; Zhang et al., CVPR 2018): pointwise group convolutions with a rank-4 channel shuffle.

Architecture of the paper's Table 1: a 3x3 stride-2 conv (24 channels) and a max-pool, then stages 2-4 with
4/8/4 units; the first unit of a stage has stride 2 and concatenates a 3x3 average-pooled shortcut, the others
add an identity shortcut. Each unit is 1x1 group conv (bottleneck = output/4) -> BN -> ReLU -> channel shuffle ->
3x3 depthwise conv -> BN -> 1x1 group conv -> BN. As in the paper, the first 1x1 conv of stage 2 is not grouped
(its input has only 24 channels). Stage widths for g = 1/2/3/4/8 are 144/200/240/272/384 at 1x (doubling per
stage); ``width_mult`` scales them (the stem is 12 channels at 0.5x and 48 at 2x, as in Megvii's reference
ShuffleNet-Series). The shuffle is the paper's: reshape channels to (g, n), transpose, flatten, done as one
gather (see :mod:`.shuffle`). No reference weights exist in torchvision; the attribute names are this
project's own.
"""

from __future__ import annotations

from typing import Dict, List

import torch
from torch import Tensor, nn

from .classifier import ImageClassifier, Names, register_classifier
from .shuffle import ChannelShuffle

STAGE_REPEATS = (4, 8, 4)
# groups -> stage-2 output channels at 1x (the paper's Table 1)
STAGE2_CHANNELS: Dict[int, int] = {1: 144, 2: 200, 3: 240, 4: 272, 8: 384}
STEM_CHANNELS: Dict[float, int] = {0.5: 12, 1.0: 24, 1.5: 24, 2.0: 48}


class ShuffleUnit(nn.Module):
    """One ShuffleNet unit.

    Args:
        c1: input channels.
        c2: output channels (with stride 2 the conv branch yields ``c2 - c1`` and the pooled input the rest).
        groups: groups of the 1x1 convolutions.
        stride: 1 (residual add) or 2 (concat with a 3x3 average-pooled shortcut).
        group_first: group the first 1x1 conv (False for the very first unit, as in the paper).

    Raises:
        ValueError: channel counts not divisible by ``groups``, or ``c1 != c2`` with stride 1.
    """

    def __init__(self, c1: int, c2: int, groups: int, stride: int, group_first: bool = True) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"ShuffleNet unit stride must be 1 or 2, got {stride}")
        if stride == 1 and c1 != c2:
            raise ValueError(f"a stride-1 ShuffleNet unit needs equal input and output channels, got {c1} -> {c2}")
        mid = c2 // 4
        out = c2 - c1 if stride == 2 else c2
        g1 = groups if group_first else 1
        for n in (mid, out) + ((c1,) if group_first else ()):
            if n % groups:
                raise ValueError(f"ShuffleNet with groups={groups} needs channel counts divisible by it; "
                                 f"unit {c1} -> {c2} has {n}")
        self.stride = stride
        self.compress = nn.Sequential(nn.Conv2d(c1, mid, 1, groups=g1, bias=False), nn.BatchNorm2d(mid),
                                      nn.ReLU(inplace=True))
        self.shuffle = ChannelShuffle(mid, groups) if groups > 1 else nn.Identity()
        self.depthwise = nn.Sequential(nn.Conv2d(mid, mid, 3, stride, 1, groups=mid, bias=False), nn.BatchNorm2d(mid))
        self.expand = nn.Sequential(nn.Conv2d(mid, out, 1, groups=groups, bias=False), nn.BatchNorm2d(out))
        self.shortcut = nn.AvgPool2d(3, 2, 1) if stride == 2 else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        """(B, c1, H, W) -> (B, c2, H / stride, W / stride)."""
        y = self.expand(self.depthwise(self.shuffle(self.compress(x))))
        if self.stride == 1:
            return torch.relu(x + y)
        return torch.cat((self.shortcut(x), torch.relu(y)), 1)


class ShuffleNetV1Classifier(ImageClassifier):
    """ShuffleNet (V1) ImageNet-style classifier.

    Args:
        num_classes: number of logits.
        groups: groups of the pointwise convolutions: 1, 2, 3, 4 or 8 (3 is the paper's default).
        width_mult: 0.5, 1.0, 1.5 or 2.0 (the paper's ``ShuffleNet s×``).
        names: class names.

    Raises:
        ValueError: unsupported ``groups`` or ``width_mult``, or a combination whose channels do not divide.
    """

    head_prefixes = ("fc.",)

    def __init__(self, num_classes: int = 1000, groups: int = 3, width_mult: float = 1.0,
                 names: Names = None) -> None:
        super().__init__(num_classes, names)
        if groups not in STAGE2_CHANNELS or float(width_mult) not in STEM_CHANNELS:
            raise ValueError(f"ShuffleNetV1 supports groups in {sorted(STAGE2_CHANNELS)} and width_mult in "
                             f"{sorted(STEM_CHANNELS)}, got groups={groups}, width_mult={width_mult}")
        self.groups = groups
        stem = STEM_CHANNELS[float(width_mult)]
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        c1 = stem
        for i, repeats in enumerate(STAGE_REPEATS):
            c2 = int(STAGE2_CHANNELS[groups] * width_mult) * 2**i
            units: List[nn.Module] = [ShuffleUnit(c1, c2, groups, 2, group_first=i > 0)]
            units += [ShuffleUnit(c2, c2, groups, 1) for _ in range(repeats - 1)]
            setattr(self, f"stage{i + 2}", nn.Sequential(*units))
            c1 = c2
        self.fc = nn.Linear(c1, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        """(B, 3, H, W) normalised image -> (B, num_classes) logits."""
        x = self.maxpool(self.stem(x))
        x = self.stage4(self.stage3(self.stage2(x)))
        return self.fc(x.mean([2, 3]))


register_classifier("shufflenetv1_g3", lambda **kw: ShuffleNetV1Classifier(groups=3, **kw))
