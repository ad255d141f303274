"""Classifiers end to end: image-folder data, bad input, transfer learning, training, validation, export."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from lite_deploy.cli import main
from lite_deploy.data.image_folder import ImageFolder
from lite_deploy.data.shapes import CLASSES
from lite_deploy.data.shapes_cls import generate_shapes_cls
from lite_deploy.errors import CheckpointError, ConfigError, DatasetError
from lite_deploy.eval.classify import validate_classifier
from lite_deploy.models import load_model
from lite_deploy.models.backbones import IMAGENET_MEAN, IMAGENET_STD, build_classifier, list_classifiers
from lite_deploy.models.checkpoint import save_checkpoint
from lite_deploy.runtime import Classifier
from lite_deploy.runtime.pipeline.preprocess import Preprocessor
from lite_deploy.train.classify import ClassifyConfig, ClassifyDataset, load_start_weights, train_classifier

IMGSZ = 64
ARCHS = tuple(list_classifiers())  # every registered classifier: a new one is tested without listing it


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def shapes_cls(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes_cls(tmp_path_factory.mktemp("cls"), train=24, val=12, seed=1, imgsz=80, progress=False)


def test_generator_is_deterministic_and_balanced(shapes_cls: Path, tmp_path: Path) -> None:
    assert main(["dataset", "shapes-cls", str(tmp_path / "again"), "--train", "24", "--val", "12", "--seed", "1",
                 "--imgsz", "80"]) == 0
    files = sorted(p.relative_to(shapes_cls) for p in shapes_cls.rglob("*.jpg"))
    assert files == sorted(p.relative_to(tmp_path / "again") for p in (tmp_path / "again").rglob("*.jpg"))
    assert all((shapes_cls / f).read_bytes() == (tmp_path / "again" / f).read_bytes() for f in files)
    folder = ImageFolder(shapes_cls, "val")
    assert folder.names == tuple(sorted(CLASSES)) and len(folder) == 12
    assert np.bincount(folder.labels).tolist() == [2] * 6
    assert folder.load_image(0).shape == (80, 80, 3)


def test_bad_datasets(tmp_path: Path) -> None:
    image = np.full((40, 40, 3), 128, np.uint8)
    with pytest.raises(DatasetError, match="no train/ folder"):
        ImageFolder(tmp_path, "val")
    (tmp_path / "train").mkdir()
    cv2.imwrite(str(tmp_path / "train" / "loose.jpg"), image)  # images, but no class folders
    with pytest.raises(DatasetError, match="holds no class folders"):
        ImageFolder(tmp_path, "train")
    for name in ("cat", "dog"):
        (tmp_path / "train" / name).mkdir()
    cv2.imwrite(str(tmp_path / "train" / "cat" / "a.jpg"), image)
    (tmp_path / "train" / "dog" / "notes.txt").write_text("not an image")
    with pytest.raises(DatasetError, match=r"dog: the class folder holds no images"):
        ImageFolder(tmp_path, "train")
    cv2.imwrite(str(tmp_path / "train" / "dog" / "b.png"), image)
    assert ImageFolder(tmp_path, "train").labels.tolist() == [0, 1]
    (tmp_path / "val" / "bird").mkdir(parents=True)
    with pytest.raises(DatasetError, match="'bird' is not among the classes"):
        ImageFolder(tmp_path, "val")
    with pytest.raises(DatasetError, match="no train/ folder"):
        train_classifier(ClassifyConfig(data=str(tmp_path / "missing")), progress=False)
    (tmp_path / "val" / "bird").rename(tmp_path / "val" / "cat")
    cv2.imwrite(str(tmp_path / "val" / "cat" / "c.jpg"), image)
    with pytest.raises(ConfigError, match="unknown classifier 'resnet50'"):
        train_classifier(ClassifyConfig(data=str(tmp_path), cfg="resnet50", imgsz=32, project=str(tmp_path / "r")),
                         progress=False)


def test_transfer_learning_reports_the_new_head(tmp_path: Path) -> None:
    torchvision = pytest.importorskip("torchvision")
    source = torchvision.models.mobilenet_v2(weights=None)  # torchvision's own module and keys, nothing downloaded
    torch.save(source.state_dict(), tmp_path / "mobilenet_v2.pth")
    model = build_classifier("mobilenetv2", num_classes=6)
    report = load_start_weights(model, str(tmp_path / "mobilenet_v2.pth"))
    assert "classifier.1.weight" in report and "head is new for the dataset's 6 classes" in report
    torch.testing.assert_close(model.features[5].conv[1][0].weight, source.features[5].conv[1][0].weight)
    # a lite-deploy checkpoint of the same architecture loads too, its head included when the classes agree
    save_checkpoint(model, tmp_path / "own.pt", imgsz=IMGSZ)
    again = build_classifier("mobilenetv2", num_classes=6)
    assert "head is new" not in load_start_weights(again, str(tmp_path / "own.pt"))
    torch.testing.assert_close(again.classifier[1].weight, model.classifier[1].weight)
    torch.save(build_classifier("shufflenetv2_x0_5").state_dict(), tmp_path / "shufflenet.pth")
    with pytest.raises(CheckpointError, match=r"does not fit mobilenetv2: \d+ of its tensors are missing"):
        load_start_weights(build_classifier("mobilenetv2", num_classes=6), str(tmp_path / "shufflenet.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pth"):
        load_start_weights(build_classifier("mobilenetv2", num_classes=6), str(tmp_path / "junk.pth"))


def test_preprocessing_is_the_spec_declared_one(shapes_cls: Path, tmp_path: Path) -> None:
    """The exported spec says resize + centre crop + ImageNet normalisation, and the runtime does exactly that, on
    the same crop the trainer validates with."""
    from lite_deploy.export.describe import describe

    model = build_classifier("shufflenetv2_x0_5", num_classes=6)
    spec = describe(model, imgsz=(IMGSZ, IMGSZ), target="onnx")
    assert (spec.task, spec.preprocess, spec.output_layout) == ("classify", "center_crop", "logits")
    assert spec.mean == IMAGENET_MEAN and spec.std == IMAGENET_STD and spec.crop_fraction == 0.875
    frame = np.random.default_rng(0).integers(0, 256, (90, 120, 3), dtype=np.uint8)
    blob = Preprocessor(spec)([frame])[0][0]
    side = math.floor(IMGSZ / 0.875)  # 73: short side resized to it, the long side in proportion
    resized = cv2.resize(frame, (int(side * 120 / 90), side), interpolation=cv2.INTER_LINEAR)
    top, left = round((side - IMGSZ) / 2), round((resized.shape[1] - IMGSZ) / 2)
    crop = resized[top:top + IMGSZ, left:left + IMGSZ, ::-1].astype(np.float32) / 255
    expected = ((crop - np.array(IMAGENET_MEAN, np.float32)) / np.array(IMAGENET_STD, np.float32)).transpose(2, 0, 1)
    np.testing.assert_allclose(blob, expected, rtol=1e-6, atol=1e-6)
    folder = ImageFolder(shapes_cls, "val")
    image, label = ClassifyDataset(folder, IMGSZ, augment=False)[3]
    assert label == folder.samples[3][1]
    spec_blob = Preprocessor(spec)([folder.load_image(3)])[0][0]
    np.testing.assert_allclose(((image.numpy() / 255).transpose(1, 2, 0) - IMAGENET_MEAN) / IMAGENET_STD,
                               spec_blob.transpose(1, 2, 0), atol=1e-5)


def test_training_steps_lower_the_loss(shapes_cls: Path) -> None:
    torch.manual_seed(0)
    folder = ImageFolder(shapes_cls, "train")
    images, labels = zip(*(ClassifyDataset(folder, IMGSZ, augment=True)[i] for i in range(0, 24, 2)))
    x = (torch.stack(images).float() / 255 - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(
        IMAGENET_STD).view(1, 3, 1, 1)
    y = torch.tensor(labels)
    model = build_classifier("shufflenetv1_g3", num_classes=6).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert set(labels) == set(range(6)) and losses[-1] < 0.7 * losses[0], losses


def test_train_val_and_cli(shapes_cls: Path, tmp_path: Path, capsys) -> None:
    results = train_classifier(ClassifyConfig(data=str(shapes_cls), cfg="shufflenetv2_x0_5", epochs=2, imgsz=IMGSZ,
                                              batch=8, workers=0, project=str(tmp_path), name="run", ema=True),
                               progress=False)
    assert Path(results["best"]).is_file() and Path(results["last"]).is_file()
    assert (tmp_path / "run" / "results.csv").read_text().splitlines()[0] == "epoch,loss,top1,top5,lr,train_seconds"
    curves = cv2.imread(str(tmp_path / "run" / "results.png"))  # loss, top1, top5, lr: 4 panels in a row
    assert curves is not None and curves.shape[:2] == (round(2.6 * 150), round(3.2 * 4 * 150))
    model = load_model(results["best"])
    assert model.config["arch"] == "shufflenetv2_x0_5" and tuple(model.names.values()) == tuple(sorted(CLASSES))
    assert 0 <= results["top1"] <= results["top5"] <= 1
    again = validate_classifier(results["last"], shapes_cls, progress=False)  # the size the checkpoint records
    assert again["top1"] == results["top1"] and again["top5"] == results["top5"]
    assert main(["val", results["last"], "--task", "classify", "--data", str(shapes_cls)]) == 0
    assert main(["train", "--task", "classify", "--cfg", "mobilenetv2", "--data", str(shapes_cls), "--epochs", "1",
                 "--imgsz", str(IMGSZ), "--batch", "12", "--workers", "0", "--project", str(tmp_path),
                 "--name", "cli"]) == 0
    assert "top-1" in capsys.readouterr().out and (tmp_path / "cli" / "weights" / "best.pt").is_file()
    assert main(["train", "--task", "classify", "--data", str(tmp_path / "nowhere")]) == 2  # DatasetError message


@pytest.mark.parametrize("arch", ARCHS)
def test_export_keeps_top1_and_rank4(arch: str, shapes_cls: Path, tmp_path: Path) -> None:
    import onnx

    from lite_deploy.export.exporter import export

    torch.manual_seed(0)
    model = build_classifier(arch, num_classes=6, names=sorted(CLASSES))
    with torch.no_grad():  # a head with well-separated logits, so top-1 is decided by the network, not by rounding
        head = [m for m in model.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))][-1]
        head.weight.normal_(0, 1.0)
    weights = save_checkpoint(model, tmp_path / f"{arch}.pt", imgsz=IMGSZ)
    targets = "onnx,openvino,tflite" if arch == "shufflenetv1_g3" else "onnx"
    artifacts = export(weights, targets, imgsz=IMGSZ, out=tmp_path / "export")
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(artifacts["onnx"])))
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in
             list(proto.graph.value_info) + list(proto.graph.output) + list(proto.graph.input)}
    assert ranks and max(ranks.values()) <= 4, {k: r for k, r in ranks.items() if r > 4}
    reference = validate_classifier(weights, shapes_cls, imgsz=IMGSZ, progress=False, verbose=False)
    for target, path in artifacts.items():
        with Classifier.load(path) as classifier:
            assert classifier.spec.preprocess == "center_crop"
        result = validate_classifier(path, shapes_cls, progress=False, verbose=False)
        agreement = float((result["predictions"] == reference["predictions"]).mean())
        assert agreement == 1.0, (target, agreement)


def test_cli_passes_the_recipe(shapes_cls: Path, monkeypatch) -> None:
    seen = {}

    def record(config=None, resume=None):
        seen["config"], seen["resume"] = config, resume
        return {"top1": 0.0, "top5": 0.0, "best_top1": 0.0, "best": "best.pt", "last": "last.pt"}

    monkeypatch.setattr("lite_deploy.train.classify.train_classifier", record)
    assert main(["train", "--task", "classify", "--data", str(shapes_cls), "--optimizer", "AdamW", "--lr0", "0.002",
                 "--epochs", "3"]) == 0
    assert (seen["config"].optimizer, seen["config"].lr0, seen["config"].epochs) == ("AdamW", 0.002, 3)
    assert seen["config"].project == "runs/train-cls"  # the README's benchmark command reads the run from there
    assert main(["train", "--task", "classify", "--resume", str(shapes_cls)]) == 0  # the run folder is read by it
    assert seen["resume"] == str(shapes_cls) and seen["config"] is None
