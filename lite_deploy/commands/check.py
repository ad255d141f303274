"""``lite-deploy check MODEL.onnx --target trt8.5|trt8.6|trt10|trt11|openvino|tflite``: will this ONNX run there?"""

from __future__ import annotations

import argparse
import sys

from . import args as arg_types

CHECK_TARGETS = ("trt8.5", "trt8.6", "trt10", "trt11", "openvino", "tflite")


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``check`` subcommand."""
    p = subparsers.add_parser(
        "check",
        help="static report: will an ONNX model run on a target (operators, opset, ranks, batch axis, shapes)",
        description="Check an ONNX model against a deployment target without its hardware: operators against "
        "the target's published support table, the opset limit, tensors of rank > 4, Reshapes that fold the "
        "batch axis, data-dependent shapes and INT64 weights. Exits with status 1 when something will not run.",
    )
    p.add_argument("model", type=arg_types.existing_file, metavar="MODEL.onnx", help="ONNX model")
    p.add_argument("--target", required=True, choices=CHECK_TARGETS, help="deployment target")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the report; status 1 when an error was found."""
    from ..runtime.check import check_model

    try:
        report = check_model(args.model, args.target)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(report.table())
    return 0 if report.ok else 1
