"""lite-deploy command line: one subcommand per module in :mod:`lite_deploy.commands`.

Each command module defines ``add_parser(subparsers)``, which registers its arguments and sets ``func``. Command
modules import heavy libraries (torch, backends) inside ``func`` only, so ``lite-deploy --help`` stays fast.

Every user error (a bad argument, a :class:`~lite_deploy.errors.LiteDeployError`, a file the system cannot read or
write) prints one ``error: ...`` line and exits 2; ``--verbose`` or ``LITE_DEPLOY_TRACEBACK=1`` adds the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import re
import sys
import traceback
from typing import Any, List, NoReturn, Optional

from .errors import LiteDeployError
from .version import __version__

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
}


class UsageError(LiteDeployError):
    """A command line argument is missing or invalid."""


# reStructuredText in docstrings (the descriptions) and help strings: ``literal`` and :role:`~a.b.name` / :role:`text`
_RST_LITERAL = re.compile(r"``(.+?)``", re.S)
_RST_ROLE = re.compile(r":[a-z]+:`~?([^`<]+?)(?:\s*<[^>]*>)?`")


def plain_text(text: str) -> str:
    """``text`` without reStructuredText markup: ````x```` -> ``x``, ``:class:`~a.B``` -> ``B``."""
    text = _RST_LITERAL.sub(r"\1", text)
    return _RST_ROLE.sub(lambda m: m.group(1).rsplit(".", 1)[-1] if "~" in m.group(0) else m.group(1), text)


class _PlainHelpFormatter(argparse.HelpFormatter):
    """Help as plain text: descriptions and argument help lose their reStructuredText markup."""

    def _format_text(self, text: str) -> str:
        return super()._format_text(plain_text(text))

    def _expand_help(self, action: argparse.Action) -> str:
        return plain_text(super()._expand_help(action))


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are :class:`UsageError` (one ``error:`` line from :func:`main`) and whose help
    is plain text."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", _PlainHelpFormatter)
        kwargs.setdefault("allow_abbrev", False)  # one spelling per option: --target is not --targets
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        """Raise instead of printing the usage and exiting."""
        raise UsageError(f"{message} (see {self.prog} --help)")


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every subcommand."""
    parser = _Parser(prog="lite-deploy", description="Take a lightweight YOLOv5-style detector from PyTorch to an edge "
                     "device and run it there: export, verify, score, time and run it.",
                     epilog="lite-deploy COMMAND --help lists a command's options. Outputs go to a new "
                     "runs/<command>/exp, exp2, ... folder unless --out DIR is given.")
    parser.add_argument("--version", action="version", version=f"lite-deploy {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="log debug messages and show the traceback of an error (also: LITE_DEPLOY_TRACEBACK=1)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for module in COMMANDS.values():
        importlib.import_module(f"lite_deploy.commands.{module}").add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run the command line; returns the process exit status (2 for a user error)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    show_traceback = os.environ.get("LITE_DEPLOY_TRACEBACK", "") not in ("", "0")
    try:
        parser = build_parser()
        if not argv:  # `lite-deploy` alone: what it can do
            parser.print_help()
            return 0
        args = parser.parse_args(argv)
        show_traceback = show_traceback or args.verbose
        logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
        return int(args.func(args) or 0)
    except LiteDeployError as exc:
        return _user_error(str(exc), show_traceback)
    except OSError as exc:  # last resort: a file or disk the system refused (missing, read-only, full, ...)
        return _user_error(_os_error_sentence(exc), show_traceback)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _user_error(message: str, show_traceback: bool) -> int:
    """Print ``error: message`` (after the traceback when asked for) and return exit status 2."""
    if show_traceback:
        traceback.print_exc()
    print("error: " + " ".join(message.split()), file=sys.stderr)
    return 2


def _os_error_sentence(exc: OSError) -> str:
    """One sentence for an :class:`OSError`, naming the path: ``'out/m.onnx': No space left on device (...)``."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    path = exc.filename if exc.filename is not None else None
    where = f"{str(path)!r}: " if path is not None else ""
    return f"{where}{reason}: check that the path exists, that you may read or write it, and that the disk has space"


if __name__ == "__main__":
    sys.exit(main())
