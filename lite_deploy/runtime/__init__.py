"""Device-side runtime: numpy + OpenCV + one backend, never torch.

``Detector.load("model.onnx")`` picks the backend by file suffix (ONNX Runtime, OpenVINO, TFLite, TensorRT), reads
the artifact's :class:`~lite_deploy.spec.ModelSpec`, and runs the same letterbox, decoding and NMS on every
backend. Backends are imported only when a model of theirs is loaded.

Layout: :mod:`.base` (the :class:`Runtime` class), :mod:`.tensors`, :mod:`.registry` (backends by suffix,
:func:`load_runtime`), :mod:`.discovery` (an artifact's spec); ``backends/`` one folder per backend (TensorRT's
builder included); ``pipeline/`` the pre/post processing and :class:`Detector`; :mod:`.stream` (the capture loop)
and :mod:`.sinks` (where its results go); ``profiling/`` timing, FLOPs and machine facts; :mod:`.calibration`
(INT8 calibration blobs), :mod:`.compare` (an artifact against a reference) and :mod:`.check` (target
compatibility lint).
"""

from __future__ import annotations

from .base import Runtime
from .pipeline.detections import Detections
from .pipeline.detector import Classifier, Detector
from .pipeline.postprocess import nms
from .pipeline.preprocess import center_crop, letterbox
from .registry import load_runtime, load_spec, register_backend, registered_suffixes
from .sinks import JsonlSink, VideoSink
from .tensors import TensorInfo

__all__ = [
    "Classifier",
    "Detections",
    "Detector",
    "JsonlSink",
    "Runtime",
    "TensorInfo",
    "VideoSink",
    "center_crop",
    "letterbox",
    "load_runtime",
    "load_spec",
    "nms",
    "register_backend",
    "registered_suffixes",
]
