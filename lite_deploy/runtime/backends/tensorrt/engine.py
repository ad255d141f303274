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

from ....spec import ModelSpec, sidecar_path
from ...base import LayerTime, Runtime, mean_layer_times
from .api import open_tensorrt
from .compat import (
    check_engine_compat,
    check_input_shape,
    describe_io,
    profile_ranges,
    require_tensor_api,
    resolved_output_shapes,
)
from .cuda import open_cuda

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


class TensorRTRuntime(Runtime):
    """A serialized TensorRT engine with device buffers reused across calls.

    Args:
        path: ``.engine`` / ``.plan`` file, with its spec sidecar ``<path>.json``.
        profile: optimization profile index to run with.
        profiling: attach a TensorRT ``IProfiler`` reporting every layer's time (an engine built with profiling
            verbosity NONE reports layer indices instead of names); read them with :meth:`layer_times`.
        spec: the artifact's spec if already known (otherwise read from the sidecar).
        threads: accepted for the CPU backends' sake (``profile --threads``) and ignored: TensorRT runs on the GPU.

    Raises:
        FileNotFoundError: no spec sidecar.
        EngineMismatchError: the engine was built for another TensorRT version or GPU architecture.
        BackendUnavailableError: no working CUDA binding, no plugin library, no GPU memory for an execution
            context, or a TensorRT older than 8.5.
        RuntimeError: TensorRT could not deserialize the engine.
    """

    layer_profiling = True

    def __init__(
        self, path: Union[str, Path], profile: int = 0, profiling: bool = False, spec: Optional[ModelSpec] = None,
        threads: Optional[int] = None,
    ) -> None:
        path = Path(path)
        if spec is None:
            sidecar = sidecar_path(path)
            if not sidecar.is_file():
                raise FileNotFoundError(
                    f"{path.name} needs its spec {sidecar.name} beside it (written by lite-deploy build-engine)"
                )
            spec = ModelSpec.load(sidecar)
        super().__init__(path, spec)
        if threads is not None:
            LOGGER.info("TensorRT runs on the GPU: --threads %d has no effect on %s", threads, path.name)
        trt, self._logger = open_tensorrt()  # plugins registered before deserializing
        self.cuda = open_cuda()
        compat_warnings = check_engine_compat(spec.extra, str(trt.__version__), self.cuda.device_name(),
                                              self.cuda.compute_capability(), path.name)
        for warning in compat_warnings:
            LOGGER.warning("%s; if it fails to load, rebuild it on this device", warning)
        self._trt_runtime = trt.Runtime(self._logger)
        self.engine = self._trt_runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise RuntimeError(f"TensorRT could not deserialize {path.name} (see the TensorRT messages above)")
        self.context = self.engine.create_execution_context()
        require_tensor_api(self.engine, self.context)
        self._profiler: Optional[Any] = None
        if profiling:
            self._profiler = _layer_profiler(trt)
            self.context.profiler = self._profiler
        if profile:
            self.context.set_optimization_profile_async(profile, self.cuda.stream_handle)
        self._inputs, self._outputs = describe_io(self.engine, trt)
        self._profiles = profile_ranges(self.engine, self._inputs, profile)
        self._buffers: Dict[str, Tuple[int, int]] = {}  # name -> (device address, capacity in bytes)

    def _device_buffer(self, name: str, nbytes: int) -> int:
        address, capacity = self._buffers.get(name, (0, 0))
        if nbytes > capacity:
            if address:
                self.cuda.free(address)
            address = self.cuda.alloc(nbytes)
            self._buffers[name] = (address, nbytes)
            self.context.set_tensor_address(name, address)
        return address

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        for info in self._inputs:
            array = np.ascontiguousarray(feeds[info.name])
            check_input_shape(info, array.shape, self._profiles.get(info.name))
            self.context.set_input_shape(info.name, array.shape)
            self.cuda.to_device(self._device_buffer(info.name, array.nbytes), array)
        results = {}
        for name, shape in resolved_output_shapes(self.context, self._outputs).items():
            results[name] = np.empty(shape, dtype=next(o.dtype for o in self._outputs if o.name == name))
            self._device_buffer(name, results[name].nbytes)
        if not self.context.execute_async_v3(self.cuda.stream_handle):
            raise RuntimeError(f"TensorRT failed to run {self.path.name} (see the TensorRT messages above)")
        for name, array in results.items():
            self.cuda.to_host(array, self._buffers[name][0])
        self.cuda.synchronize()
        if self._profiler is not None:
            self._profiler.end_run()
        return results

    def layer_times(self) -> List[LayerTime]:
        """Mean time per layer as TensorRT's ``IProfiler`` reported it (no op types: TensorRT gives names only).

        Raises:
            ValueError: not loaded with ``profiling=True``, or no inference run yet.
        """
        if self._profiler is None or not self._profiler.runs:
            raise ValueError(f"{self.path.name}: load it with profiling=True and run it to get per-layer times")
        return mean_layer_times(self._profiler.runs)

    def close(self) -> None:
        """Free the device buffers and the stream, then the engine."""
        cuda = self.__dict__.get("cuda")
        if cuda is not None:
            cuda.synchronize()
            for address, _ in self._buffers.values():
                cuda.free(address)
            self._buffers.clear()
            cuda.close()
        for name in ("context", "engine", "_trt_runtime", "cuda"):
            self.__dict__.pop(name, None)
