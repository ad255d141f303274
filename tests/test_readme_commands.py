"""Every `lite-deploy` command in the README's code blocks parses with today's CLI (flags, forms, choices).

The commands are parsed, not run: files they name need not exist (while parsing, every path exists as a file), so a
renamed or removed flag in the README fails here at once.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import List

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_commands() -> List[str]:
    """The ``lite-deploy ...`` lines of the README's indented code blocks, continuations joined, comments cut."""
    commands, current = [], ""
    for line in README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("    ") and not current:
            continue
        text = line.strip()
        if current:
            current += " " + text
        elif text.startswith(("lite-deploy ", ".venv/bin/lite-deploy ")):
            current = text
        else:
            continue
        if current.endswith("\\"):
            current = current[:-1]
            continue
        commands.append(current)
        current = ""
    return commands


COMMANDS = readme_commands()


def test_the_readme_has_commands() -> None:
    assert len(COMMANDS) >= 20, COMMANDS


@pytest.mark.parametrize("command", COMMANDS)
def test_readme_command_parses(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_deploy.cli import build_parser

    parser = build_parser()
    monkeypatch.setattr(Path, "exists", lambda self: True)
    monkeypatch.setattr(Path, "is_file", lambda self: True)
    words = shlex.split(command, comments=True)
    words = words[words.index(next(w for w in words if w.endswith("lite-deploy"))) + 1:]
    words = [w for w in words if not (w.startswith("[") or w.endswith("]"))]  # optional parts: [--half]
    if "&&" in words:
        words = words[:words.index("&&")]
    parser.parse_args(words)
