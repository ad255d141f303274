"""``lite-deploy export WEIGHTS --target onnx|openvino|tflite|trt[,...]|all``: verified deployment artifacts.

The options come from :class:`lite_deploy.export.options.ExportOptions` (:func:`add_export_options`), which the
``benchmark`` command shares; ``--target`` and ``--precision`` lists are checked before any model loads.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any, Callable, Dict, List, Optional, Sequence

from . import args as arg_types
from .outputs import add_out, run_dir

_KINDS: Dict[str, Callable[[str], Any]] = {
    "positive_int": arg_types.positive_int, "probability": arg_types.probability,
    "non_negative_float": arg_types.non_negative_float, "existing_path": arg_types.existing_path,
    "existing_file": arg_types.existing_file,
}


def target_list(text: str) -> List[str]:
    """``--target`` value -> target names (aliases resolved), refused by argparse when unknown."""
    from ..export.targets import resolve_targets

    try:
        return resolve_targets(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def precision_list(text: str) -> List[str]:
    """A comma-separated ``--precision`` list -> precisions, refused by argparse when unknown."""
    from ..export.options import parse_precisions

    try:
        return parse_precisions(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_export_options(parser: argparse.ArgumentParser, names: Optional[Sequence[str]] = None) -> None:
    """Add the :class:`~lite_deploy.export.options.ExportOptions` fields ``names`` (default: all) as options.

    Each field's metadata gives its help, value kind, choices and aliases (``--half`` for ``--precision fp16``; an
    alias and its option are mutually exclusive); a boolean field is a flag (``--no-verify`` for ``verify``).
    """
    from ..export.options import cli_fields

    for name, default, cli in cli_fields(names):
        if cli.get("kind") == "imgsz":
            arg_types.add_imgsz(parser, cli["help"], default=default)
            continue
        flag, aliases = cli.get("flag", "--" + name.replace("_", "-")), cli.get("aliases", {})
        group = parser.add_mutually_exclusive_group() if aliases else parser
        if isinstance(default, bool):
            group.add_argument(flag, dest=name, action="store_false" if default else "store_true", help=cli["help"])
        else:
            extra = {k: cli[k] for k in ("choices", "metavar") if k in cli}
            group.add_argument(flag, dest=name, default=default, type=_KINDS.get(cli.get("kind"), type(default)
                                                                                 if default is not None else str),
                               help=cli["help"], **extra)
        for alias, value in aliases.items():
            group.add_argument(alias, dest=name, action="store_const", const=value,
                               help=cli.get("alias_help", {}).get(alias, f"the same as {flag} {value}"))


def export_options(args: argparse.Namespace, names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """The :class:`~lite_deploy.export.options.ExportOptions` fields ``names`` (default: all) from parsed options."""
    from ..export.options import cli_fields

    return {name: getattr(args, name) for name, _, _ in cli_fields(names)}


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
    p.add_argument("--target", type=target_list, default=["onnx"],
                   help="onnx, openvino, tflite, trt, a comma-separated list, or all (default onnx)")
    add_export_options(p)
    add_out(p, "export", "the artifacts")
    p.add_argument("--name", help="file stem of the artifacts (default: the weights' stem)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, then print one line per target, the accuracy gate's verdicts and any step left for the device.

    Every target is attempted; exit status 2 when any failed (its ``error:`` line says why), the others are kept.
    """
    from ..export.exporter import export_targets

    try:
        results = export_targets(args.weights, args.target, out=run_dir("export", args.out), name=args.name,
                                 **export_options(args))
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
