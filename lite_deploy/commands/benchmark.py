"""``lite-deploy benchmark WEIGHTS``: every target x precision exported, verified, scored and timed, in one table."""

from __future__ import annotations

import argparse

from . import args as arg_types
from .export import add_export_options, export_options, precision_list, target_list
from .outputs import add_out, run_dir

DEFAULT_TARGETS = ("onnx", "openvino", "tflite", "trt")
# the export options a benchmark passes on (precision and the judging data are set per row)
EXPORT_OPTIONS = ("imgsz", "opset", "simplifier", "calib", "calib_size", "tflite_io", "max_map_drop", "max_map50_drop")


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
    p.add_argument("--target", type=target_list, default=list(DEFAULT_TARGETS),
                   help=f"comma-separated targets or all (default {','.join(DEFAULT_TARGETS)})")
    p.add_argument("--precision", type=precision_list,
                   default=["fp32", "fp16", "int8"], help="comma-separated (default fp32,fp16,int8)")
    p.add_argument("--data", type=arg_types.existing_path,
                   help="detector: YOLO data.yaml or COCO JSON (mAP50-95 on its val split; INT8 is judged on it "
                   "too); classifier: image-folder dataset root with train/ and val/ (top-1 on val/); default: no "
                   "score")
    add_export_options(p, EXPORT_OPTIONS)
    p.add_argument("--runs", type=arg_types.positive_int, default=50, help="timed runs per artifact (default 50)")
    p.add_argument("--threads", type=arg_types.positive_int,
                   help="backend threads for the timing (default: each backend's)")
    add_out(p, "benchmark", "the table, the chart and the artifacts")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the benchmark and print the table."""
    from ..benchmarking import benchmark

    report = benchmark(args.weights, targets=args.target, precisions=args.precision, data=args.data,
                       out=run_dir("benchmark", args.out), runs=args.runs, threads=args.threads,
                       **export_options(args, EXPORT_OPTIONS))
    print(report.table())
    print(f"table written to {report.csv}" + (f", chart to {report.chart}" if report.chart else ""))
    return 0
