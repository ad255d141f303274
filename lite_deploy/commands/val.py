"""``lite-deploy val``: score a checkpoint or exported artifact on a dataset (COCO mAP50, mAP50-95, P, R), or with
``--task classify`` a classifier on an image-folder split (top-1, top-5).

Detectors are scored with YOLOv5 ``val.py``'s protocol by default (multi-label NMS, conf 0.001, IoU 0.6, 300
detections per image); ``--single-label`` keeps each box's best class only, ``--rect`` gives each image
``val.py``'s rectangular input (pad 0.5 stride) instead of the square. The protocol used is printed first."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as arg_types
from .outputs import add_out, run_dir


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``val``."""
    parser = subparsers.add_parser(
        "val", help="score a model or artifact on a dataset (COCO mAP)", description=__doc__,
    )
    parser.add_argument("model", type=arg_types.existing_file,
                        help="checkpoint (.pt) or artifact (.onnx, .xml, .tflite, .engine)")
    parser.add_argument("--task", choices=("detect", "classify"), default="detect", help="detect (default) or classify")
    parser.add_argument("--data", required=True,
                        help="YOLO data.yaml or COCO instances .json; classify: image folder with train/ and val/")
    parser.add_argument("--split", default="val", help="split of a YOLO dataset (default val)")
    parser.add_argument("--images", help="image folder of a COCO .json (default: the file's folder)")
    arg_types.add_imgsz(parser, "input size of a checkpoint (default: the size it serves at, e.g. 320 for the "
                        "bundled demo); artifacts have theirs fixed")
    parser.add_argument("--conf", type=arg_types.probability, default=0.001,
                        help="confidence threshold (default 0.001)")
    parser.add_argument("--iou", type=arg_types.probability, default=0.6, help="NMS IoU threshold (default 0.6)")
    parser.add_argument("--max-det", type=arg_types.positive_int, default=300,
                        help="detections per image (default 300)")
    parser.add_argument("--single-label", "--no-multi-label", dest="multi_label", action="store_false",
                        help="NMS on each box's best class only (default: every class above --conf, as val.py)")
    parser.add_argument("--rect", action="store_true",
                        help="val.py's rectangular inputs: long side --imgsz, each side padded to a multiple of the "
                        "stride with at least half a stride of padding (.pt checkpoints and dynamic-shape artifacts)")
    parser.add_argument("--batch", type=arg_types.positive_int, default=1, help="frames per inference call (default 1)")
    parser.add_argument("--json", action="store_true",
                        help="write gt.json, predictions.json (COCO) and results.json into the output folder")
    parser.add_argument("--plots", action="store_true",
                        help="write the precision-recall curve pr_curve.png into the output folder")
    add_out(parser, "val", "--json and --plots")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.task == "classify":
        from ..eval.classify import validate_classifier

        imgsz = None if args.imgsz is None else args.imgsz[0]
        validate_classifier(args.model, args.data, split=args.split, imgsz=imgsz, batch=args.batch)
        return 0
    from ..eval.validate import open_dataset, validate

    dataset = open_dataset(args.data, args.split, args.images)  # a bad --data is refused before the model loads
    imgsz = args.imgsz
    if imgsz is None and Path(args.model).suffix.lower() == ".pt":
        from ..models.checkpoint import serving_imgsz

        imgsz = serving_imgsz(args.model)
    out = run_dir("val", args.out) if args.json or args.plots else None
    validate(
        args.model, dataset, split=args.split, images=args.images, conf=args.conf, iou=args.iou,
        max_det=args.max_det, multi_label=args.multi_label, rect=args.rect, imgsz=imgsz, batch=args.batch,
        save_json=out if args.json else None, plots=out if args.plots else None,
    )
    if out is not None:
        print(f"results written to {out}")
    return 0
