"""lite-deploy info CFG_OR_WEIGHTS: layers, parameters, GFLOPs, strides and classes of a model."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from . import args as arg_types

WEIGHT_SUFFIXES = (".pt", ".pth")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``info`` subcommand."""
    p = subparsers.add_parser(
        "info",
        help="show a model's layers, parameters, GFLOPs, strides and classes",
        description="Show a model's layers, parameters, GFLOPs, strides and classes. MODEL is a weights file "
        "(.pt: lite-deploy, YOLOv5 or slim-neck checkpoint), a model yaml or a bundled config name (e.g. yolov5n).",
    )
    p.add_argument("model", metavar="CFG_OR_WEIGHTS", help="weights file, model yaml, bundled config name, or an "
                   "exported artifact (.onnx, .xml, .tflite, .engine: its spec and tensors)")
    arg_types.add_imgsz(p, "input size of the GFLOPs count (default: the size a checkpoint serves at, else 640)")
    p.add_argument("--shuffle", choices=("evenodd", "interleave"),
                   help="GSConv shuffle of a third-party checkpoint whose variant cannot be inferred")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build or load the model and print its summary (an exported artifact: its spec and tensors, torch-free)."""
    from ..runtime import registered_suffixes

    suffix = Path(args.model).suffix.lower()
    if suffix in registered_suffixes() and suffix not in WEIGHT_SUFFIXES:
        return _artifact_info(Path(args.model))
    import torch

    from ..models import build_model, load_model
    from ..models.summary import format_summary, summarize

    imgsz = args.imgsz
    with torch.no_grad():
        if Path(args.model).suffix.lower() in WEIGHT_SUFFIXES:
            from ..models.checkpoint import serving_imgsz

            model = load_model(args.model, shuffle=args.shuffle)
            imgsz = imgsz or serving_imgsz(args.model)
        else:
            model = build_model(args.model)
        print(format_summary(summarize(model, imgsz or (640, 640))))
    return 0


def _artifact_info(path: Path) -> int:
    """Print what an exported artifact declares (task, classes, input, precision) and its input/output tensors."""
    from ..runtime import load_runtime

    with load_runtime(path) as runtime:
        spec = runtime.spec
        print(f"{path.name}: {spec.task} model, {spec.target} {spec.precision}, input {spec.imgsz[0]}x{spec.imgsz[1]} "
              f"{spec.layout} {spec.input_dtype}, batch {spec.batch or 'dynamic'}, output layout {spec.output_layout}")
        print(f"classes ({spec.nc}): {', '.join(spec.names)}")
        for kind, tensors in (("input", runtime.inputs), ("output", runtime.outputs)):
            for t in tensors:
                dims = "x".join("?" if d is None else str(d) for d in t.shape)
                print(f"  {kind:<6} {t.name:<12} {dims:<16} {np.dtype(t.dtype).name}")
    return 0
