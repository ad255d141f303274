"""``lite-deploy`` command line: one subcommand per module in :mod:`lite_deploy.commands`.

Each command module defines ``add_parser(subparsers)``, which registers its arguments and sets ``func``. Command
modules import heavy libraries (torch, backends) inside ``func`` only, so ``lite-deploy --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import List, Optional

from . import __version__
from .errors import LiteDeployError

# subcommand -> module under lite_deploy.commands
COMMANDS = {
    "info": "info",
    "dataset": "dataset",
    "val": "val",
    "train": "train",
    "export": "export",
    "check": "check",
    "build-engine": "build_engine",
    "predict": "predict",
    "profile": "profile",
    "benchmark": "benchmark",
    "demo": "demo",
    "run": "run",
}


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = argparse.ArgumentParser(prog="lite-deploy", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"lite-deploy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(f"lite_deploy.commands.{module}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the process exit status."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    try:
        return int(args.func(args) or 0)
    except LiteDeployError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
