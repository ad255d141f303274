"""``lite-deploy export WEIGHTS --target onnx|openvino|tflite|trt[,...]|all``: verified deployment artifacts."""

from __future__ import annotations

import argparse
import sys

from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``export`` subcommand."""
    p = subparsers.add_parser(
        "export",
        help="export weights to ONNX, OpenVINO, TFLite or TensorRT, verified against PyTorch",
        description="Export a model to deployment formats. Each artifact gets its spec (<artifact>.json, and "
        "embedded where the format allows), is compared with PyTorch on generated images where its backend runs "
        "here, and is moved into the output folder only when it passed: a failed export leaves nothing behind. "
        "WEIGHTS is a .pt checkpoint (lite-deploy, YOLOv5 or slim-neck) or a bundled config name such as yolov5n "
        "(random weights, for trying the tool).",
    )
    p.add_argument("weights", metavar="WEIGHTS", help="weights file or bundled config name")
    p.add_argument("--target", default="onnx",
                   help="onnx, openvino, tflite, trt, a comma-separated list, or all (default onnx)")
    p.add_argument("--imgsz", type=arg_types.imgsz, nargs="+", default=[640], metavar="N",
                   help="input size: one value (square) or height width, multiples of the stride (default 640)")
    batch = p.add_mutually_exclusive_group()
    batch.add_argument("--batch", type=arg_types.positive_int, default=1, help="fixed batch size (default 1)")
    batch.add_argument("--dynamic", action="store_true",
                       help="dynamic batch axis (ONNX, OpenVINO; TensorRT gets an optimization profile)")
    p.add_argument("--half", action="store_true",
                   help="FP16: FP16 ONNX with float32 I/O, FP16-compressed OpenVINO IR, TFLite FP16 weights, "
                   "TensorRT FP16 engine")
    p.add_argument("--int8", action="store_true",
                   help="INT8 calibrated on --calib: Q/DQ ONNX (uint8 activations for ONNX Runtime, symmetric for TensorRT "
                   "8.5-11), "
                   "OpenVINO IR, TFLite with int8 activations (detection head in float everywhere)")
    p.add_argument("--calib", type=arg_types.existing_path, metavar="DIR_OR_DATA_YAML",
                   help="calibration images for --int8: a folder of images or a data.yaml (its train split)")
    p.add_argument("--calib-size", type=arg_types.positive_int, default=300, metavar="N",
                   help="calibration images used (default 300; fewer than 100 only when set explicitly)")
    p.add_argument("--data", type=arg_types.existing_file, metavar="DATA_YAML",
                   help="validation set judging --half/--int8 artifacts by mAP50 and mAP50-95 against the FP32 "
                   "model (default with --int8: --calib when it is a data.yaml)")
    p.add_argument("--max-map-drop", type=arg_types.non_negative_float, metavar="POINTS",
                   help="fail when an artifact's mAP50-95 is more than POINTS below the FP32 model's on --data "
                   "(default: no limit; INT8 keeps its most sensitive layers in float until within 1 point)")
    p.add_argument("--max-map50-drop", type=arg_types.non_negative_float, metavar="POINTS",
                   help="the same for mAP50 (default: no limit; INT8 falls back until within 1 point)")
    p.add_argument("--tflite-io", choices=("int8", "float32"), default="int8",
                   help="input type of the INT8 TFLite (default int8, quantized by the runtime); outputs are float32")
    p.add_argument("--opset", type=arg_types.positive_int, default=17,
                   help="ONNX opset (default 17, the newest TensorRT 8.5 parses)")
    p.add_argument("--no-simplify", action="store_true", help="keep the ONNX graph as traced")
    p.add_argument("--simplifier", choices=("onnxslim", "onnxsim"), default="onnxslim",
                   help="ONNX simplifier (default onnxslim; onnxsim needs the onnxsim extra)")
    p.add_argument("--nms", action="store_true",
                   help="end the graph in NMS: ONNX NonMaxSuppression (ONNX, OpenVINO), EfficientNMS_TRT (trt)")
    p.add_argument("--max-det", type=arg_types.positive_int, default=300,
                   help="detections kept per image with --nms (default 300)")
    p.add_argument("--conf", type=arg_types.probability, default=0.25, help="score threshold of --nms (default 0.25)")
    p.add_argument("--iou", type=arg_types.probability, default=0.45, help="IoU threshold of --nms (default 0.45)")
    p.add_argument("--out", metavar="DIR",
                   help="output folder (default: <weights folder>/<stem>_export, or ./<config>_export)")
    p.add_argument("--name", help="file stem of the artifacts (default: the weights' stem)")
    p.add_argument("--no-verify", action="store_true", help="skip the comparison with PyTorch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print one line per target, the accuracy gate's verdicts and any step left for the device.

    Every target is attempted; exit status 2 when any failed (its ``error:`` line says why), the others are kept.
    """
    from ..export.exporter import export_targets

    if len(args.imgsz) not in (1, 2):
        print("error: --imgsz takes one size or a height and a width", file=sys.stderr)
        return 2
    try:
        results = export_targets(
            args.weights, args.target, imgsz=args.imgsz, batch=args.batch, dynamic=args.dynamic, half=args.half,
            opset=args.opset, simplifier=None if args.no_simplify else args.simplifier, nms=args.nms,
            max_det=args.max_det, conf=args.conf, iou=args.iou, out=args.out, verify=not args.no_verify,
            name=args.name, int8=args.int8, calib=args.calib, calib_size=args.calib_size, data=args.data,
            max_map_drop=args.max_map_drop, max_map50_drop=args.max_map50_drop, tflite_io=args.tflite_io,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{'target':<9} {'export s':>9} {'verify s':>9}  artifact")
    for r in results:
        print(f"{r.target:<9} {r.export_s:9.1f} {r.verify_s:9.1f}  {r.files[0] if r.ok else 'FAILED, nothing written'}")
    for r in results:
        if r.note:
            print(r.note)
    failed = [r for r in results if not r.ok]
    for r in failed:
        print(f"error: {r.target}: {r.error}", file=sys.stderr)
    return 2 if failed else 0
