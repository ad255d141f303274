"""``lite-deploy build-engine MODEL.onnx``: build a TensorRT engine on the device that will run it."""

from __future__ import annotations

import argparse
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``build-engine`` subcommand."""
    p = subparsers.add_parser(
        "build-engine",
        help="build a TensorRT engine from an exported ONNX (run it on the Jetson / GPU machine)",
        description="Build a TensorRT engine from an ONNX written by `lite-deploy export --target trt`. Engines "
        "are tied to the GPU and the TensorRT version, so run this on the device (TensorRT comes with JetPack).",
    )
    p.add_argument("onnx", metavar="MODEL.onnx", help="the TensorRT-ready ONNX and its .json beside it")
    p.add_argument("--out", metavar="ENGINE", help="engine path (default: MODEL.engine beside the ONNX)")
    p.add_argument("--half", action="store_true", help="FP16 engine (TensorRT 11: export the ONNX with --half)")
    p.add_argument("--workspace", type=float, default=4.0, metavar="GB", help="builder workspace in GiB (default 4)")
    p.add_argument("--min-batch", type=int, default=1, help="smallest batch of a dynamic-batch ONNX (default 1)")
    p.add_argument("--opt-batch", type=int, help="batch TensorRT tunes for (default: --max-batch)")
    p.add_argument("--max-batch", type=int, help="largest batch of a dynamic-batch ONNX (default: --opt-batch or 1)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache file (default: ENGINE.timing.cache)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build the engine and print its path."""
    from ..export.tensorrt import build_engine

    try:
        engine = build_engine(
            args.onnx, args.out, half=args.half, workspace_gb=args.workspace, min_batch=args.min_batch,
            opt_batch=args.opt_batch, max_batch=args.max_batch, timing_cache=args.timing_cache,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(engine)
    return 0
