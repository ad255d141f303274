"""Shared test fixtures: paths to the real YOLOv5-format checkpoints kept in ../shared/fixtures/yolov5."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / "shared" / "fixtures" / "yolov5"


@pytest.fixture(scope="session")
def yolov5_fixtures() -> Path:
    """Folder with the real YOLOv5 / slim-neck checkpoints and their reference outputs.

    CI always has it beside the checkout; elsewhere the dependent tests are skipped.
    """
    if not FIXTURES.is_dir():
        if os.environ.get("CI"):
            pytest.fail(f"{FIXTURES} is missing: CI must have ../shared beside the checkout")
        pytest.skip(f"{FIXTURES} not found")
    return FIXTURES
