"""lite-deploy build-engine MODEL.onnx: build a TensorRT engine on the device that will run it, and verify it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``build-engine`` subcommand."""
    p = subparsers.add_parser(
        "build-engine",
        help="build a TensorRT engine from an exported ONNX (run it on the Jetson / GPU machine)",
        description="Build a TensorRT engine from an ONNX written by `lite-deploy export --target trt`, then check "
        "it against that ONNX on ONNX Runtime and print the comparison. Engines are tied to the GPU and the "
        "TensorRT version, so run this on the device (TensorRT comes with JetPack).",
    )
    p.add_argument("onnx", type=arg_types.existing_file, metavar="MODEL.onnx",
                   help="the TensorRT-ready ONNX and its .json beside it")
    p.add_argument("--out", metavar="DIR",
                   help="folder for MODEL.engine (default: the ONNX's folder; an engine is built for this device)")
    p.add_argument("--half", action="store_true", help="FP16 engine (TensorRT 11: export the ONNX with --half)")
    p.add_argument("--int8", action="store_true",
                   help="INT8 by TensorRT's own calibration of an FP32 ONNX (TensorRT 8.5-10.x; needs --calib). "
                   "A Q/DQ ONNX from `export --int8` builds as INT8 without it")
    p.add_argument("--calib", type=arg_types.existing_path, metavar="DIR|data.yaml",
                   help="calibration images for --int8 (also the verification images)")
    p.add_argument("--calib-size", type=arg_types.positive_int, metavar="N",
                   help="calibration images to use (default 300)")
    p.add_argument("--workspace", type=arg_types.non_negative_float, default=4.0, metavar="GB",
                   help="builder workspace in GiB (default 4)")
    p.add_argument("--min-batch", type=arg_types.positive_int, default=1,
                   help="smallest batch of a dynamic-batch ONNX (default 1)")
    p.add_argument("--opt-batch", type=arg_types.positive_int, help="batch TensorRT tunes for (default: --max-batch)")
    p.add_argument("--max-batch", type=arg_types.positive_int,
                   help="largest batch of a dynamic-batch ONNX (default: --opt-batch or 1)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache file (default: ENGINE.timing.cache)")
    p.add_argument("--no-verify", action="store_true", help="keep the engine without comparing it with the ONNX")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the engine, print the verification table and the engine's path."""
    if args.int8 != (args.calib is not None):
        print("error: --int8 and --calib go together: build-engine MODEL.onnx --int8 --calib IMAGES", file=sys.stderr)
        return 2
    from ..quantize.calibration import find_images
    from ..runtime.backends.tensorrt.build import build_engine
    from ..runtime.calibration import DEFAULT_SIZE

    try:
        calib = find_images(args.calib, args.calib_size or DEFAULT_SIZE) if args.calib is not None else None
        engine_path = None if args.out is None else Path(args.out) / f"{Path(args.onnx).stem}.engine"
        engine, report = build_engine(
            args.onnx, engine_path, half=args.half, calib=calib,
            workspace_gb=args.workspace, min_batch=args.min_batch, opt_batch=args.opt_batch,
            max_batch=args.max_batch, timing_cache=args.timing_cache, verify=not args.no_verify,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if report is not None:
        print(report.table())
    print(engine)
    return 0
