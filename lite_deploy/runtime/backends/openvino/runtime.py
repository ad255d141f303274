"""OpenVINO backend (``.xml`` IR with its ``.bin``).

The inference precision is set from the artifact's declared precision: on CPUs with AVX512-BF16 or AMX, OpenVINO
otherwise runs an FP32 model in bf16 (``INFERENCE_PRECISION_HINT`` defaults to bf16 there), which moves boxes by
pixels. ``precision="bf16"`` asks for bf16 on purpose.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import numpy as np
import openvino as ov

from ....errors import BackendUnavailableError
from ....spec import SPEC_KEY, ModelSpec
from ...base import LayerTime, Runtime, invalid_artifact, mean_layer_times
from ...profiling.machine import free_cores
from ...tensors import TensorInfo

LOGGER = logging.getLogger(__name__)

RT_INFO_SPEC_PATH = ["lite_deploy", "spec"]
# ModelSpec.precision -> INFERENCE_PRECISION_HINT; int8 IRs keep their quantized layers in int8 whatever the
# hint, which applies to the layers left in float.
_PRECISION_HINTS = {"fp32": "f32", "f32": "f32", "bf16": "bf16", "fp16": "f16", "f16": "f16", "int8": "f32"}


class OpenVINORuntime(Runtime):
    """An OpenVINO IR compiled for one device.

    Args:
        path: ``.xml`` file (its ``.bin`` beside it).
        device: OpenVINO device name (``"CPU"``, ``"GPU"``, ``"NPU"``, ``"AUTO"``...); it must be present
            unless it is a virtual device such as ``AUTO``.
        performance_hint: ``"LATENCY"`` or ``"THROUGHPUT"``.
        threads: ``INFERENCE_NUM_THREADS`` (``None``: the cores free now,
            :func:`~lite_deploy.runtime.profiling.machine.free_cores`, on the CPU; OpenVINO's default on a quiet
            machine).
        precision: inference precision ``"f32"``, ``"bf16"`` or ``"f16"``; default from the spec's precision
            (``f32`` for FP32 and INT8 artifacts, ``f16`` for FP16 ones).
        profiling: collect OpenVINO's performance counters (``PERF_COUNT``) of every inference; read them with
            :meth:`layer_times`.
        spec: the artifact's spec if already known.

    Raises:
        BackendUnavailableError: the device is not present.
        ValueError: unknown precision.
    """

    layer_profiling = True

    def __init__(
        self,
        path: Union[str, Path],
        device: str = "CPU",
        performance_hint: str = "LATENCY",
        threads: Optional[int] = None,
        precision: Optional[str] = None,
        profiling: bool = False,
        spec: Optional[ModelSpec] = None,
    ) -> None:
        super().__init__(path, spec)
        core = ov.Core()
        virtual = device.split(":")[0] in ("AUTO", "MULTI", "HETERO", "BATCH")
        if not virtual and device not in core.available_devices:
            raise BackendUnavailableError(
                f"OpenVINO device {device!r} is not present here (available: {', '.join(core.available_devices)})"
            )
        try:
            self.model = core.read_model(str(self.path))
        except RuntimeError as exc:  # malformed .xml, or a .bin shorter than the .xml's weights
            raise invalid_artifact(self.path, "OpenVINO", exc) from exc
        self._inputs = tuple(_info(port) for port in self.model.inputs)
        self._outputs = tuple(_info(port) for port in self.model.outputs)
        hint = _PRECISION_HINTS.get(precision or self.spec.precision)
        if hint is None:
            raise ValueError(f"precision must be one of f32, bf16, f16; got {precision!r}")
        if hint == "f16" and device == "CPU" and precision is None:
            hint = "f32"  # FP16 IR weights are decompressed on CPU; compute in f32 as the export was verified
        config: Dict[str, Any] = {"PERFORMANCE_HINT": performance_hint, "INFERENCE_PRECISION_HINT": hint}
        if threads is not None or device == "CPU":
            config["INFERENCE_NUM_THREADS"] = int(threads) if threads is not None else free_cores()
        if profiling:
            config["PERF_COUNT"] = True
        self._layer_runs: Optional[List[List[LayerTime]]] = [] if profiling else None
        self.compiled = core.compile_model(self.model, device, config)
        if not virtual:
            actual = self.compiled.get_property("INFERENCE_PRECISION_HINT")
            if getattr(ov.Type, hint) != actual:
                LOGGER.warning("%s asked for %s inference precision on %s but runs %s", self.path.name, hint, device,
                               actual)
        self.request = self.compiled.create_infer_request()
        self.precision_hint = hint

    def embedded_metadata(self) -> Dict[str, str]:
        """The spec in ``rt_info['lite_deploy']['spec']`` and the ONNX metadata OpenVINO kept under ``framework``."""
        found: Dict[str, str] = {}
        if self.model.has_rt_info(["framework"]):
            for key in self.model.get_rt_info()["framework"]:
                found[key] = self.model.get_rt_info(["framework", key]).astype(str)
        if self.model.has_rt_info(RT_INFO_SPEC_PATH):
            found[SPEC_KEY] = self.model.get_rt_info(RT_INFO_SPEC_PATH).astype(str)
        return found

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        self.request.infer(feeds)
        if self._layer_runs is not None:
            self._layer_runs.append([
                LayerTime(p.node_name, p.node_type, p.real_time.total_seconds() * 1e3)
                for p in self.request.get_profiling_info()
                if p.status == ov.ProfilingInfo.Status.EXECUTED
            ])
        return {
            info.name: self.request.get_output_tensor(i).data.copy() for i, info in enumerate(self._outputs)
        }

    def layer_times(self) -> List[LayerTime]:
        """Mean ``real_time`` per executed node of OpenVINO's performance counters (``node_type`` as op type).

        Raises:
            ValueError: not loaded with ``profiling=True``, or no inference run yet.
        """
        if not self._layer_runs:
            raise ValueError(f"{self.path.name}: load it with profiling=True and run it to get per-layer times")
        return mean_layer_times(self._layer_runs)

    def close(self) -> None:
        """Drop the compiled model."""
        for name in ("request", "compiled", "model"):
            self.__dict__.pop(name, None)


def _info(port: Any) -> TensorInfo:
    shape = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
    return TensorInfo(port.get_any_name(), shape, np.dtype(port.get_element_type().to_dtype()))
