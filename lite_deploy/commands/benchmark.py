"""``lite-deploy benchmark WEIGHTS``: every target x precision exported, verified, scored and timed, in one table."""

from __future__ import annotations

import argparse

from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``benchmark``."""
    p = subparsers.add_parser(
        "benchmark",
        help="export to every target and precision, then score and time each",
        description="Export a checkpoint to each target x precision (each verified against PyTorch), score it on a "
        "dataset and time it on a 1280x720 frame: a detector by mAP50-95 (frame -> detections), a classifier by "
        "top-1 accuracy (frame -> top-k classes), each with its change against the FP32 checkpoint. Print one "
        "table and save it as CSV with a latency-vs-score chart. Targets whose tools are not installed are listed "
        "as skipped.",
    )
    p.add_argument("weights", type=arg_types.existing_file, metavar="WEIGHTS",
                   help="checkpoint (.pt): the FP32 reference")
    p.add_argument("--targets", default="onnx,openvino,tflite,trt", help="comma-separated targets or all "
                   "(default onnx,openvino,tflite,trt)")
    p.add_argument("--precisions", default="fp32,fp16,int8", help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--data", type=arg_types.existing_path,
                   help="detector: YOLO data.yaml or COCO JSON (mAP50-95 on its val split); classifier: "
                   "image-folder dataset root with train/ and val/ (top-1 on val/); default: no score")
    p.add_argument("--calib", type=arg_types.existing_path, metavar="DIR_OR_YAML",
                   help="calibration images for INT8: a folder or a data.yaml")
    p.add_argument("--calib-size", type=arg_types.positive_int, default=300,
                   help="calibration images used at most (default 300)")
    p.add_argument("--imgsz", type=arg_types.imgsz, default=640, help="export input size (default 640)")
    p.add_argument("--runs", type=arg_types.positive_int, default=50, help="timed runs per artifact (default 50)")
    p.add_argument("--threads", type=arg_types.positive_int,
                   help="backend threads for the timing (default: each backend's)")
    p.add_argument("--out", metavar="DIR", help="output folder (default <weights folder>/<stem>_benchmark)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    from ..errors import LiteDeployError
    from ..eval.benchmark import benchmark, parse_precisions
    from ..export.exporter import parse_targets

    try:
        parse_targets(args.targets)
        parse_precisions(args.precisions)
    except ValueError as exc:
        raise LiteDeployError(str(exc)) from None
    report = benchmark(
        args.weights, targets=args.targets, precisions=args.precisions, data=args.data, calib=args.calib,
        calib_size=args.calib_size, imgsz=args.imgsz, out=args.out, runs=args.runs, threads=args.threads,
    )
    print(report.table())
    print(f"table written to {report.csv}" + (f", chart to {report.chart}" if report.chart else ""))
    return 0
