"""Model heads: YOLOv5's anchor-based :class:`Detect` and a :class:`Classify` head for classifiers."""

from __future__ import annotations

from typing import List, Sequence, Tuple, Union

import torch
import torch.nn.functional as F
from torch import nn

from .common import Conv, autopad
from .registry import register_module


@register_module(channels="head")
class Detect(nn.Module):
    """YOLOv5 detection head (v6.2-v7.0 maths; attribute names as YOLOv5 so state_dicts match).

    Attributes:
        anchors: buffer (nl, na, 2), anchor sizes in **grid units** of each level (pixels / stride).
        stride: non-persistent buffer (nl,), pixels per grid cell of each level (set by the model builder).
        grid, anchor_grid: plain lists of cached decode tensors, rebuilt whenever the input size changes.
        export: when True, ``forward`` returns ``(boxes, scores)`` built from 4-D tensors only (see
            :meth:`forward_export`); set by :func:`lite_deploy.models.deploy.prepare_for_export`.
        channels_last_decode: export decode on channels-last views (see :meth:`forward_export`); set by
            :func:`lite_deploy.models.deploy.channels_last_decode`.
    """

    def __init__(self, nc: int = 80, anchors: Sequence[Sequence[float]] = (), ch: Sequence[int] = (), inplace=True):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.grid: List[torch.Tensor] = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid: List[torch.Tensor] = [torch.empty(0) for _ in range(self.nl)]
        self.register_buffer("anchors", torch.tensor(anchors, dtype=torch.float32).view(self.nl, -1, 2))
        self.register_buffer("stride", torch.zeros(self.nl), persistent=False)
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.inplace = inplace
        self.export = False
        self.channels_last_decode = False

    def _apply(self, fn, recurse=True):
        # cached grids follow the device/dtype of the next forward pass
        self.reset_grids()
        return super()._apply(fn, recurse)

    def reset_grids(self) -> None:
        """Drop the cached decode grids (they are rebuilt on the next forward pass)."""
        self.grid = [torch.empty(0) for _ in range(self.nl)]
        self.anchor_grid = [torch.empty(0) for _ in range(self.nl)]

    def forward(self, x: List[torch.Tensor]):
        """Run the head on the P3..P5 feature maps.

        Returns:
            training: the list of raw per-level tensors (B, na, ny, nx, no).
            eval: ``(cat(z, 1), x)``: decoded (B, N, no) = xywh in input pixels, objectness, class scores
            (sigmoid), N ordered level -> anchor -> y -> x; and the raw list as in training.
            export: see :meth:`forward_export`.
        """
        if self.export:
            return self.forward_export(x)
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            if not self.training:
                if self.grid[i].shape[2:4] != x[i].shape[2:4]:
                    self.grid[i], self.anchor_grid[i] = self._make_grid(nx, ny, i)
                y = x[i].sigmoid()
                xy, wh, conf = y.split((2, 2, self.nc + 1), 4)
                xy = (xy * 2 + self.grid[i]) * self.stride[i]
                wh = (wh * 2) ** 2 * self.anchor_grid[i]
                z.append(torch.cat((xy, wh, conf), 4).view(bs, self.na * nx * ny, self.no))
        return x if self.training else (torch.cat(z, 1), x)

    def _make_grid(self, nx: int, ny: int, i: int) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cell offsets minus 0.5 (1, na, ny, nx, 2) and anchor sizes in pixels (1, na, ny, nx, 2) of level i."""
        d, t = self.anchors[i].device, self.anchors[i].dtype
        shape = 1, self.na, ny, nx, 2
        yv, xv = torch.meshgrid(torch.arange(ny, device=d, dtype=t), torch.arange(nx, device=d, dtype=t), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand(shape) - 0.5
        anchor_grid = (self.anchors[i] * self.stride[i]).view((1, self.na, 1, 1, 2)).expand(shape)
        return grid, anchor_grid

    def forward_export(self, x: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Export decode with no tensor of rank > 4 and no batch size baked in.

        The decode works on each level's (B, na, no, ny*nx) view of the convolution output, where every field
        (xy, wh, objectness, classes) is a contiguous block per anchor, and transposes only the finished boxes
        and scores to rows. Transposing the whole (no)-wide output first, then slicing fields off its last axis,
        gives the same numbers but costs a full extra pass: 1.2 ms of 24 on yolov5n at 640 in ONNX Runtime.
        With ``channels_last_decode`` the decode runs on channels-last views instead (:meth:`_forward_channels_last`).

        Returns:
            boxes: (B, N, 4) float, xyxy in input pixels.
            scores: (B, N, nc) float, objectness x class probability.
            N is ordered exactly as in eval mode (level -> anchor -> y -> x).
        """
        if self.channels_last_decode:
            return self._forward_channels_last(x)
        boxes, scores = [], []
        for i in range(self.nl):
            p = self.m[i](x[i])
            ny, nx = int(p.shape[2]), int(p.shape[3])
            p = p.reshape(-1, self.na, self.no, ny * nx)  # (B, na*no, ny, nx) -> (B, na, no, ny*nx)
            grid, anchor_px = self._export_grid(nx, ny, i, p.dtype, p.device)
            xy = (p[:, :, 0:2].sigmoid() * 2 + grid) * self.stride[i]
            wh = (p[:, :, 2:4].sigmoid() * 2) ** 2 * anchor_px
            box = torch.cat((xy - wh / 2, xy + wh / 2), 2)  # (B, na, 4, ny*nx)
            score = p[:, :, 4:5].sigmoid() * p[:, :, 5:].sigmoid()  # (B, na, nc, ny*nx)
            boxes.append(box.permute(0, 1, 3, 2).reshape(-1, self.na * ny * nx, 4))
            scores.append(score.permute(0, 1, 3, 2).reshape(-1, self.na * ny * nx, self.nc))
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def _forward_channels_last(self, x: List[torch.Tensor]) -> Tuple[torch.Tensor, torch.Tensor]:
        """:meth:`forward_export` for backends whose convolutions write channels-last (OpenVINO's CPU plugin).

        Each level's convolution is split in two with the same weights (box + objectness: 5 channels per anchor;
        classes: nc per anchor), so the wide class tensor is never sliced, and both are decoded on their
        (B, ny*nx, na, k) channels-last view, which such a backend gets from the convolution without a layout pass.
        The values agree with :meth:`forward_export` within float rounding of the convolutions. In OpenVINO it
        takes yolov5n's ``Reorder``, ``Transpose`` and ``VariadicSplit`` after the head from 4.9 to 2.2 ms (timings:
        :func:`~lite_deploy.models.deploy.channels_last_decode`); ONNX Runtime runs the other form faster (27.5
        against 29.2 ms).
        """
        boxes, scores = [], []
        for i in range(self.nl):
            conv = self.m[i]
            weight = conv.weight.view(self.na, self.no, *conv.weight.shape[1:])
            bias = conv.bias.view(self.na, self.no)
            fields = F.conv2d(x[i], weight[:, :5].reshape(self.na * 5, *weight.shape[2:]), bias[:, :5].reshape(-1))
            classes = F.conv2d(x[i], weight[:, 5:].reshape(self.na * self.nc, *weight.shape[2:]),
                               bias[:, 5:].reshape(-1))
            ny, nx = int(fields.shape[2]), int(fields.shape[3])
            fields = fields.permute(0, 2, 3, 1).reshape(-1, ny * nx, self.na, 5)  # (B, ny*nx, na, 5)
            grid, anchor_px = self._export_grid(nx, ny, i, fields.dtype, fields.device)
            grid, anchor_px = grid.permute(0, 3, 1, 2), anchor_px.permute(0, 3, 1, 2)  # (1, ny*nx, 1, 2), (1, 1, na, 2)
            xy = (fields[..., 0:2].sigmoid() * 2 + grid) * self.stride[i]
            wh = (fields[..., 2:4].sigmoid() * 2) ** 2 * anchor_px
            box = torch.cat((xy - wh / 2, xy + wh / 2), -1)  # (B, ny*nx, na, 4)
            score = fields[..., 4:5].sigmoid() * classes.permute(0, 2, 3, 1).reshape(-1, ny * nx, self.na,
                                                                                     self.nc).sigmoid()
            boxes.append(box.permute(0, 2, 1, 3).reshape(-1, self.na * ny * nx, 4))
            scores.append(score.permute(0, 2, 1, 3).reshape(-1, self.na * ny * nx, self.nc))
        return torch.cat(boxes, 1), torch.cat(scores, 1)

    def _export_grid(self, nx: int, ny: int, i: int, dtype, device) -> Tuple[torch.Tensor, torch.Tensor]:
        """Cell offsets minus 0.5 (1, 1, 2, ny*nx) in x-fastest order and anchors in pixels (1, na, 2, 1)."""
        yv, xv = torch.meshgrid(
            torch.arange(ny, dtype=dtype, device=device), torch.arange(nx, dtype=dtype, device=device), indexing="ij"
        )
        grid = torch.stack((xv, yv), 0).view(1, 1, 2, ny * nx) - 0.5
        anchor_px = (self.anchors[i] * self.stride[i]).view(1, self.na, 2, 1).to(dtype)
        return grid, anchor_px


@register_module(channels="prepend")
class Classify(nn.Module):
    """YOLOv5 v7.0 classification head: Conv to 1280 -> global average pool -> dropout -> Linear to ``c2`` logits.

    Input (B, c1, H, W) (or a list of such, concatenated on channels) -> (B, c2) logits, no softmax.
    """

    def __init__(self, c1: int, c2: int, k=1, s=1, p=None, g: int = 1, dropout: float = 0.0, act=True):
        super().__init__()
        c_ = 1280
        self.conv = Conv(c1, c_, k, s, autopad(k, p), g, act=act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(p=dropout, inplace=True)
        self.linear = nn.Linear(c_, c2)

    def forward(self, x: Union[torch.Tensor, List[torch.Tensor]]) -> torch.Tensor:
        if isinstance(x, list):
            x = torch.cat(x, 1)
        return self.linear(self.drop(self.pool(self.conv(x)).flatten(1)))
