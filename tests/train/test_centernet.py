"""CenterNet-style detector: targets, loss, a short training run, export to every CPU backend with agreeing boxes."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from lite_deploy.cli import main
from lite_deploy.data.shapes import CLASSES, generate_shapes
from lite_deploy.models import build_model, list_configs, load_model
from lite_deploy.models.centernet import CenterNetModel
from lite_deploy.runtime import Detector
from lite_deploy.runtime.compare import pair_detections, sample_images
from lite_deploy.train.centernet import CenterNetLoss, build_targets, draw_gaussian, gaussian_radius, train_detector
from lite_deploy.train.trainer import TrainConfig

IMGSZ = 64


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("cn-data"), train=4, val=2, seed=3, imgsz=IMGSZ, progress=False)


@pytest.fixture(scope="module")
def trained(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One epoch of CenterNet training on 4 images (through the detector entry point, which picks CenterNet)."""
    project = tmp_path_factory.mktemp("cn-runs")
    config = TrainConfig(data=str(tiny_data), cfg="centernet-mobilenetv2", epochs=1, imgsz=IMGSZ, batch=2,
                         workers=0, project=str(project), name="run", val_batch=2, nominal_batch=2,
                         warmup_epochs=0)
    return train_detector(config, progress=False)


def test_model_outputs_and_config() -> None:
    assert "centernet-mobilenetv2" in list_configs()
    model = build_model("centernet-mobilenetv2", nc=3)
    assert isinstance(model, CenterNetModel) and model.task == "detect"
    assert model.output_stride == 4 and float(model.stride.max()) == 32
    x = torch.rand(2, 3, 96, 64)
    logits, wh, reg = model.train()(x)
    assert logits.shape == (2, 3, 24, 16) and wh.shape == reg.shape == (2, 2, 24, 16)
    hm = model.eval()(x)[0]
    torch.testing.assert_close(hm, model.eval()(x)[0])
    assert ((hm > 0) & (hm < 1)).all()
    head = model.model[-1]
    assert torch.allclose(head.hm[-1].bias, torch.full((3,), -math.log(9)))  # -2.19: a prior of 0.1


def test_gaussian_targets() -> None:
    heatmap = np.zeros((6, 7), np.float32)
    draw_gaussian(heatmap, 0, 5, 2)  # at a corner: clipped, peak 1
    assert heatmap[5, 0] == 1 and heatmap[5, 2] == pytest.approx(np.exp(-4 / (2 * (5 / 6) ** 2)))
    assert heatmap[:3].max() == 0 and heatmap[:, 3:].max() == 0
    assert gaussian_radius(8, 4) == pytest.approx(1.4712, abs=1e-3)
    labels = torch.tensor([[0, 1, 0.5, 0.5, 0.25, 0.5], [1, 0, 0.99, 0.01, 0.1, 0.1], [1, 2, 0.5, 0.5, 0.0, 0.2]])
    hm, b, y, x, wh, offset = build_targets(labels, 2, 3, (16, 16))
    assert hm.shape == (2, 3, 16, 16) and int((hm == 1).sum()) == 2  # the zero-width box gets no target
    assert b.tolist() == [0, 1] and y.tolist() == [8, 0] and x.tolist() == [8, 15]
    torch.testing.assert_close(wh, torch.tensor([[4.0, 8.0], [1.6, 1.6]]))
    torch.testing.assert_close(offset, torch.tensor([[0.0, 0.0], [0.84, 0.16]]))
    assert hm[0, 1, 8, 8] == 1 and hm[1, 0, 0, 15] == 1 and hm[:, 2].max() == 0


def test_training_steps_lower_the_loss() -> None:
    torch.manual_seed(0)
    model = build_model("centernet-mobilenetv2", nc=2).train()
    images = torch.rand(2, 3, IMGSZ, IMGSZ)
    labels = torch.tensor([[0, 0, 0.3, 0.4, 0.3, 0.4], [1, 1, 0.6, 0.5, 0.5, 0.3]])
    targets = build_targets(labels, 2, 2, (IMGSZ // 4, IMGSZ // 4))
    loss_fn = CenterNetLoss()
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    losses = []
    for _ in range(8):
        loss, parts = loss_fn(model(images), targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        assert parts.shape == (3,) and torch.isfinite(parts).all()
    assert losses[-1] < 0.7 * losses[0]


def test_training_run_checkpoints_and_val(trained: dict, tiny_data: Path, tmp_path: Path) -> None:
    rows = list(csv.DictReader(open(Path(trained["save_dir"]) / "results.csv")))
    assert list(rows[0])[:4] == ["epoch", "hm_loss", "wh_loss", "offset_loss"] and len(rows) == 1
    model = load_model(trained["best"])
    assert isinstance(model, CenterNetModel) and tuple(model.names.values()) == CLASSES
    assert 0 <= trained["map50_95"] <= trained["map50"] <= 1
    assert main(["val", trained["last"], "--data", str(tiny_data), "--imgsz", str(IMGSZ)]) == 0


def test_interrupted_run_resumes_with_the_centernet_trainer(tiny_data: Path, tmp_path: Path,
                                                            interrupt_after_first_validation) -> None:
    from lite_deploy.train.centernet import CenterNetTrainer

    config = TrainConfig(data=str(tiny_data), cfg="centernet-mobilenetv2", epochs=2, imgsz=IMGSZ, batch=4, workers=0,
                         project=str(tmp_path), name="run", val_batch=2, nominal_batch=4, warmup_epochs=0)
    restore = interrupt_after_first_validation(CenterNetTrainer)
    with pytest.raises(KeyboardInterrupt):
        train_detector(config, progress=False)
    restore()
    results = train_detector(resume=str(tmp_path / "run"), progress=False)
    rows = list(csv.DictReader(open(tmp_path / "run" / "results.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2"] and "hm_loss" in rows[1]
    assert isinstance(load_model(results["last"]), CenterNetModel)


def _agree(reference, artifact, conf: float) -> None:
    """Every confident detection has a same-class partner with IoU >= 0.99 (near-ties of peaks excused)."""
    ref = (reference.boxes, reference.scores, reference.class_ids)
    art = (artifact.boxes, artifact.scores, artifact.class_ids)
    match = pair_detections(ref, art, iou=0.99, conf=conf, margin=1e-4)
    assert match.ok and match.min_iou >= 0.99 and match.matched >= 0.9 * len(reference), match


def test_export_to_every_cpu_backend_agrees_with_pt(trained: dict, tmp_path: Path) -> None:
    import onnx

    from lite_deploy.export.exporter import export

    artifacts = export(trained["best"], "onnx,openvino,tflite", imgsz=IMGSZ, out=tmp_path / "export")
    graph = onnx.load(str(artifacts["onnx"])).graph
    assert [o.name for o in graph.output] == ["hm", "wh", "reg"]
    assert next(n for n in graph.node if "hm" in n.output).op_type == "Sigmoid"  # INT8 tools keep it in float
    images = sample_images(4, seed=5)
    with Detector.load(trained["best"], conf=0.0, imgsz=IMGSZ) as det:
        reference = det(images)
        assert det.spec.output_layout == "centernet" and det.spec.strides == (4,)
    conf = float(np.median(np.concatenate([r.scores for r in reference])))  # about half the peaks count
    for target, path in artifacts.items():
        with Detector.load(path, conf=0.0) as det:
            assert det.spec.output_layout == "centernet" and det.spec.strides == (4,), target
            for ref, art in zip(reference, det(images)):
                assert len(ref) == 100  # top-k of CenterNet
                _agree(ref[ref.scores > conf], art[art.scores > conf], conf)
    with pytest.raises(ValueError, match="anchor-based"):
        export(trained["best"], "onnx", imgsz=IMGSZ, nms=True, out=tmp_path / "nms")
