"""``lite-deploy predict MODEL --source IMAGE_OR_DIR``: detect objects in images with any exported artifact.

Every readable image of a folder is processed; unreadable ones are skipped and named at the end (on stderr), and the
results of the others are written all the same. Not one readable image is an error.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, List, Optional, Tuple

from ..errors import LiteDeployError
from . import args as arg_types

if TYPE_CHECKING:
    from ..runtime import Classifier

LOGGER = logging.getLogger(__name__)


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict",
        help="detect objects in images with an exported model",
        description="Detect objects in an image or a folder of images with an exported model (.onnx, .xml, "
        ".tflite, .engine) and print, draw or save the detections.",
    )
    p.add_argument("model", type=arg_types.existing_file, metavar="MODEL",
                   help="model artifact; its spec is <MODEL>.json or embedded")
    p.add_argument("--source", required=True, help="an image file or a folder of images")
    p.add_argument("--save", metavar="DIR", help="write each image with its boxes drawn into DIR")
    p.add_argument("--json", metavar="FILE", help="write every image's detections to FILE as JSON")
    p.add_argument("--conf", type=arg_types.probability, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=arg_types.probability, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--max-det", type=arg_types.positive_int, default=300,
                   help="most detections per image (default 300)")
    p.add_argument("--imgsz", type=arg_types.imgsz, nargs="+", metavar="N",
                   help="input size for models with a dynamic height/width: one value or height width")
    p.add_argument("--rect", action="store_true",
                   help="letterbox each frame to the minimal rectangle, padded only to a multiple of the stride (YOLOv5 "
                   "detect.py's auto), instead of the square; needs a .pt or an artifact with a dynamic height/width")
    p.set_defaults(func=run)


def list_images(source: str) -> List[Path]:
    """The image files of ``source`` (a file, or the images directly inside a folder, sorted).

    A folder's images are its files with an image suffix or content OpenCV recognises as an image (see
    :func:`lite_deploy.runtime.stream.is_image_file`).

    Raises:
        LiteDeployError: ``source`` does not exist or holds no images.
    """
    from ..runtime.stream import IMAGE_SUFFIXES, is_image_file

    path = Path(source)
    if path.is_file():
        return [path]
    if path.is_dir():
        images = sorted(p for p in path.iterdir() if p.is_file() and is_image_file(p))
        if not images:
            raise LiteDeployError(f"--source {source}: no images ({', '.join(IMAGE_SUFFIXES)}) in that folder")
        return images
    raise LiteDeployError(f"--source {source} does not exist: give an image file or a folder of images")


class ImageReader:
    """The images of ``--source`` decoded one by one; unreadable ones are skipped, counted and named.

    Args:
        source: the ``--source`` argument, for messages.
        paths: its image files (see :func:`list_images`).
    """

    def __init__(self, source: str, paths: List[Path]) -> None:
        self.source = source
        self.paths = paths
        self.unreadable: List[str] = []

    def __iter__(self) -> Iterator[Tuple[Path, Any]]:
        """``(path, HxWx3 uint8 BGR image)`` of every readable image, in order."""
        import cv2

        for path in self.paths:
            frame = cv2.imread(str(path))
            if frame is None:
                self.unreadable.append(path.name)
            else:
                yield path, frame

    def report(self) -> None:
        """Name the unreadable images on stderr, once every image was read.

        Raises:
            LiteDeployError: not one image could be read.
        """
        from ..runtime.stream import name_list

        if len(self.unreadable) == len(self.paths):
            raise LiteDeployError(f"--source {self.source}: no image could be read ({name_list(self.unreadable)}); "
                                  "give images OpenCV can decode")
        if self.unreadable:
            print(f"warning: {len(self.unreadable)} of {len(self.paths)} images could not be read and were skipped: "
                  f"{name_list(self.unreadable)}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    """Run the detector over every image of ``--source``."""
    import cv2

    from ..runtime import Classifier, Detector, load_runtime
    from ..runtime.stream import IMAGE_SUFFIXES
    from ..io import atomic_write_bytes

    images = ImageReader(args.source, list_images(args.source))
    if args.imgsz is not None and len(args.imgsz) not in (1, 2):
        raise LiteDeployError("--imgsz takes one size or a height and a width")
    imgsz = None if args.imgsz is None else (args.imgsz[0], args.imgsz[-1])
    runtime = load_runtime(args.model)
    if runtime.spec.task == "classify":
        return _classify(Classifier(runtime, imgsz=imgsz), images, args.json)
    runtime.close()
    save_dir = Path(args.save) if args.save else None
    report = {}
    with Detector.load(args.model, conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=imgsz,
                       rect=args.rect) as detector:
        for path, frame in images:
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
    images.report()
    if save_dir is not None:
        print(f"drawings written to {save_dir}")
    if args.json:
        atomic_write_bytes(Path(args.json), json.dumps(report, indent=1).encode())
        print(f"detections written to {args.json}")
    return 0


def _classify(classifier: "Classifier", images: ImageReader, json_file: Optional[str]) -> int:
    """Print each image's top-5 classes of a classification artifact (and write them to ``json_file``)."""
    from ..io import atomic_write_bytes

    report = {}
    with classifier:
        for path, frame in images:
            ids, probs = classifier(frame)
            top = [{"class_id": int(i), "name": classifier.names[int(i)], "prob": round(float(p), 5)}
                   for i, p in zip(ids, probs)]
            print(f"{path.name}: " + ", ".join(f"{t['name']} {t['prob']:.2f}" for t in top)
                  + f" ({sum(classifier.timings.values()):.1f} ms)")
            report[str(path)] = top
    images.report()
    if json_file:
        atomic_write_bytes(Path(json_file), json.dumps(report, indent=1).encode())
        print(f"classes written to {json_file}")
    return 0
