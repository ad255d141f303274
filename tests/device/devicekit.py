"""Paths of the committed device fixtures and what is installed here (imported by the device tests)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

FIXTURES = Path(__file__).resolve().parent / "fixtures"
MODELS = FIXTURES / "models"
DATA_YAML = FIXTURES / "shapes" / "data.yaml"
IMAGES = FIXTURES / "shapes" / "images" / "val"


def has_module(name: str) -> bool:
    """Whether the package ``name`` is installed here (without importing it). A folder of that name on sys.path
    (e.g. tests/tensorrt seen as a namespace package) does not count."""
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.has_location


def backend_available(path: Path) -> bool:
    """Whether the backend of the artifact at ``path`` is installed."""
    return has_module({".onnx": "onnxruntime", ".xml": "openvino"}[path.suffix])
