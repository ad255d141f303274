"""Train the CenterNet-style detector and a classifier briefly on the synthetic sets, export them, score every artifact.

    python tools/train_seeds.py [--out runs/seeds] [--stage all|train|export] [--models det,cls] [--device cuda]
                                [--det-train 200 --det-val 50 --det-imgsz 128 --det-epochs 10]
                                [--cls-arch mobilenetv2 --cls-train 300 --cls-val 60 --cls-imgsz 64 --cls-epochs 10]
                                [--det-optimizer AdamW --cls-optimizer SGD]
                                [--det-weights best.pt --cls-weights best.pt] [--target onnx,openvino,tflite]

``train`` needs torch only (run it where a GPU is, then ``export`` with the best.pt files here); ``export``
converts the models to each target (the exporter verifies every artifact against PyTorch) and prints, per
artifact, the detector's mAP50 / mAP50-95 on the shapes validation split with the smallest IoU of its boxes matched
to the ``.pt``'s, and the classifier's top-1 / top-5 with its top-1 agreement with the ``.pt``. Both validation
splits are regenerated from their seed, so they are the ones training used.
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple


def train(args: argparse.Namespace, out: Path) -> Tuple[Optional[str], Optional[str]]:
    """Generate the sets and train the models of ``--models``; returns the detector's and classifier's best.pt."""
    from lite_deploy.data.shapes import generate_shapes
    from lite_deploy.data.shapes_cls import generate_shapes_cls
    from lite_deploy.train.centernet import train_detector
    from lite_deploy.train.classify import ClassifyConfig, train_classifier
    from lite_deploy.train.trainer import TrainConfig

    det_best = cls_best = None
    if "det" in args.models:
        data = generate_shapes(out / "shapes", train=args.det_train, val=args.det_val, seed=args.seed,
                               imgsz=args.det_imgsz, progress=False)
        det = train_detector(TrainConfig(
            data=str(data), cfg=args.det_cfg, epochs=args.det_epochs, imgsz=args.det_imgsz, batch=args.det_batch,
            workers=args.workers, project=str(out), name="det", device=args.device, seed=args.seed,
            optimizer=args.det_optimizer, lr0=args.det_lr0, close_mosaic=args.det_close_mosaic,
            warmup_bias_lr=0.0 if args.det_optimizer == "AdamW" else TrainConfig.warmup_bias_lr,
            nominal_batch=args.det_batch, warmup_epochs=1, val_every=args.val_every, val_batch=16,
        ), progress=False)
        det_best = det["best"]
        print(f"detector: mAP50 {det['map50']:.3f} mAP50-95 {det['map50_95']:.3f} (last epoch); best: {det_best}")
    if "cls" in args.models:
        root = generate_shapes_cls(out / "shapes_cls", train=args.cls_train, val=args.cls_val, seed=args.seed,
                                   imgsz=args.cls_imgsz, progress=False)
        cls = train_classifier(ClassifyConfig(
            data=str(root), cfg=args.cls_arch, epochs=args.cls_epochs, imgsz=args.cls_imgsz, batch=args.cls_batch,
            workers=args.workers, project=str(out), name="cls", device=args.device, seed=args.seed,
            optimizer=args.cls_optimizer, lr0=args.cls_lr0, ema=True, val_batch=16,
        ), progress=False)
        cls_best = cls["best"]
        print(f"classifier: top-1 {cls['top1']:.4f} (last epoch), best top-1 {cls['best_top1']:.4f}; best: {cls_best}")
    return det_best, cls_best


def _det_agreement(reference: Path, artifact: Path, images: List[Any], imgsz: int) -> Tuple[int, int, float]:
    """(confident .pt boxes, of them matched with IoU >= 0.99, smallest matched IoU) at conf 0.25."""
    import numpy as np

    from lite_deploy.runtime import Detector
    from lite_deploy.runtime.compare import pair_detections

    with Detector.load(reference, conf=0.25, imgsz=imgsz) as ref, Detector.load(artifact, conf=0.25) as art:
        total = matched = 0
        worst = 1.0
        for r, a in zip(ref(images), art(images)):
            m = pair_detections((r.boxes, r.scores, r.class_ids), (a.boxes, a.scores, a.class_ids), iou=0.99,
                                conf=0.25, margin=1e-4)
            total, matched, worst = total + len(r), matched + m.matched, min(worst, m.min_iou)
    return total, matched, float(np.float32(worst))


def export_and_score(args: argparse.Namespace, out: Path, det_weights: Optional[str],
                     cls_weights: Optional[str]) -> None:
    """Export the given models to every target and print their per-artifact tables."""
    if det_weights:
        _score_detector(args, out, det_weights)
    if cls_weights:
        _score_classifier(args, out, cls_weights)


def _score_detector(args: argparse.Namespace, out: Path, det_weights: str) -> None:
    from lite_deploy.data.shapes import generate_shapes
    from lite_deploy.data.yolo import YoloDataset
    from lite_deploy.eval.validate import validate
    from lite_deploy.export.exporter import export

    data = generate_shapes(out / "shapes_val", train=0, val=args.det_val, seed=args.seed, imgsz=args.det_imgsz,
                           progress=False)
    det_artifacts = export(det_weights, args.target, imgsz=args.det_imgsz, out=out / "det_export", name="centernet")
    val_set = YoloDataset.from_yaml(data, "val")
    images = [val_set.load_image(i) for i in range(min(len(val_set), 50))]
    print(f"\nCenterNet-MobileNetV2 on shapes val ({args.det_val} images, {args.det_imgsz} px)")
    print(f"{'artifact':<28} {'mAP50':>7} {'mAP50-95':>9} {'ms/img':>7}  boxes matched to .pt (IoU >= 0.99), min IoU")
    rows: List[Tuple[str, Path]] = [(".pt", Path(det_weights))] + [(t, p) for t, p in det_artifacts.items()]
    for target, path in rows:
        kwargs: Dict[str, Optional[int]] = {"imgsz": args.det_imgsz} if path.suffix == ".pt" else {}
        r = validate(str(path), val_set, progress=False, verbose=False, **kwargs)
        agree = "" if path.suffix == ".pt" else "{1}/{0}, {2:.4f}".format(
            *_det_agreement(Path(det_weights), path, images, args.det_imgsz))
        label = f"{target} {path.name}"
        print(f"{label:<28} {r['map50']:7.3f} {r['map50_95']:9.3f} {r['ms_per_image']:7.1f}  {agree}")


def _score_classifier(args: argparse.Namespace, out: Path, cls_weights: str) -> None:
    from lite_deploy.data.image_folder import ImageFolder
    from lite_deploy.data.shapes_cls import generate_shapes_cls
    from lite_deploy.eval.classify import validate_classifier
    from lite_deploy.export.exporter import export

    root = generate_shapes_cls(out / "shapes_cls_val", train=6, val=args.cls_val, seed=args.seed,
                               imgsz=args.cls_imgsz, progress=False)
    cls_artifacts = export(cls_weights, args.target, imgsz=args.cls_imgsz, out=out / "cls_export", name=args.cls_arch)
    folder = ImageFolder(root, "val")
    print(f"\n{args.cls_arch} on shapes-cls val ({len(folder)} images, {args.cls_imgsz} px)")
    print(f"{'artifact':<28} {'top-1':>7} {'top-5':>7} {'ms/img':>7}  top-1 agreement with .pt")
    reference = validate_classifier(cls_weights, folder, imgsz=args.cls_imgsz, progress=False, verbose=False)
    for target, path in [(".pt", Path(cls_weights))] + [(t, p) for t, p in cls_artifacts.items()]:
        r = reference if path.suffix == ".pt" else validate_classifier(path, folder, progress=False, verbose=False)
        agreement = float((r["predictions"] == reference["predictions"]).mean())
        print(f"{target + ' ' + path.name:<28} {r['top1']:7.4f} {r['top5']:7.4f} {r['ms_per_image']:7.1f}  "
              f"{agreement:.4f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/seeds", help="working folder (default runs/seeds)")
    parser.add_argument("--stage", choices=("all", "train", "export"), default="all")
    parser.add_argument("--models", default="det,cls", help="det, cls or det,cls: what to train (default both)")
    parser.add_argument("--device", help="training device (default: CUDA when available)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--workers", type=int, default=0, help="data loading processes (default 0)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-every", type=int, default=5, help="detector validation every N epochs (default 5)")
    parser.add_argument("--target", default="onnx,openvino,tflite")
    parser.add_argument("--det-cfg", default="centernet-mobilenetv2")
    parser.add_argument("--det-train", type=int, default=200)
    parser.add_argument("--det-val", type=int, default=50)
    parser.add_argument("--det-imgsz", type=int, default=128)
    parser.add_argument("--det-epochs", type=int, default=10)
    parser.add_argument("--det-batch", type=int, default=16)
    parser.add_argument("--det-optimizer", choices=("SGD", "AdamW"), default="AdamW")
    parser.add_argument("--det-lr0", type=float, default=0.002)
    parser.add_argument("--det-close-mosaic", type=int, default=5, help="no mosaic in the last N epochs")
    parser.add_argument("--det-weights", help="skip detector training: this CenterNet best.pt")
    parser.add_argument("--cls-arch", default="mobilenetv2")
    parser.add_argument("--cls-train", type=int, default=300)
    parser.add_argument("--cls-val", type=int, default=60)
    parser.add_argument("--cls-imgsz", type=int, default=64)
    parser.add_argument("--cls-epochs", type=int, default=10)
    parser.add_argument("--cls-batch", type=int, default=32)
    parser.add_argument("--cls-optimizer", choices=("SGD", "AdamW"), default="SGD")
    parser.add_argument("--cls-lr0", type=float, default=0.05)
    parser.add_argument("--cls-weights", help="skip classifier training: this classifier best.pt")
    args = parser.parse_args()

    import torch

    logging.basicConfig(level=logging.INFO if args.stage == "train" else logging.WARNING, format="%(message)s")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    if args.stage == "export":
        if not (args.det_weights or args.cls_weights):
            parser.error("--stage export needs --det-weights and/or --cls-weights")
        export_and_score(args, out, args.det_weights, args.cls_weights)
        return 0
    det_weights, cls_weights = train(args, out)
    if args.stage == "all":
        export_and_score(args, out, det_weights, cls_weights)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
