"""YOLOv5's detection loss (``ComputeLoss``), re-implemented from its documented behaviour.

Target assignment, per level: a target is matched to each anchor whose width and height ratios to it are all
within ``anchor_t`` (default 4), and is assigned to its own grid cell plus the two neighbouring cells whose borders
its centre lies within half a cell of (``g = 0.5``, so three cells per target and anchor, fewer at the image
edge). Box regression (``xy = 2 * sigmoid - 0.5`` relative to the cell, ``wh = (2 * sigmoid)^2 * anchor``) is
trained with CIoU; objectness with BCE towards the matched boxes' (detached, clamped) IoU (``gr = 1``), weighted per
level by ``balance`` = [4.0, 1.0, 0.4] for three levels; classes with BCE (one-hot, no smoothing). The three terms
are multiplied by the ``box``, ``obj`` and ``cls`` gains and the sum by the batch size.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence, Tuple

import torch
from torch import nn

# YOLOv5 hyp.scratch-low gains for 3 levels, 80 classes, 640 px; see scaled_loss_gains
BOX_GAIN, CLS_GAIN, OBJ_GAIN = 0.05, 0.5, 1.0
ANCHOR_T = 4.0


def scaled_loss_gains(
    nl: int, nc: int, imgsz: int, box: float = BOX_GAIN, cls: float = CLS_GAIN, obj: float = OBJ_GAIN
) -> Dict[str, float]:
    """Loss gains scaled to the model and input size as YOLOv5's ``train.py`` does.

    ``box *= 3 / nl``, ``cls *= nc / 80 * 3 / nl``, ``obj *= (imgsz / 640) ** 2 * 3 / nl``.
    """
    return {
        "box": box * 3 / nl,
        "cls": cls * nc / 80 * 3 / nl,
        "obj": obj * (imgsz / 640) ** 2 * 3 / nl,
    }


def bbox_ciou(box1: torch.Tensor, box2: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Complete IoU of matching rows of two (n, 4) ``cx cy w h`` box sets.

    CIoU = IoU - (centre distance^2 / enclosing diagonal^2) - alpha * v, with ``v`` the aspect-ratio term
    ``4 / pi^2 * (atan(w2/h2) - atan(w1/h1))^2`` and ``alpha = v / (v - IoU + 1)`` (not differentiated).

    Returns:
        (n,) CIoU in [-1.5, 1].
    """
    (x1, y1, w1, h1), (x2, y2, w2, h2) = box1.unbind(-1), box2.unbind(-1)
    b1x1, b1x2, b1y1, b1y2 = x1 - w1 / 2, x1 + w1 / 2, y1 - h1 / 2, y1 + h1 / 2
    b2x1, b2x2, b2y1, b2y2 = x2 - w2 / 2, x2 + w2 / 2, y2 - h2 / 2, y2 + h2 / 2
    h1, h2 = h1.clamp(min=eps), h2.clamp(min=eps)
    inter = (torch.minimum(b1x2, b2x2) - torch.maximum(b1x1, b2x1)).clamp(0) * (
        torch.minimum(b1y2, b2y2) - torch.maximum(b1y1, b2y1)
    ).clamp(0)
    union = w1 * h1 + w2 * h2 - inter + eps
    iou = inter / union
    cw = torch.maximum(b1x2, b2x2) - torch.minimum(b1x1, b2x1)
    ch = torch.maximum(b1y2, b2y2) - torch.minimum(b1y1, b2y1)
    c2 = cw**2 + ch**2 + eps
    rho2 = ((x2 - x1) ** 2 + (y2 - y1) ** 2)
    v = (4 / math.pi**2) * (torch.atan(w2 / h2) - torch.atan(w1 / h1)) ** 2
    with torch.no_grad():
        alpha = v / (v - iou + (1 + eps))
    return iou - (rho2 / c2 + v * alpha)


class DetectionLoss:
    """YOLOv5 ``ComputeLoss`` for a model whose last layer is a ``Detect`` head.

    Args:
        model: the detector (its ``Detect`` supplies ``anchors`` in grid units (nl, na, 2), ``nc``, ``na``,
            ``nl``).
        gains: ``box``, ``obj``, ``cls`` multipliers (see :func:`scaled_loss_gains`).
        anchor_t: largest allowed width/height ratio between a target and an anchor.
        balance: objectness weight of each level (default [4.0, 1.0, 0.4] for 3 levels).
    """

    offset_g = 0.5  # how close to a cell border (in cells) a centre must be to also use the neighbour cell

    def __init__(
        self,
        model: nn.Module,
        gains: Dict[str, float],
        anchor_t: float = ANCHOR_T,
        balance: Sequence[float] = (),
    ) -> None:
        head = model.model[-1]
        self.nc, self.na, self.nl = head.nc, head.na, head.nl
        self.anchors = head.anchors  # (nl, na, 2) grid units
        self.gains = dict(gains)
        self.anchor_t = anchor_t
        self.balance = list(balance) or ([4.0, 1.0, 0.4] if self.nl == 3 else [4.0, 1.0, 0.25, 0.06, 0.02][: self.nl])
        self.bce = nn.BCEWithLogitsLoss()

    def __call__(self, preds: List[torch.Tensor], targets: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """The loss of one batch.

        Args:
            preds: per level (B, na, ny, nx, 5 + nc) raw outputs (the model's training-mode forward).
            targets: (n, 6) rows ``image_index, class, cx, cy, w, h`` normalised to the input size.

        Returns:
            ``(loss, parts)``: the scalar to back-propagate (sum of the terms times the batch size) and the
            detached (3,) ``box, obj, cls`` terms.
        """
        device = targets.device
        lbox = torch.zeros(1, device=device)
        lobj = torch.zeros(1, device=device)
        lcls = torch.zeros(1, device=device)
        tcls, tbox, indices, anchors = self.build_targets(preds, targets)
        for i, pi in enumerate(preds):
            b, a, gj, gi = indices[i]
            tobj = torch.zeros(pi.shape[:4], dtype=pi.dtype, device=device)
            n = b.shape[0]
            if n:
                pxy, pwh, _, pcls = pi[b, a, gj, gi].split((2, 2, 1, self.nc), 1)
                pxy = pxy.sigmoid() * 2 - 0.5
                pwh = (pwh.sigmoid() * 2) ** 2 * anchors[i]
                iou = bbox_ciou(torch.cat((pxy, pwh), 1), tbox[i])
                lbox += (1.0 - iou).mean()
                tobj[b, a, gj, gi] = iou.detach().clamp(0).to(tobj.dtype)
                if self.nc > 1:
                    t = torch.zeros_like(pcls)
                    t[torch.arange(n, device=device), tcls[i]] = 1.0
                    lcls += self.bce(pcls, t)
            lobj += self.bce(pi[..., 4], tobj) * self.balance[i]
        lbox *= self.gains["box"]
        lobj *= self.gains["obj"]
        lcls *= self.gains["cls"]
        batch = preds[0].shape[0]
        return (lbox + lobj + lcls) * batch, torch.cat((lbox, lobj, lcls)).detach()

    def build_targets(
        self, preds: List[torch.Tensor], targets: torch.Tensor
    ) -> Tuple[List[torch.Tensor], List[torch.Tensor], List[Tuple[torch.Tensor, ...]], List[torch.Tensor]]:
        """Assign targets to anchors and grid cells of every level.

        Returns:
            Per level: class ids (m,), target boxes (m, 4) ``x y`` relative to the cell and ``w h`` in grid
            units, indices ``(image, anchor, cell y, cell x)`` each (m,), and the anchors (m, 2) they use.
        """
        na, nt = self.na, targets.shape[0]
        device = targets.device
        tcls, tbox, indices, anch = [], [], [], []
        gain = torch.ones(7, device=device)
        anchor_index = torch.arange(na, device=device, dtype=torch.float32).view(na, 1).repeat(1, nt)
        # (na, nt, 7): image, class, cx, cy, w, h, anchor
        targets = torch.cat((targets.repeat(na, 1, 1), anchor_index[..., None]), 2)
        g = self.offset_g
        offsets = torch.tensor([[0, 0], [1, 0], [0, 1], [-1, 0], [0, -1]], device=device).float() * g
        for i in range(self.nl):
            anchors, shape = self.anchors[i], preds[i].shape
            gain[2:6] = torch.tensor(shape, device=device)[[3, 2, 3, 2]].float()  # grid x, y, x, y
            t = targets * gain
            if nt:
                ratio = t[..., 4:6] / anchors[:, None]
                t = t[torch.max(ratio, 1 / ratio).max(2)[0] < self.anchor_t]
                gxy = t[:, 2:4]
                gxi = gain[[2, 3]] - gxy
                left, top = ((gxy % 1 < g) & (gxy > 1)).T  # near the left / top border of its cell
                right, bottom = ((gxi % 1 < g) & (gxi > 1)).T  # near the right / bottom border
                use = torch.stack((torch.ones_like(left), left, top, right, bottom))
                t = t.repeat((5, 1, 1))[use]
                shift = (torch.zeros_like(gxy)[None] + offsets[:, None])[use]
            else:
                t = targets[0]
                shift = torch.zeros(0, 2, device=device)
            bc, gxy, gwh, a = t.split((2, 2, 2, 1), 1)
            a = a.long().view(-1)
            b, c = bc.long().T
            gij = (gxy - shift).long()
            gi, gj = gij.T
            gj = gj.clamp(0, shape[2] - 1)
            gi = gi.clamp(0, shape[3] - 1)
            indices.append((b, a, gj, gi))
            tbox.append(torch.cat((gxy - torch.stack((gi, gj), 1), gwh), 1))
            anch.append(anchors[a])
            tcls.append(c)
        return tcls, tbox, indices, anch
