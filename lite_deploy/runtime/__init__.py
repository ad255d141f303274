"""Device-side runtime: numpy + OpenCV + one backend, never torch.

``Detector.load("model.onnx")`` picks the backend by file suffix (ONNX Runtime, OpenVINO, TFLite, TensorRT), reads
the artifact's :class:`~lite_deploy.spec.ModelSpec`, and runs the same letterbox, decoding and NMS on every
backend. Backends are imported only when a model of theirs is loaded.
"""

from __future__ import annotations

from .base import Runtime, TensorInfo, load_runtime, register_backend, registered_suffixes
from .detections import Detections
from .detector import Classifier, Detector
from .discovery import load_spec
from .postprocess import nms
from .preprocess import center_crop, letterbox

__all__ = [
    "Classifier",
    "Detections",
    "Detector",
    "Runtime",
    "TensorInfo",
    "center_crop",
    "letterbox",
    "load_runtime",
    "load_spec",
    "nms",
    "register_backend",
    "registered_suffixes",
]
