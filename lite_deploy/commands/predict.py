"""``lite-deploy predict MODEL --source IMAGE_OR_DIR``: detect objects in images with any exported artifact."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import List

from ..errors import LiteDeployError

LOGGER = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict",
        help="detect objects in images with an exported model",
        description="Detect objects in an image or a folder of images with an exported model (.onnx, .xml, "
        ".tflite, .engine) and print, draw or save the detections.",
    )
    p.add_argument("model", metavar="MODEL", help="model artifact; its spec is <MODEL>.json or embedded")
    p.add_argument("--source", required=True, help="an image file or a folder of images")
    p.add_argument("--save", metavar="DIR", help="write each image with its boxes drawn into DIR")
    p.add_argument("--json", metavar="FILE", help="write every image's detections to FILE as JSON")
    p.add_argument("--conf", type=float, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=float, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--max-det", type=int, default=300, help="most detections per image (default 300)")
    p.add_argument("--imgsz", type=int, nargs="+", metavar="N",
                   help="input size for models with a dynamic height/width: one value or height width")
    p.set_defaults(func=run)


def list_images(source: str) -> List[Path]:
    """The image files of ``source`` (a file, or the images directly inside a folder, sorted).

    Raises:
        LiteDeployError: ``source`` does not exist or holds no images.
    """
    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise LiteDeployError(f"--source {source}: no images ({', '.join(IMAGE_SUFFIXES)}) in that folder")
        return images
    raise LiteDeployError(f"--source {source} does not exist: give an image file or a folder of images")


def run(args: argparse.Namespace) -> int:
    """Run the detector over every image of ``--source``."""
    import cv2

    from ..runtime import Detector
    from ..spec import atomic_write_bytes

    images = list_images(args.source)
    if args.imgsz is not None and len(args.imgsz) not in (1, 2):
        raise LiteDeployError("--imgsz takes one size or a height and a width")
    imgsz = None if args.imgsz is None else (args.imgsz[0], args.imgsz[-1])
    save_dir = Path(args.save) if args.save else None
    report = {}
    with Detector.load(args.model, conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=imgsz) as detector:
        for path in images:
            frame = cv2.imread(str(path))
            if frame is None:
                raise LiteDeployError(f"{path} could not be read as an image")
            detections = detector(frame)
            counts = {}
            for i in range(len(detections)):
                counts[detections.label(i)] = counts.get(detections.label(i), 0) + 1
            t = detector.timings
            summary = ", ".join(f"{n} {name}" for name, n in sorted(counts.items())) or "nothing"
            print(f"{path.name}: {summary} ({t['pre']:.1f} ms pre, {t['infer']:.1f} ms infer, {t['post']:.1f} ms post)")
            report[str(path)] = detections.to_list()
            if save_dir is not None:
                ok, encoded = cv2.imencode(path.suffix if path.suffix.lower() in IMAGE_SUFFIXES else ".jpg",
                                           detections.draw(frame))
                if not ok:
                    raise LiteDeployError(f"could not encode the drawing of {path.name}")
                atomic_write_bytes(save_dir / path.name, encoded.tobytes())
    if save_dir is not None:
        print(f"drawings written to {save_dir}")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(report, indent=1).encode())
        print(f"detections written to {args.json}")
    return 0
