"""Validated argparse types shared by the commands, so bad numbers and paths are refused before any model loads.

Each type raises argparse.ArgumentTypeError with what the value must be; the CLI prints it as one "error:" line and
exits 2. Python >= 3.8, standard library only (the device runs these commands).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Callable, Optional, Sequence


def probability(text: str) -> float:
    """A threshold in [0, 1] (--conf, --iou)."""
    value = _number(text, float, "a number in [0, 1]")
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1 (runs, batch sizes, counts)."""
    value = _number(text, int, "a whole number >= 1")
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def non_negative_int(text: str) -> int:
    """An integer >= 0 (warm-up runs, epochs of a schedule that may be off)."""
    value = _number(text, int, "a whole number >= 0")
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 0, got {text}")
    return value


def non_negative_float(text: str) -> float:
    """A number >= 0 (mAP drops in points, sizes in GiB)."""
    value = _number(text, float, "a number >= 0")
    if not value >= 0.0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text}")
    return value


# a network input side: at least one stride-32 cell, at most what any edge model takes
IMGSZ_MAX = 8192


def imgsz(text: str) -> int:
    """A network input side in pixels, 1..IMGSZ_MAX."""
    value = _number(text, int, f"a whole number of pixels 1..{IMGSZ_MAX}")
    if not 1 <= value <= IMGSZ_MAX:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels 1..{IMGSZ_MAX}, got {text}")
    return value


class _ImgszAction(argparse.Action):
    """Store ``--imgsz N`` or ``--imgsz H W`` as an ``(height, width)`` tuple; more values, or two different ones
    where only a square is possible, are refused."""

    def __init__(self, *args: Any, square: bool = False, **kwargs: Any) -> None:
        self.square = square
        super().__init__(*args, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: Optional[str] = None) -> None:
        sizes: Sequence[int] = values
        if len(sizes) > 2:
            parser.error(f"{option_string} takes one size (a square) or a height and a width, got {len(sizes)} values")
        hw = (sizes[0], sizes[-1])
        if self.square and hw[0] != hw[1]:
            parser.error(f"{option_string} {hw[0]} {hw[1]}: this command works on squares; give one size")
        setattr(namespace, self.dest, hw)


def add_imgsz(parser: argparse.ArgumentParser, help: str, default: Optional[int] = None,
              square: bool = False) -> None:
    """Add the one ``--imgsz`` of every command: ``--imgsz 320`` (a square) or ``--imgsz 384 640`` (height width).

    The parsed value is an ``(height, width)`` tuple in pixels, or None when not given and ``default`` is None.

    Args:
        parser: the command's parser.
        help: what the size is for; the accepted forms and the default are appended.
        default: side of the default square in pixels; None: no default (the model's own size).
        square: the command takes squares only (dataset generation, training): two different values are refused.
    """
    forms = "N (a square)" if square else "N (a square) or H W (height width)"
    default_text = f"; default {default}" if default is not None else ""
    parser.add_argument("--imgsz", type=imgsz, nargs="+", action=_ImgszAction, square=square, metavar="N",
                        default=None if default is None else (default, default),
                        help=f"{help}: {forms} in pixels{default_text}")


def existing_file(text: str) -> str:
    """A path that names an existing file."""
    path = Path(text)
    if not path.is_file():
        what = "is a folder, not a file" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text!r} {what}: check the path")
    return text


def existing_path(text: str) -> str:
    """A path that names an existing file or folder (image folders, datasets)."""
    if not Path(text).exists():
        raise argparse.ArgumentTypeError(f"{text!r} does not exist: check the path")
    return text


def _number(text: str, kind: Callable[[str], float], expected: str) -> float:
    try:
        return kind(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be {expected}, got {text!r}") from None
