"""TensorRT backend (``.engine`` / ``.plan``) on TensorRT 8.5 to 11 through the name-based tensor API.

Engines carry no metadata of their own, so the ModelSpec sidecar ``<engine>.json`` is required: it records the
TensorRT version and the GPU (compute capability and name) the engine was built for, and a mismatch is refused
before deserializing (TensorRT would otherwise fail with a terse "version tag" or "platform" error, or crash). The
standard plugins are initialised before deserializing (an engine with ``EfficientNMS_TRT`` needs them). The shape,
profile and dtype logic lives in :mod:`.compat`, the buffers in :mod:`.cuda`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType
from typing import Any, Dict, List, Optional, Tuple, Union

import numpy as np

from ...spec import ModelSpec, sidecar_path
from ..base import LayerTime, Runtime, mean_layer_times
from .api import open_tensorrt
from .cuda import open_cuda
from .compat import (
    check_engine_compat,
    check_input_shape,
    describe_io,
    profile_ranges,
    require_tensor_api,
    resolved_output_shapes,
)

LOGGER = logging.getLogger(__name__)


def _layer_profiler(trt: ModuleType) -> Any:
    """A ``trt.IProfiler`` collecting per-layer times (``report_layer_time``, once per layer per execution);
    ``end_run()`` closes one execution's list, ``runs`` holds them all."""

    class LayerProfiler(trt.IProfiler):
        def __init__(self) -> None:
            trt.IProfiler.__init__(self)
            self.runs: List[List[LayerTime]] = []
            self._current: List[LayerTime] = []

        def report_layer_time(self, layer_name: str, ms: float) -> None:
            self._current.append(LayerTime(layer_name, "", float(ms)))

        def end_run(self) -> None:
            self.runs.append(self._current)
            self._current = []

    return LayerProfiler()


