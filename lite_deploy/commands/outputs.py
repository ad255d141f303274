"""Where a command writes: ``./runs/<task>/exp``, ``exp2``, ``exp3`` ... unless ``--out DIR`` names the folder.

Python >= 3.8, standard library only (the device runs these commands).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

RUNS = Path("runs")
RUN_NAME = "exp"


def add_out(parser: argparse.ArgumentParser, task: str, what: str) -> None:
    """Add ``--out DIR`` to a command that writes into ``runs/<task>/exp<N>`` by default.

    Args:
        parser: the command's parser.
        task: the runs/ sub-folder (the command's name: predict, val, export ...).
        what: what goes into the folder, for the help text.
    """
    parser.add_argument("--out", metavar="DIR",
                        help=f"folder for {what} (default: a new runs/{task}/exp, exp2, ... in the current folder)")


def run_dir(task: str, out: Optional[str] = None) -> Path:
    """The output folder of a command: ``out`` when given, else the first free ``runs/<task>/exp<N>``.

    The folder is not created here: commands create it when they write their first file, so a refused command leaves
    nothing behind.

    Args:
        task: the runs/ sub-folder, e.g. ``"export"``.
        out: the ``--out`` argument, or None.

    Returns:
        ``Path(out)``, or ``runs/<task>/exp`` when that does not exist yet, else ``exp2``, ``exp3`` ...
    """
    if out is not None:
        return Path(out)
    parent = RUNS / task
    number = 1
    while (parent / (RUN_NAME if number == 1 else f"{RUN_NAME}{number}")).exists():
        number += 1
    return parent / (RUN_NAME if number == 1 else f"{RUN_NAME}{number}")
