"""Fixtures of the device suite: the committed tiny artifacts, images, dataset and PyTorch reference outputs.

Everything here runs with the device install only (numpy, OpenCV, a backend; Python 3.8): no torch, and nothing
from the other test folders' fixtures. ``tools/make_device_fixtures.py`` regenerates ``fixtures/``.
"""

from __future__ import annotations

import json
from typing import Any, Dict, List

import cv2
import numpy as np
import pytest
from devicekit import FIXTURES, IMAGES


@pytest.fixture(scope="session")
def reference() -> Dict[str, Any]:
    """reference.json plus ``arrays``: the PyTorch raw outputs and detections of reference.npz."""
    ref = json.loads((FIXTURES / "reference.json").read_text())
    with np.load(FIXTURES / "reference.npz") as npz:
        ref["arrays"] = {k: npz[k] for k in npz.files}
    return ref


@pytest.fixture(scope="session")
def frames(reference: Dict[str, Any]) -> List[np.ndarray]:
    """The committed BGR images, in reference order."""
    return [cv2.imread(str(IMAGES / name)) for name in reference["images"]]
