"""ONNX Runtime backend (``.onnx``)."""

from __future__ import annotations

import bisect
import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import onnxruntime as ort

from ....errors import BackendUnavailableError
from ....spec import ModelSpec
from ...base import LayerTime, Runtime, invalid_artifact, mean_layer_times
from ...profiling.machine import compute_cores, free_cores
from ...tensors import TensorInfo, dynamic_dim

LOGGER = logging.getLogger(__name__)

# what ONNX Runtime raises for a file it cannot parse or build a session from (truncated, corrupt, not ONNX)
_STATE = ort.capi.onnxruntime_pybind11_state
_LOAD_ERRORS = (_STATE.InvalidProtobuf, _STATE.InvalidGraph, _STATE.Fail, _STATE.NoModel, _STATE.InvalidArgument,
                _STATE.NotImplemented, RuntimeError)

# ONNX Runtime's type strings -> numpy
_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(int8)": np.int8,
    "tensor(uint8)": np.uint8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
    "tensor(bool)": np.bool_,
}

Provider = Union[str, Tuple[str, Dict[str, Any]]]


def session_options(threads: Optional[int] = None) -> ort.SessionOptions:
    """Session options sized to the machine now: ``threads`` intra-op threads (``None``: the cores free now,
    :func:`~lite_deploy.runtime.profiling.machine.free_cores`), worker threads that spin during a run only when every
    core was free, and that stop spinning as soon as each run ends.

    ONNX Runtime's default (one thread per physical core, spinning) burns the cores it waits on: the demo's INT8
    export used 19-22 s of CPU for 12 s of wall time with it, 12.5 s with one thread that sleeps between runs, which
    on a busy machine are taken from the other work. Its workers also spin on after a run returns, taking a core from
    whatever the process does next: two sessions run in turn (a detector and a classifier, or FP32 beside INT8) each
    took 10.9 ms per run of the demo and 52 ms of yolov5n at 640, against 5.3 ms and 25.5 ms with spinning stopped at
    the end of each run (``session.force_spinning_stop``), which changes nothing for one session alone (4.8-5.1 ms,
    25.9-26.2 ms).
    """
    free = free_cores()
    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, int(threads)) if threads is not None else free
    if free < compute_cores():
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.force_spinning_stop", "1")
    return options


class OnnxRuntime(Runtime):
    """An ONNX model in an ``onnxruntime.InferenceSession``.

    Args:
        path: ``.onnx`` file.
        providers: execution providers in priority order, names or ``(name, options)`` pairs; default CPU.
        threads: intra-op threads (``None``: the cores free now; see :func:`session_options`).
        allow_fallback: accept a session that dropped a requested provider (ONNX Runtime falls back to CPU
            silently when a provider fails to initialise); by default that raises.
        profiling: record every node's time with ONNX Runtime's profiler (slows inference a little; read the
            result with :meth:`layer_times`).
        spec: the artifact's spec if already known.

    Raises:
        BackendUnavailableError: a requested provider is not in this ONNX Runtime build, or failed to start.
    """

    layer_profiling = True

    def __init__(
        self,
        path: Union[str, Path],
        providers: Optional[Sequence[Provider]] = None,
        threads: Optional[int] = None,
        allow_fallback: bool = False,
        profiling: bool = False,
        spec: Optional[ModelSpec] = None,
    ) -> None:
        super().__init__(path, spec)
        providers = list(providers or ["CPUExecutionProvider"])
        wanted = [p if isinstance(p, str) else p[0] for p in providers]
        available = ort.get_available_providers()
        absent = [p for p in wanted if p not in available]
        if absent:
            raise BackendUnavailableError(
                f"ONNX Runtime here has no {', '.join(absent)} (available: {', '.join(available)}); "
                "for CUDA/TensorRT install onnxruntime-gpu: pip install 'lite-deploy[onnxruntime-gpu]'"
            )
        options = session_options(threads)
        self._profiling = profiling
        if profiling:
            options.enable_profiling = True
            options.profile_file_prefix = os.path.join(tempfile.gettempdir(), f"lite_deploy_ort_{os.getpid()}")
        try:
            self.session = ort.InferenceSession(str(self.path), sess_options=options, providers=providers)
        except _LOAD_ERRORS as exc:
            raise invalid_artifact(self.path, "ONNX", exc) from exc
        dropped = [p for p in wanted if p not in self.session.get_providers()]
        if dropped:
            message = f"ONNX Runtime could not start {', '.join(dropped)} for {self.path.name}"
            if not allow_fallback:
                raise BackendUnavailableError(message + "; pass allow_fallback=True to run on the remaining providers")
            LOGGER.warning("%s; running on %s", message, ", ".join(self.session.get_providers()))
        self._inputs = tuple(_info(t) for t in self.session.get_inputs())
        self._outputs = tuple(_info(t) for t in self.session.get_outputs())
        self._output_names = [t.name for t in self._outputs]

    @property
    def providers(self) -> Tuple[str, ...]:
        """The providers the session runs on."""
        return tuple(self.session.get_providers())

    def embedded_metadata(self) -> Dict[str, str]:
        """The ONNX ``metadata_props``."""
        return dict(self.session.get_modelmeta().custom_metadata_map)

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        values = self.session.run(self._output_names, feeds)
        return dict(zip(self._output_names, values))

    def layer_times(self) -> List[LayerTime]:
        """Mean time per node (``*_kernel_time`` events of ONNX Runtime's profile); this ends the profiling.

        Raises:
            ValueError: not loaded with ``profiling=True``, or profiled already.
        """
        if not self._profiling:
            raise ValueError(f"{self.path.name}: load it with profiling=True to get per-layer times")
        return mean_layer_times(_runs_of(self._end_profiling()))

    def _end_profiling(self) -> List[Dict[str, Any]]:
        """Stop the profiler and return its trace events (the trace file is removed)."""
        self._profiling = False
        trace = Path(self.session.end_profiling())
        try:
            return json.loads(trace.read_text())
        finally:
            trace.unlink()

    def close(self) -> None:
        """Drop the session (and the profiler's trace file, if profiling)."""
        if self._profiling and "session" in self.__dict__:
            self._end_profiling()
        self.__dict__.pop("session", None)


def _info(node: Any) -> TensorInfo:
    dtype = _DTYPES.get(node.type)
    if dtype is None:
        raise ValueError(f"tensor {node.name!r} has type {node.type}, which lite-deploy does not handle")
    return TensorInfo(node.name, tuple(dynamic_dim(d) for d in node.shape), np.dtype(dtype))


def _runs_of(events: List[Dict[str, Any]]) -> List[List[LayerTime]]:
    """ONNX Runtime's trace events -> the node times of each ``model_run``, in order."""
    starts = sorted(e["ts"] for e in events if e.get("cat") == "Session" and e.get("name") == "model_run")
    runs: List[List[LayerTime]] = [[] for _ in starts]
    suffix = "_kernel_time"
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith(suffix) and starts:
            run = max(bisect.bisect_right(starts, e["ts"]) - 1, 0)
            op = e.get("args", {}).get("op_name", "")
            runs[run].append(LayerTime(e["name"][: -len(suffix)], op, e["dur"] / 1e3))
    return runs
