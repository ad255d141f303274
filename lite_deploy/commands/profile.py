"""lite-deploy profile MODEL: latency percentiles, stage split, per-layer times, GFLOP/s and device facts."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import args as arg_types
from .outputs import add_out, run_dir

JSON_NAME = "profile.json"
PLOT_NAME = "latency.png"


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
    arg_types.add_imgsz(p, "input size of a .pt or of an artifact with a dynamic height/width (default: its own)")
    p.add_argument("--layer-runs", type=arg_types.positive_int, default=20,
                   help="inferences of the per-layer profile (default 20)")
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer profile")
    p.add_argument("--json", action="store_true", help=f"write the full result ({JSON_NAME}) into the output folder")
    p.add_argument("--plots", action="store_true",
                   help=f"write the latency histogram ({PLOT_NAME}) into the output folder")
    add_out(p, "profile", "--json and --plots")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Profile ``args.model`` and print the report."""
    from ..runtime.profiling.profile import plot_histogram, profile

    path = Path(args.model)
    out = run_dir("profile", args.out) if args.json or args.plots else None
    gflops = None
    imgsz = args.imgsz
    if path.suffix.lower() == ".pt":  # host side: count the torch model's GFLOPs at the size it serves at
        from ..models import load_model
        from ..models.checkpoint import serving_imgsz
        from ..models.summary import count_flops

        imgsz = imgsz or serving_imgsz(path) or (640, 640)
        gflops = count_flops(load_model(path), imgsz)
    result = profile(
        path, runs=args.runs, warmup=args.warmup, batch=args.batch, threads=args.threads, imgsz=imgsz,
        layers=not args.no_layers, layer_runs=args.layer_runs, gflops=gflops, gflops_source="torch model",
    )
    print(result.table())
    if out is not None and args.json:
        print(f"result written to {result.save_json(out / JSON_NAME)}")
    if out is not None and args.plots:
        print(f"latency histogram written to {plot_histogram(result, out / PLOT_NAME)}")
    return 0
