"""lite-deploy: take a lightweight YOLOv5-style detector from PyTorch to an edge device and run it there.

The public API is re-exported flat and imported lazily, so ``import lite_deploy`` (and the device-side
``lite_deploy.runtime``) never imports torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from .version import __version__

# public name -> "module:attribute"
_EXPORTS = {
    "ModelSpec": "lite_deploy.spec:ModelSpec",
    "LiteDeployError": "lite_deploy.errors:LiteDeployError",
    "export": "lite_deploy.export:export",
    "build_model": "lite_deploy.models:build_model",
    "load_model": "lite_deploy.models:load_model",
    "list_configs": "lite_deploy.models:list_configs",
    "build_classifier": "lite_deploy.models.backbones:build_classifier",
    "list_classifiers": "lite_deploy.models.backbones:list_classifiers",
    "load_torchvision_backbone": "lite_deploy.models.backbones:load_torchvision_backbone",
    "YoloDataset": "lite_deploy.data.yolo:YoloDataset",
    "CocoDataset": "lite_deploy.data.coco:CocoDataset",
    "generate_shapes": "lite_deploy.data.shapes:generate_shapes",
    "DetectionEvaluator": "lite_deploy.eval.metrics:DetectionEvaluator",
    "validate": "lite_deploy.eval.validate:validate",
    "benchmark": "lite_deploy.benchmarking:benchmark",
    "Detector": "lite_deploy.runtime:Detector",
    "Detections": "lite_deploy.runtime:Detections",
    "Classifier": "lite_deploy.runtime:Classifier",
    "load_runtime": "lite_deploy.runtime:load_runtime",
    "load_spec": "lite_deploy.runtime:load_spec",
    "letterbox": "lite_deploy.runtime:letterbox",
    "nms": "lite_deploy.runtime:nms",
    "profile": "lite_deploy.runtime.profiling.profile:profile",
    "stream": "lite_deploy.runtime.stream:stream",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


def __getattr__(name: str) -> Any:
    target = _EXPORTS.get(name)
    if target is None:
        raise AttributeError(f"module 'lite_deploy' has no attribute {name!r}")
    module, attr = target.split(":")
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value
