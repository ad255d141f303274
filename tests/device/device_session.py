"""Run every device-side command once on the committed fixtures, then print (JSON) the ``lite_deploy`` modules
that got imported and every forbidden one (torch, the host-side model zoo).

    python tests/device/device_session.py

Then it imports every module of the device folder (``lite_deploy/runtime``; a backend only where its library is
installed). Used by test_device_imports.py: nothing forbidden may load, and vermin checks each imported module for
Python 3.8 (with every file of the device folder), so the set of modules that run on a device is what this imports.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import io
import json
import pkgutil
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MODELS = HERE / "fixtures" / "models"
SHAPES = HERE / "fixtures" / "shapes"
FORBIDDEN = ("torch", "torchvision", "lite_deploy.models", "lite_deploy.train", "lite_deploy.export.exporter")
# backend modules that import their library at import time -> that library (test_device_imports.LIBRARY_BACKENDS)
BACKEND_MODULES = {
    "lite_deploy.runtime.backends.onnxruntime.runtime": "onnxruntime",
    "lite_deploy.runtime.backends.openvino.runtime": "openvino",
    "lite_deploy.runtime.backends.tflite.runtime": "ai_edge_litert",
}


def _image_folder(tmp: Path) -> Path:
    """A classification image folder (train/ and val/, one class per image) made from the fixture images."""
    root = tmp / "classes"
    for i, image in enumerate(sorted((SHAPES / "images" / "val").iterdir())):
        for split in ("train", "val"):
            (root / split / f"class{i}").mkdir(parents=True)
            shutil.copy(image, root / split / f"class{i}" / image.name)
    return root


def run_commands(tmp: Path) -> None:
    """predict (with its JSON lines and saved images), profile, val, check, info and build-engine (each backend and
    package that is installed)."""
    from lite_deploy.cli import main

    images = SHAPES / "images" / "val"
    commands = [["info", str(MODELS / "yolo.onnx")], ["build-engine", str(MODELS / "yolo.onnx")]]
    if importlib.util.find_spec("onnxruntime"):
        commands += [
            ["predict", str(MODELS / "yolo.onnx"), "--source", str(images)],
            ["predict", str(MODELS / "classifier_fp16.onnx"), "--source", str(images)],
            ["predict", str(MODELS / "centernet.onnx"), "--source", str(images)],
            ["predict", str(MODELS / "gsconv.onnx"), "--source", str(images), "--json", "--save", "--out",
             str(tmp / "predict")],
            ["profile", str(MODELS / "yolo.onnx"), "--runs", "2", "--warmup", "1", "--layer-runs", "1"],
            ["val", str(MODELS / "yolo.onnx"), "--data", str(SHAPES / "data.yaml")],
            ["val", str(MODELS / "classifier_fp16.onnx"), "--task", "classify", "--data", str(_image_folder(tmp))],
        ]
    if importlib.util.find_spec("openvino"):
        commands.append(["predict", str(MODELS / "yolo.xml"), "--source", str(images)])
    if importlib.util.find_spec("onnx"):
        commands.append(["check", str(MODELS / "yolo.onnx"), "--target", "trt8.5"])
    for argv in commands:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            status = main(argv)
        if status != 0 and argv[0] != "build-engine":  # build-engine: 2 without TensorRT, which says so
            raise SystemExit(f"lite-deploy {' '.join(argv)} exited with {status}")


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run_commands(Path(tmp))
    import lite_deploy.runtime as device_folder  # every module of the device folder, beyond what the commands ran

    for info in pkgutil.walk_packages(device_folder.__path__, device_folder.__name__ + "."):
        if info.name in BACKEND_MODULES and importlib.util.find_spec(BACKEND_MODULES[info.name]) is None:
            continue  # a backend whose library is not installed here (the device install has no TFLite)
        importlib.import_module(info.name)

    modules = sorted(m for m in sys.modules if m == "lite_deploy" or m.startswith("lite_deploy."))
    forbidden = sorted(m for m in sys.modules if m.startswith(FORBIDDEN) and sys.modules[m] is not None)
    files = sorted({str(Path(sys.modules[m].__file__).resolve()) for m in modules
                    if getattr(sys.modules[m], "__file__", None)})
    print(json.dumps({"modules": modules, "files": files, "forbidden": forbidden}))


if __name__ == "__main__":
    main()
