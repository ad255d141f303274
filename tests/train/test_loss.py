"""YOLOv5 loss semantics: anchor matching, neighbour cells, CIoU, and a loss that falls when optimised."""

from __future__ import annotations

import math

import pytest
import torch

from lite_deploy.models import build_model
from lite_deploy.train.loss import DetectionLoss, bbox_ciou, scaled_loss_gains
from lite_deploy.train.trainer import make_optimizer


@pytest.fixture(scope="module")
def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model("yolov5n", nc=3)


def test_target_assignment(model: torch.nn.Module) -> None:
    """A 16 px box at (0.3, 0.55) of a 64 px image: 3 anchors x 3 cells on P3, 2 anchors x 3 cells on P4, none on P5."""
    loss = DetectionLoss(model, scaled_loss_gains(3, 3, 64))
    preds = [torch.zeros(1, 3, s, s, 8) for s in (8, 4, 2)]
    targets = torch.tensor([[0, 1, 0.3, 0.55, 0.25, 0.25]])
    tcls, tbox, indices, anchors = loss.build_targets(preds, targets)
    assert [len(c) for c in tcls] == [9, 6, 0]
    b, a, gj, gi = indices[0]
    cells = sorted(set(zip(gj.tolist(), gi.tolist())))
    assert cells == [(3, 2), (4, 1), (4, 2)]  # own cell, the left and the upper neighbour (centre at 2.4, 4.4)
    assert sorted(set(a.tolist())) == [0, 1, 2] and set(tcls[0].tolist()) == {1}
    own = (gj == 4) & (gi == 2)
    torch.testing.assert_close(tbox[0][own][0], torch.tensor([0.4, 0.4, 2.0, 2.0]))
    left = (gj == 4) & (gi == 1)
    torch.testing.assert_close(tbox[0][left][0, :2], torch.tensor([1.4, 0.4]))
    assert sorted(set(indices[1][1].tolist())) == [0, 1]  # P4's third anchor is > 4x taller than the box
    torch.testing.assert_close(anchors[0], model.model[-1].anchors[0][a])


def test_ciou() -> None:
    box = torch.tensor([[5.0, 5.0, 2.0, 4.0]])
    torch.testing.assert_close(bbox_ciou(box, box), torch.tensor([1.0]), atol=1e-6, rtol=0)
    shifted = torch.tensor([[6.0, 5.0, 2.0, 4.0]])
    # IoU 1/3, centre distance 1, enclosing diagonal^2 = 3^2 + 4^2, same aspect
    torch.testing.assert_close(bbox_ciou(box, shifted), torch.tensor([1 / 3 - 1 / 25]), atol=1e-6, rtol=0)
    other = torch.tensor([[5.0, 5.0, 4.0, 2.0]])
    v = 4 / math.pi**2 * (math.atan(2) - math.atan(0.5)) ** 2
    iou = 4 / 12
    expected = iou - (0 + v * v / (v - iou + 1))
    torch.testing.assert_close(bbox_ciou(box, other), torch.tensor([expected]), atol=1e-6, rtol=0)


def test_gains_scale_like_yolov5() -> None:
    assert scaled_loss_gains(3, 80, 640) == pytest.approx({"box": 0.05, "cls": 0.5, "obj": 1.0})
    g = scaled_loss_gains(3, 6, 320)
    assert g["cls"] == pytest.approx(0.5 * 6 / 80) and g["obj"] == pytest.approx(0.25)


def test_loss_falls_on_a_fixed_batch() -> None:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    net = build_model("yolov5n", nc=3).train()
    loss_fn = DetectionLoss(net, scaled_loss_gains(3, 3, 96))
    images = torch.rand(2, 3, 96, 96)
    targets = torch.tensor([[0, 0, 0.3, 0.3, 0.2, 0.25], [0, 2, 0.7, 0.6, 0.4, 0.3], [1, 1, 0.5, 0.5, 0.5, 0.6]])
    optimizer = make_optimizer(net, 0.03, 0.9, 5e-4)
    losses = []
    for _ in range(40):
        loss, parts = loss_fn(net(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert parts.shape == (3,) and torch.isfinite(parts).all()
    assert losses[-1] < 0.6 * losses[0] and min(losses[-5:]) < min(losses[:5]), losses
