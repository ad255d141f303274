"""Export trained models to deployment formats.

``lite_deploy.export(weights, target="onnx", ...)`` is :func:`lite_deploy.export.exporter.export`. This package
is itself callable, so ``lite_deploy.export(...)`` works whether or not a submodule was imported first, and it
imports nothing heavy itself: ``lite_deploy.runtime.check`` and ``lite_deploy.export.verify`` run on a device
without torch (``check``, and ``build-engine``'s engine check on a Jetson; the TensorRT build itself is in
:mod:`lite_deploy.runtime.backends.tensorrt`).

Modules: :mod:`.exporter` (the pipeline), :mod:`.onnx`, :mod:`.openvino`, :mod:`.tflite` (one per target;
TensorRT's ONNX is the ONNX exporter's, its engine is built on the device), :mod:`.nms` (in-graph NMS,
EfficientNMS_TRT), :mod:`.describe` (the artifact's ModelSpec), :mod:`.verify` (parity with PyTorch),
:mod:`.check` (static target-compatibility report).
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import Any

__all__ = ["export", "export_targets", "TARGETS"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(".exporter", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


class _CallableModule(types.ModuleType):
    """The package module, callable as :func:`lite_deploy.export.exporter.export`."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return importlib.import_module(".exporter", __name__).export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
