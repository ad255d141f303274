"""The export targets, one module each, and the one table of their names.

Adding a target is one new module with a :class:`~.base.Target` subclass and one line in :data:`REGISTRY`.
Importing this package is light (no torch, no converter): the CLI validates ``--target`` with it before any
model loads.
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Type, Union

from .base import Built, ExportResult, Target
from .onnx import ONNX
from .openvino import OpenVINO
from .tensorrt import TensorRT
from .tflite import TFLite

REGISTRY: Dict[str, Type[Target]] = {t.name: t for t in (ONNX, OpenVINO, TFLite, TensorRT)}
TARGET_NAMES = tuple(REGISTRY)
_ALIASES = {alias: t.name for t in REGISTRY.values() for alias in t.aliases}

__all__ = ["REGISTRY", "TARGET_NAMES", "Built", "ExportResult", "Target", "get_target", "resolve_targets"]


def resolve_targets(target: Union[str, Sequence[str]]) -> List[str]:
    """``"onnx,tflite"``, ``["onnx", "tensorrt"]`` or ``"all"`` -> target names in registry order (aliases resolved).

    Raises:
        ValueError: an unknown target, or none (the message lists the known ones).
    """
    items = target.split(",") if isinstance(target, str) else list(target)
    names = []
    for item in (i.strip().lower() for i in items if i.strip()):
        if item == "all":
            names.extend(TARGET_NAMES)
            continue
        name = _ALIASES.get(item, item)
        if name not in REGISTRY:
            raise ValueError(f"unknown export target {item!r}: choose from {', '.join(TARGET_NAMES)} or all")
        names.append(name)
    if not names:
        raise ValueError(f"no export target given: choose from {', '.join(TARGET_NAMES)} or all")
    return [t for t in TARGET_NAMES if t in names]


def get_target(name: str) -> Target:
    """The target registered (or aliased) as ``name``.

    Raises:
        ValueError: an unknown name.
    """
    return REGISTRY[resolve_targets(name)[0]]()
