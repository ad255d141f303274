"""``lite-deploy info CFG_OR_WEIGHTS``: layers, parameters, GFLOPs, strides and classes of a model."""

from __future__ import annotations

import argparse
from pathlib import Path

WEIGHT_SUFFIXES = (".pt", ".pth")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``info`` subcommand."""
    p = subparsers.add_parser(
        "info",
        help="show a model's layers, parameters, GFLOPs, strides and classes",
        description="Show a model's layers, parameters, GFLOPs, strides and classes. MODEL is a weights file "
        "(.pt: lite-deploy, YOLOv5 or slim-neck checkpoint), a model yaml or a bundled config name (e.g. yolov5n).",
    )
    p.add_argument("model", metavar="CFG_OR_WEIGHTS", help="weights file, model yaml or bundled config name")
    p.add_argument("--imgsz", type=int, nargs="+", default=[640], metavar="N",
                   help="input size for GFLOPs: one value (square) or height width (default 640)")
    p.add_argument("--shuffle", choices=("evenodd", "interleave"),
                   help="GSConv shuffle of a third-party checkpoint whose variant cannot be inferred")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Build or load the model and print its summary."""
    import torch

    from ..models import build_model, load_model
    from ..models.summary import format_summary, summarize

    if len(args.imgsz) not in (1, 2) or min(args.imgsz) <= 0:
        raise ValueError("--imgsz takes one positive size or a height and a width")
    imgsz = (args.imgsz[0], args.imgsz[-1])
    with torch.no_grad():
        if Path(args.model).suffix.lower() in WEIGHT_SUFFIXES:
            model = load_model(args.model, shuffle=args.shuffle)
        else:
            model = build_model(args.model)
        print(format_summary(summarize(model, imgsz)))
    return 0
