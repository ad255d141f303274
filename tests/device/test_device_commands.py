"""The device-side commands on the committed artifacts, in this process: predict (detector and classifier), run
on a video written here, profile, val on the tiny dataset, check, build-engine and info; plus the TensorRT modules
that work without a GPU."""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np
import pytest
from devicekit import DATA_YAML, IMAGES, MODELS, has_module

from lite_deploy.cli import main

needs_ort = pytest.mark.skipif(not has_module("onnxruntime"), reason="onnxruntime is not installed")
YOLO = str(MODELS / "yolo.onnx")
REPO = Path(__file__).resolve().parents[2]


@needs_ort
def test_predict_detector_writes_json_and_drawings(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "draw"
    assert main(["predict", YOLO, "--source", str(IMAGES), "--json", "--save", "--out", str(out)]) == 0
    report = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(report) == 6 and sum(len(line["detections"]) for line in report) > 0
    assert len(list(out.iterdir())) == 6 + 1  # the drawings and predictions.jsonl
    assert "ms infer" in capsys.readouterr().out


@needs_ort
def test_predict_classifier_prints_top_classes(tmp_path: Path, capsys: pytest.CaptureFixture,
                                               reference: Dict[str, Any]) -> None:
    out = tmp_path / "classes"
    assert main(["predict", str(MODELS / "classifier_fp16.onnx"), "--source", str(IMAGES), "--json", "--out",
                 str(out)]) == 0
    report = {line["image"]: line["classes"] for line in map(json.loads, (out / "predictions.jsonl").open())}
    first = report[str(IMAGES / reference["images"][0])]
    assert len(first) == 5 and first[0]["name"] in reference["names"]
    np.testing.assert_allclose(first[0]["score"], reference["arrays"]["classifier/top/0/probs"][0], atol=0.01)
    assert capsys.readouterr().out.startswith(reference["images"][0] + ": ")


@needs_ort
def test_predict_on_a_video(tmp_path: Path) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (128, 96))
    assert writer.isOpened(), "this OpenCV cannot write MJPG video"
    for path in sorted(IMAGES.iterdir()) * 2:
        writer.write(cv2.resize(cv2.imread(str(path)), (128, 96)))
    writer.release()
    out = tmp_path / "out"
    assert main(["predict", YOLO, "--source", str(video), "--json", "--save", "--out", str(out)]) == 0
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(lines) == 12
    assert (out / "clip.mp4").stat().st_size > 0


@needs_ort
def test_profile(tmp_path: Path) -> None:
    assert main(["profile", YOLO, "--runs", "3", "--warmup", "1", "--layer-runs", "2", "--json", "--out",
                 str(tmp_path)]) == 0
    result = json.loads((tmp_path / "profile.json").read_text())
    assert json.dumps(result).count("p50") >= 1


@needs_ort
@pytest.mark.parametrize("name", ["yolo", "centernet"])
def test_val_matches_pytorch(name: str, reference: Dict[str, Any], tmp_path: Path) -> None:
    assert main(["val", str(MODELS / f"{name}.onnx"), "--data", str(DATA_YAML), "--json", "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "results.json").read_text())
    for key, value in reference["models"][name]["val"].items():
        assert abs(float(metrics[key]) - value) < 0.005, (key, metrics[key], value)


@pytest.mark.skipif(not has_module("onnx"), reason="onnx is not installed (pip install 'lite-deploy[check]')")
def test_check(capsys: pytest.CaptureFixture) -> None:
    assert main(["check", YOLO, "--target", "trt8.5"]) == 0
    assert "will run" in capsys.readouterr().out


def test_check_without_onnx_says_what_to_install() -> None:
    code = "import sys; sys.modules['onnx'] = None\nfrom lite_deploy.cli import main\n" \
           f"sys.exit(main(['check', {YOLO!r}, '--target', 'trt10']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert "pip install 'lite-deploy[check]'" in result.stderr


@needs_ort
def test_info_on_an_artifact(capsys: pytest.CaptureFixture) -> None:
    assert main(["info", str(MODELS / "centernet.onnx")]) == 0
    out = capsys.readouterr().out
    assert "output layout centernet" in out and "hm" in out and "circle" in out


def _fresh(code: str) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the repository root (sys.path without tests/, whose tensorrt/ folder
    would otherwise pass for the tensorrt package)."""
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(has_module("tensorrt"), reason="TensorRT is installed: build-engine would build")
def test_build_engine_without_tensorrt_says_where_it_comes_from() -> None:
    result = _fresh(f"import sys; from lite_deploy.cli import main; sys.exit(main(['build-engine', {YOLO!r}]))")
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and "JetPack" in result.stderr


def test_tensorrt_modules_import_without_tensorrt() -> None:
    import lite_deploy.runtime.backends.tensorrt as package

    names = [m.name for m in pkgutil.iter_modules(package.__path__, package.__name__ + ".")]
    assert len(names) >= 3
    for name in names:
        importlib.import_module(name)


@pytest.mark.skipif(has_module("tensorrt"), reason="TensorRT is installed")
def test_engine_without_tensorrt_says_where_it_comes_from(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"not an engine")
    result = _fresh(f"from lite_deploy import Detector\nDetector.load({str(engine)!r})")
    assert "BackendUnavailableError" in result.stderr and "tensorrt" in result.stderr, result.stderr


def test_tensorrt_version_and_dtype_helpers() -> None:
    from lite_deploy.runtime.backends.tensorrt.compat import same_version

    assert same_version("8.5.2.2", "8.5.2")
    assert not same_version("8.5.2", "8.6.1")


@needs_ort
def test_val_classifier_on_an_image_folder(tmp_path: Path, reference: Dict[str, Any]) -> None:
    import shutil

    from lite_deploy.eval.classify import validate_classifier

    names = reference["names"]
    for i, image in enumerate(reference["images"]):  # each image filed under one class, in turn
        for split in ("train", "val"):
            (tmp_path / split / names[i]).mkdir(parents=True, exist_ok=True)
            shutil.copy(IMAGES / image, tmp_path / split / names[i] / image)
    assert main(["val", str(MODELS / "classifier_fp16.onnx"), "--task", "classify", "--data", str(tmp_path)]) == 0
    result = validate_classifier(str(MODELS / "classifier_fp16.onnx"), str(tmp_path))
    # the fixture classifier is untrained (its six probabilities differ by about 1e-6): only the counting is checked
    assert result["images"] == 6 and len(result["predictions"]) == 6
    assert 0 <= result["top1"] <= result["top5"] <= 1
