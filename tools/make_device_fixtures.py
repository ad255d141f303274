"""Regenerate the committed fixtures of the device test suite (``tests/device/fixtures/``), host side (torch).

Four zoo models with seeded random weights and tiny widths, exported at 64 px to ONNX (opset 17) and OpenVINO IR
with their spec sidecars (see ``ARTIFACTS``): a YOLOv5 layout detector (``yolo``), a GSConv one (``gsconv``), a
CenterNet one (``centernet``) and a MobileNetV2 classifier (``classifier``). Their detection heads
get seeded random weights of a larger scale than the initialisation, so scores spread and detections exist at
the default thresholds. Also written: a six-image YOLO-format shapes dataset (``shapes/``, its val split is the
image set the suite predicts on) and ``reference.npz`` / ``reference.json``: each model's raw outputs and its
detections (or top-5) on every image, and the mAP ``lite-deploy val`` gives, all computed by PyTorch through the
``.pt`` runtime, never by the artifacts themselves.

    python tools/make_device_fixtures.py [--out tests/device/fixtures]
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, List

import cv2
import numpy as np
import torch

from lite_deploy.data.shapes import CLASSES, generate_shapes
from lite_deploy.eval.validate import validate
from lite_deploy.export import export
from lite_deploy.models import build_model, load_yaml
from lite_deploy.models.backbones.classifier import build_classifier
from lite_deploy.models.checkpoint import save_checkpoint
from lite_deploy.runtime import Classifier, Detector

REPO = Path(__file__).resolve().parents[1]
IMGSZ = 64
SEED = 0
NAMES = list(CLASSES)
# model -> (targets, precision): the two larger models ONNX only and the classifier FP16, to keep the files small
ARTIFACTS = {"yolo": ("onnx,openvino", "fp32"), "gsconv": ("onnx,openvino", "fp32"), "centernet": ("onnx", "fp32"),
             "classifier": ("onnx", "fp16")}


def _tiny_yolo(cfg: str) -> torch.nn.Module:
    """A zoo detector at 1/32 width (8-32 channels) and a third of the depth."""
    config = load_yaml(cfg)
    config.update(width_multiple=0.03125, depth_multiple=0.33)
    return build_model(config, nc=len(NAMES))


def _tiny_centernet() -> torch.nn.Module:
    """centernet-mobilenetv2 with a MobileNetV2 at width 0.25 and a 16-channel neck."""
    config = load_yaml("centernet-mobilenetv2")
    for layer, c2 in zip(config["backbone"], (8, 8, 24, 80)):
        layer[3] = [c2, layer[3][1], layer[3][2], 0.25]
    for layer in config["head"]:
        if layer[2] == "Conv":
            layer[3][0] = 16
    config["head"][-1][3] = ["nc", 16]
    return build_model(config, nc=len(NAMES))


def _output_layers(model: torch.nn.Module) -> List[torch.nn.Module]:
    """The layers that produce a detector's scores: YOLO's three head convolutions, CenterNet's heatmap one."""
    head = model.model[-1]
    return [head.hm[-1]] if hasattr(head, "hm") else list(head.m)


def _spread(model: torch.nn.Module, frames: List[np.ndarray], bias: float) -> None:
    """Seeded random output layers whose logits are N(bias, 2) over ``frames`` (measured): scores depend on the
    image and spread, instead of sitting at the initialisation's priors, so a few detections per image pass the
    default thresholds and few sit near them."""
    generator = torch.Generator().manual_seed(SEED)
    batch = torch.from_numpy(np.stack([cv2.resize(f, (IMGSZ, IMGSZ))[..., ::-1] for f in frames]) / 255.0)
    for layer in _output_layers(model):
        seen: List[torch.Tensor] = []
        hook = layer.register_forward_hook(lambda m, args, out: seen.append(out.detach()))
        with torch.no_grad():
            layer.weight.copy_(torch.randn(layer.weight.shape, generator=generator))
            layer.bias.zero_()
            model.eval()(batch.permute(0, 3, 1, 2).float().contiguous())
            hook.remove()
            dims = [d for d in range(seen[0].ndim) if d != 1]
            mean, std = seen[0].mean(dims), seen[0].std(dims).clamp_min(1e-12)
            shape = (-1,) + (1,) * (layer.weight.ndim - 1)
            layer.weight.mul_((2.0 / std).reshape(shape))
            layer.bias.copy_(bias - mean * 2.0 / std)


def _models(frames: List[np.ndarray]) -> Dict[str, torch.nn.Module]:
    torch.manual_seed(SEED)
    models = {"yolo": _tiny_yolo("yolov5n"), "gsconv": _tiny_yolo("GSConv-yolov5n"), "centernet": _tiny_centernet()}
    classifier = build_classifier("mobilenetv2", len(NAMES), names=NAMES, width_mult=0.25)
    classifier.imgsz = IMGSZ
    models["classifier"] = classifier
    for name, model in models.items():
        model.names = dict(enumerate(NAMES))
        if name != "classifier":
            _spread(model, frames, -6.0 if name == "centernet" else -3.0)
        model.eval()
    return models


def _dataset(out: Path, tmp: Path) -> Path:
    """Six 128-px shapes images with labels under ``out/shapes``; data.yaml with a relative ``path``."""
    generate_shapes(tmp / "shapes", train=0, val=6, seed=SEED, imgsz=128, progress=False)
    target = out / "shapes"
    for sub in ("images/val", "labels/val"):
        shutil.copytree(tmp / "shapes" / sub, target / sub)
    (target / "data.yaml").write_text(
        "path: .\ntrain: images/val\nval: images/val\nnames:\n" + "".join(f"  {i}: {n}\n" for i, n in enumerate(NAMES))
    )
    return target / "data.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "tests" / "device" / "fixtures"))
    out = Path(parser.parse_args().out)
    if out.exists():
        shutil.rmtree(out)
    (out / "models").mkdir(parents=True)
    torch.set_num_threads(1)
    arrays: Dict[str, np.ndarray] = {}
    reference: Dict[str, Any] = {"imgsz": IMGSZ, "names": NAMES, "models": {}}
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        data = _dataset(out, tmp)
        images = sorted((out / "shapes" / "images" / "val").iterdir())
        frames = [cv2.imread(str(p)) for p in images]
        reference["images"] = [p.name for p in images]
        for name, model in _models(frames).items():
            weights = save_checkpoint(model, tmp / f"{name}.pt", imgsz=IMGSZ)
            targets, precision = ARTIFACTS[name]
            export(weights, targets, imgsz=IMGSZ, out=out / "models", name=name, opset=17, precision=precision)
            task = "classify" if name == "classifier" else "detect"
            loader = Classifier if task == "classify" else Detector
            with loader.load(weights, imgsz=IMGSZ) as ref:
                outputs = ref.spec.output_names
                for i, frame in enumerate(frames):
                    blob, _ = ref.preprocess([frame])
                    raw = ref.runtime.infer(blob)
                    for key in outputs:
                        arrays[f"{name}/raw/{i}/{key}"] = raw[key]
                    result = ref(frame)
                    if task == "classify":
                        arrays[f"{name}/top/{i}/ids"], arrays[f"{name}/top/{i}/probs"] = result
                    else:
                        arrays[f"{name}/det/{i}/boxes"] = result.boxes
                        arrays[f"{name}/det/{i}/scores"] = result.scores
                        arrays[f"{name}/det/{i}/class_ids"] = result.class_ids
            entry: Dict[str, Any] = {"task": task, "outputs": list(outputs)}
            if task == "detect":
                metrics = validate(weights, data, imgsz=IMGSZ)
                entry["val"] = {k: float(metrics[k]) for k in ("map50", "map50_95", "precision", "recall")}
                entry["detections"] = [int(len(arrays[f"{name}/det/{i}/scores"])) for i in range(len(frames))]
            reference["models"][name] = entry
    np.savez_compressed(out / "reference.npz", **arrays)
    (out / "reference.json").write_text(json.dumps(reference, indent=1) + "\n")
    total = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    for p in sorted(out.rglob("*")):
        if p.is_file() and p.stat().st_size > 20_000:
            print(f"{p.relative_to(out)}: {p.stat().st_size / 1024:.0f} KB")
    print(f"{out}: {total / 1024:.0f} KB in all")


if __name__ == "__main__":
    main()
