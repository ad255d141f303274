"""Training runs end to end on a tiny generated set: checkpoints, validation, resume, fine-tuning."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lite_deploy.cli import main
from lite_deploy.data.shapes import CLASSES, generate_shapes
from lite_deploy.data.yolo import YoloDataset
from lite_deploy.errors import CheckpointError
from lite_deploy.models import load_model
from lite_deploy.train.data import AugmentConfig, TrainDataset
from lite_deploy.train.trainer import TrainConfig, Trainer, train, write_state


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("tiny"), train=6, val=3, seed=2, imgsz=96, progress=False)


def test_train_dataset_labels(tiny_data: Path) -> None:
    ds = YoloDataset.from_yaml(tiny_data, "train")
    plain = TrainDataset(ds, 96, augment=False)
    image, labels = plain[0]
    assert image.shape == (3, 96, 96) and image.dtype == torch.uint8
    # without augmentation the labels are the dataset's boxes, letterboxed like the image
    h, w = ds.load_image(0).shape[:2]
    r = 96 / max(h, w)
    expected = ds.labels[0][:, 1:].copy()
    expected[:, [0, 2]] *= w * r / 96
    expected[:, [1, 3]] *= h * r / 96
    expected[:, 0] += (96 - round(w * r)) / 2 / 96
    expected[:, 1] += (96 - round(h * r)) / 2 / 96
    np.testing.assert_allclose(labels[:, 2:].numpy(), expected, atol=1.5 / 96)
    torch.manual_seed(0)
    augmented = TrainDataset(ds, 96, augment=True, config=AugmentConfig(degrees=10, shear=2))
    images, targets = TrainDataset.collate([augmented[i] for i in range(len(ds))])
    assert images.shape == (6, 3, 96, 96) and targets.shape[1] == 6 and len(targets)
    assert set(targets[:, 0].long().tolist()) <= set(range(6))
    assert (targets[:, 2:] >= 0).all() and (targets[:, 2:] <= 1).all() and (targets[:, 4:] > 0).all()


def test_train_interrupt_resume_and_checkpoints(tiny_data: Path, tmp_path: Path,
                                                interrupt_after_first_validation) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(data=str(tiny_data), cfg="yolov5n", epochs=2, imgsz=96, batch=3, workers=0,
                         project=str(tmp_path), name="run", val_batch=3)
    restore = interrupt_after_first_validation(Trainer)
    with pytest.raises(KeyboardInterrupt):
        train(config, progress=False)
    weights = tmp_path / "run" / "weights"
    assert (weights / "last.pt").is_file() and (weights / "last.state.pt").is_file()
    restore()
    results = train(resume=str(tmp_path / "run"), progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["1", "2"]
    assert not (weights / "last.state.pt").exists()  # a finished run cannot be resumed
    assert 0 <= results["map50_95"] <= results["map50"] <= 1 and results["images"] == 3
    model = load_model(results["best"])
    assert tuple(model.names.values()) == CLASSES and model.model[-1].nc == 6
    assert (tmp_path / "run" / "pr_curve.png").is_file()
    curves = cv2.imread(str(tmp_path / "run" / "results.png"))  # 3 losses, P, R, mAP50, mAP50-95, lr: 5 x 2 panels
    assert curves is not None and curves.shape[:2] == (round(2.6 * 2 * 150), round(3.2 * 5 * 150))
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        train(resume=results["last"], progress=False)
    write_state(weights / "last.state.pt", {"epoch": 1})  # stopped after the last epoch's save, before the end
    with pytest.raises(CheckpointError, match="the run already trained all its 2 epochs; use its weights"):
        train(resume=results["last"], progress=False)
    # `lite-deploy val` on last.pt gives the numbers the trainer reported for it
    assert main(["val", results["last"], "--data", str(tiny_data), "--imgsz", "96", "--json", "--out",
                 str(tmp_path / "val")]) == 0
    saved = json.loads((tmp_path / "val" / "results.json").read_text())
    assert saved["map50_95"] == results["map50_95"] and saved["map50"] == results["map50"]


def test_short_run_beats_the_untrained_model_on_the_same_images(tmp_path: Path) -> None:
    """30 optimizer steps on 8 images lift mAP50 on those images far above the starting model's: the bundled demo
    detector with a new, untrained head for one class ("shape")."""
    from lite_deploy.assets import demo_weights
    from lite_deploy.eval.validate import validate
    from lite_deploy.models.checkpoint import save_checkpoint

    torch.set_num_threads(1)
    data = generate_shapes(tmp_path / "data", train=8, val=1, seed=3, imgsz=128, progress=False)
    text = data.read_text().replace("val: images/val", "val: images/train")  # judged on the images it trained on
    data.write_text(text.split("names:")[0] + "names:\n- shape\n")
    for label in (tmp_path / "data" / "labels" / "train").glob("*.txt"):
        label.write_text("".join("0 " + row.split(" ", 1)[1] for row in label.read_text().splitlines(keepends=True)))
    plain = AugmentConfig(mosaic=0.0, fliplr=0.0, scale=0.0, translate=0.0, hsv_h=0.0, hsv_s=0.0, hsv_v=0.0)
    config = TrainConfig(data=str(data), weights=str(demo_weights()), epochs=30, imgsz=128, batch=8, workers=0,
                         project=str(tmp_path), name="run", nominal_batch=8, warmup_epochs=0, optimizer="AdamW",
                         lr0=0.004, augment=plain, close_mosaic=0, ema_tau=5, val_every=1000)
    torch.manual_seed(config.seed)
    start = save_checkpoint(Trainer(config).build_model(("shape",)), tmp_path / "start.pt", imgsz=128)
    before = validate(start, data, imgsz=128, progress=False, verbose=False)
    after = train(config, progress=False)
    # measured: 0.22 after, with 1 or 2 threads
    assert before["map50"] < 0.05 and after["map50"] > before["map50"] + 0.1, (before["map50"], after["map50"])


def test_fine_tune_from_yolov5_with_other_classes(yolov5_fixtures: Path, tiny_data: Path) -> None:
    source = yolov5_fixtures / "yolov5n-v7-nc80.pt"
    trainer = Trainer(TrainConfig(data=str(tiny_data), weights=str(source), imgsz=96))
    model = trainer.build_model(CLASSES)
    reference = load_model(source).state_dict()
    own = model.state_dict()
    head = [k for k in own if k.startswith("model.24.m.")]
    assert len(head) == 6 and all(own[k].shape[0] == 3 * (5 + 6) for k in head)
    kept = [k for k in own if k not in head]
    assert all(torch.equal(own[k], reference[k]) for k in kept)  # backbone, neck and anchors transferred


def test_val_every_validates_at_the_period_and_the_end(tiny_data: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    config = TrainConfig(data=str(tiny_data), cfg="yolov5n", epochs=3, imgsz=96, batch=3, workers=0,
                         project=str(tmp_path), name="run", val_batch=3, val_every=2, nominal_batch=3)
    train(config, progress=False)
    rows = list(csv.DictReader((tmp_path / "run" / "results.csv").open()))
    assert [r["epoch"] for r in rows] == ["2", "3"]


def test_optimizers_keep_yolov5_parameter_groups() -> None:
    from lite_deploy.models import build_model
    from lite_deploy.train.trainer import make_optimizer

    model = build_model("yolov5n", nc=6)
    for algorithm, kind in (("SGD", torch.optim.SGD), ("AdamW", torch.optim.AdamW)):
        optimizer = make_optimizer(model, 0.01, 0.9, 5e-4, algorithm)
        assert isinstance(optimizer, kind)
        assert [g["weight_decay"] for g in optimizer.param_groups] == [0.0, 5e-4, 0.0]
        assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(model.parameters()))
    with pytest.raises(ValueError, match="unknown optimizer"):
        make_optimizer(model, 0.01, 0.9, 5e-4, "Adagrad")
