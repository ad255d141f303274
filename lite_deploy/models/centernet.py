"""CenterNet-style anchor-free detector (Zhou et al., "Objects as Points", 2019) built from a model yaml.

The yaml's layers up to the last one form the backbone and an upsampling neck that ends at stride 4 (see
``cfg/centernet-mobilenetv2.yaml``: MobileNetV2 features, three nearest-upsample + 3x3 conv stages with skip
connections from the backbone). The last layer is a :class:`CenterNetHead` with three branches per stride-4 cell:

- ``hm`` (B, nc, H/4, W/4): class heatmap, a sigmoid of logits whose bias starts at -2.19 (prior 0.1);
- ``wh`` (B, 2, H/4, W/4): box width and height in output cells (x 4 = input pixels);
- ``reg`` (B, 2, H/4, W/4): offset of the box centre inside its cell, in cells.

In training the model returns ``(hm logits, wh, reg)``; in eval mode (and so in every export) ``(hm, wh, reg)``
with the sigmoid applied. The sigmoid is the last node before the ``hm`` output, so INT8 tools can keep it in float
by naming that node. The runtime decodes these outputs by 3x3 peak extraction and top-k
(:mod:`lite_deploy.runtime.pipeline.centernet`), declared by the spec's output layout ``centernet``.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import torch
from torch import nn

from ..errors import ConfigError
from .registry import register_module
from .yolo import BaseModel, initialize_weights

HM_PRIOR = 0.1  # initial heatmap score: bias = -log((1 - p) / p) = -2.19
WH_PRIOR = 8.0  # initial box side in output cells (32 px): boxes of an untrained model are not degenerate


def _branch(c1: int, hidden: int, c2: int) -> nn.Sequential:
    """3x3 conv -> ReLU -> 1x1 conv (CenterNet's head branch)."""
    return nn.Sequential(nn.Conv2d(c1, hidden, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, c2, 1))


@register_module(channels="prepend")
class CenterNetHead(nn.Module):
    """The ``hm``, ``wh`` and ``reg`` branches over one stride-4 feature map.

    Args:
        c1: input channels (the neck's last layer).
        nc: number of classes.
        head_conv: hidden channels of each branch.
    """

    def __init__(self, c1: int, nc: int, head_conv: int = 64) -> None:
        super().__init__()
        self.nc = nc
        self.hm = _branch(c1, head_conv, nc)
        self.wh = _branch(c1, head_conv, 2)
        self.reg = _branch(c1, head_conv, 2)
        nn.init.constant_(self.hm[-1].bias, -math.log((1 - HM_PRIOR) / HM_PRIOR))
        nn.init.constant_(self.wh[-1].bias, WH_PRIOR)

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, c1, h, w) -> ``(hm, wh, reg)``: (B, nc, h, w) logits in training, sigmoid scores otherwise;
        (B, 2, h, w); (B, 2, h, w)."""
        hm = self.hm(x)
        return (hm if self.training else hm.sigmoid()), self.wh(x), self.reg(x)


class CenterNetModel(BaseModel):
    """Detector whose yaml ends with a :class:`CenterNetHead`.

    ``forward(x)`` with x (B, 3, H, W), H and W multiples of :attr:`stride` (the backbone's largest stride, 32),
    returns ``(hm, wh, reg)`` at :attr:`output_stride` (see the module docstring).

    Attributes:
        stride: buffer (1,): the largest network stride; input sizes must be multiples of it.
        output_stride: input pixels per heatmap cell (4).
        output_layout: ``"centernet"``, the spec's output layout of its exports.
    """

    task = "detect"
    output_layout = "centernet"

    def __init__(self, cfg: Dict[str, Any], ch: int = 3, nc: Optional[int] = None):
        super().__init__(cfg, ch, nc)
        if not isinstance(self.model[-1], CenterNetHead):
            raise ConfigError("a CenterNet model yaml must end with a CenterNetHead layer")
        s = 256
        was_training = self.training
        self.eval()
        with torch.no_grad():
            hm = self.forward(torch.zeros(1, ch, s, s))[0]
        self.train(was_training)
        self.output_stride = s // hm.shape[-1]
        self.register_buffer("stride", torch.tensor([float(cfg.get("stride", 32))]), persistent=False)
        if self.stride.item() % self.output_stride:
            raise ConfigError(f"the yaml's stride {self.stride.item():g} is not a multiple of the heatmap stride "
                              f"{self.output_stride}")
        initialize_weights(self)

    @property
    def output_strides(self) -> Tuple[int]:
        """The heatmap stride as the spec's ``strides``."""
        return (self.output_stride,)


CenterNetHead.model_class = CenterNetModel  # the yaml parser builds this model for yamls ending in the head
