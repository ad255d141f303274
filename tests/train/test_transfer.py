"""A detector started from torchvision ImageNet weights (a local state_dict) with its backbone frozen."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Dict, List

import pytest
import torch
import torchvision

from lite_deploy.cli import main
from lite_deploy.data.shapes import generate_shapes
from lite_deploy.train.trainer import Trainer


def test_backbone_weights_load_exactly_and_freeze_keeps_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    reference = torchvision.models.mobilenet_v2(weights=None).state_dict()
    pth = tmp_path / "mobilenet_v2.pth"
    torch.save(reference, pth)
    data = generate_shapes(tmp_path / "data", train=4, val=2, seed=4, imgsz=64, progress=False)
    built: List[torch.nn.Module] = []
    states: List[Dict[str, torch.Tensor]] = []
    real_build, real_save = Trainer.build_model, Trainer._save

    def build(self, names):
        model = real_build(self, names)
        built.append({k: v.clone() for k, v in model.state_dict().items()})
        return model

    def save(self, ema, model, optimizer, epoch, results, improved):
        if not results:
            states.append({k: v.detach().clone() for k, v in model.named_parameters()})
        real_save(self, ema, model, optimizer, epoch, results, improved)

    monkeypatch.setattr(Trainer, "build_model", build)
    monkeypatch.setattr(Trainer, "_save", save)
    caplog.set_level(logging.INFO, logger="lite_deploy.train.trainer")
    assert main(["train", "--cfg", "mobilenetv2-gsconvns", "--backbone-weights", str(pth), "--data", str(data),
                 "--imgsz", "64", "--batch", "2", "--nominal-batch", "2", "--epochs", "2", "--workers", "0",
                 "--warmup-epochs", "0", "--val-every", "9", "--freeze", "backbone", "--freeze-epochs", "1",
                 "--project", str(tmp_path / "runs")]) == 0
    assert "loaded 306 torchvision tensors" in caplog.text and "left initialised): model.3" in caplog.text

    # every backbone tensor (layers 0-2 hold torchvision's features 0-17) is the file's, exactly
    start = built[0]
    backbone = {k: v for k, v in start.items() if k.split(".")[1] in ("0", "1", "2")}
    assert len(backbone) == 306
    for key, value in backbone.items():
        assert torch.equal(value, reference[key.split(".", 2)[2]]), key
    # epoch 1 (frozen): the yaml's backbone (torchvision slices 0-2 and SPPF 3) bit-identical, the rest trained;
    # epoch 2 (unfrozen): the backbone trains too
    frozen = [k for k in states[0] if k.split(".")[1] in ("0", "1", "2", "3")]
    assert "159 parameters of 4 layers frozen" in caplog.text
    assert frozen and all(torch.equal(states[0][k], start[k]) for k in frozen)
    assert any(not torch.equal(states[0][k], start[k]) for k in states[0] if k not in frozen)
    assert any(not torch.equal(states[1][k], start[k]) for k in frozen)


def test_backbone_weights_refused_for_a_model_without_torchvision_layers(tmp_path: Path, capsys) -> None:
    data = generate_shapes(tmp_path / "data", train=2, val=1, seed=4, imgsz=64, progress=False)
    torch.save(torchvision.models.mobilenet_v2(weights=None).state_dict(), tmp_path / "m.pth")
    assert main(["train", "--cfg", "yolov5n", "--backbone-weights", str(tmp_path / "m.pth"), "--data", str(data),
                 "--imgsz", "64", "--epochs", "1", "--project", str(tmp_path / "runs")]) == 2
    assert "no torchvision-compatible layers" in capsys.readouterr().err
    assert main(["train", "--cfg", "yolov5n", "--freeze", "99", "--data", str(data), "--imgsz", "64",
                 "--epochs", "1", "--project", str(tmp_path / "runs")]) == 2
    assert "--freeze '99': give 'backbone' or a layer count from 1 to 24" in capsys.readouterr().err
