"""Export trained models to deployment formats.

``lite_deploy.export(weights, target="onnx", options=None, **overrides)`` is
:func:`lite_deploy.export.exporter.export`; ``overrides`` are fields of :class:`~.options.ExportOptions`
(``imgsz=320, precision="int8", calib="data.yaml"`` ...). This package is itself callable, so
``lite_deploy.export(...)`` works whether or not a submodule was imported first, and it imports nothing heavy itself.

Modules: :mod:`.options` (the options, declared once: keywords and CLI flags), :mod:`.targets` (one module per
target with its constraints and build, and the registry), :mod:`.exporter` (the orchestration: spec, tracing,
verification, the accuracy gate), :mod:`.each` (the target x precision loop), :mod:`.prepare` (weights and options
made concrete), :mod:`.staging` (staging and commit), :mod:`.onnx` and :mod:`.tflite` (converters), :mod:`.nms`
(in-graph NMS, EfficientNMS_TRT), :mod:`.describe` (the artifact's ModelSpec), :mod:`.verify` (parity with PyTorch).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["export", "export_targets", "export_each", "ExportOptions", "TARGET_NAMES"]
_HOMES = {"export": ".exporter", "export_targets": ".exporter", "export_each": ".each", "ExportOptions": ".options",
          "TARGET_NAMES": ".targets"}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """The package module, callable as :func:`lite_deploy.export.exporter.export`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module(".exporter", __name__).export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
