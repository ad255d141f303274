"""``lite-deploy profile MODEL``: latency percentiles, stage split, per-layer times, GFLOP/s and device facts."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``profile``."""
    p = subparsers.add_parser(
        "profile",
        help="latency profile of a model on this machine",
        description="Time a model on a generated 1280x720 frame: latency mean/p50/p90/p99/min/max and FPS, split "
        "into pre-processing, inference and post-processing; peak RSS; the 10 slowest layers (ONNX Runtime, "
        "OpenVINO, TensorRT); model GFLOPs and achieved GFLOP/s beside the measured matmul peak; device facts.",
    )
    p.add_argument("model", type=arg_types.existing_file, metavar="MODEL",
                   help="artifact (.onnx, .xml, .tflite, .engine) or checkpoint (.pt)")
    p.add_argument("--runs", type=arg_types.positive_int, default=200, help="timed runs (default 200)")
    p.add_argument("--warmup", type=arg_types.non_negative_int, default=20, help="untimed runs first (default 20)")
    p.add_argument("--batch", type=arg_types.positive_int, default=1, help="frames per call (default 1)")
    p.add_argument("--threads", type=arg_types.positive_int,
                   help="backend threads, CPU backends (default: the backend's)")
    p.add_argument("--imgsz", type=arg_types.imgsz,
                   help="input size of models with a dynamic height/width (and of .pt)")
    p.add_argument("--layer-runs", type=arg_types.positive_int, default=20,
                   help="inferences of the per-layer profile (default 20)")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer profile")
    p.add_argument("--json", metavar="FILE", help="write the full result as JSON")
    p.add_argument("--plot", metavar="FILE.png", help="write the latency histogram")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profile ``args.model`` and print the report."""
    from ..runtime.profile import plot_histogram, profile

    path = Path(args.model)
    gflops = None
    if path.suffix.lower() == ".pt":  # host side: count the torch model's GFLOPs
        from ..models import load_model
        from ..models.summary import count_flops

        gflops = count_flops(load_model(path), args.imgsz or 640)
    result = profile(
        path, runs=args.runs, warmup=args.warmup, batch=args.batch, threads=args.threads, imgsz=args.imgsz,
        layers=not args.no_layers, layer_runs=args.layer_runs, gflops=gflops, gflops_source="torch model",
    )
    print(result.table())
    if args.json:
        print(f"result written to {result.save_json(args.json)}")
    if args.plot:
        print(f"latency histogram written to {plot_histogram(result, args.plot)}")
    return 0
