"""TensorRT logic that needs no GPU: engine compatibility, tensor I/O description, profiles, shapes, dtypes.

Only TensorRT's name-based tensor API is used (``num_io_tensors``, ``get_tensor_name``, ``get_tensor_mode``,
``get_tensor_shape``, ``get_tensor_dtype``, ``get_tensor_profile_shape``, ``set_input_shape``,
``set_tensor_address``, ``execute_async_v3``), present from TensorRT 8.5 (JetPack 5) to 11; features are
detected with ``hasattr``, never by comparing version numbers. The functions take the engine, context and
``tensorrt`` module as arguments, so they run against small stand-ins in tests.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ....errors import BackendUnavailableError, EngineMismatchError
from ...tensors import Shape, TensorInfo, dynamic_dim

# TensorRT DataType member name -> numpy dtype (BF16, FP8, INT4 have no numpy type)
_DTYPES = {
    "FLOAT": np.float32,
    "HALF": np.float16,
    "INT8": np.int8,
    "UINT8": np.uint8,
    "INT32": np.int32,
    "INT64": np.int64,
    "BOOL": np.bool_,
}

# What a ModelSpec's ``extra`` records about the engine (written when the engine is built).
EXTRA_TRT_VERSION = "tensorrt"
EXTRA_GPU = "gpu"
EXTRA_COMPUTE_CAPABILITY = "compute_capability"
EXTRA_VERSION_COMPATIBLE = "version_compatible"
EXTRA_HARDWARE_COMPATIBLE = "hardware_compatible"

ProfileRange = Tuple[Tuple[int, ...], Tuple[int, ...], Tuple[int, ...]]

_TENSOR_API_ENGINE = ("num_io_tensors", "get_tensor_name", "get_tensor_mode", "get_tensor_shape", "get_tensor_dtype")
_TENSOR_API_CONTEXT = ("set_input_shape", "set_tensor_address", "get_tensor_shape", "execute_async_v3")


def check_engine_compat(extra: Mapping[str, Any], trt_version: str, gpu_name: str, compute_capability: str,
                        engine_name: str) -> List[str]:
    """Refuse an engine built for another TensorRT version or GPU architecture, before it is deserialized.

    The GPU is compared by compute capability, which every CUDA binding reports alike; names are not compared
    strictly, because the same board is named differently by different sources (``nvidia-smi`` or the device
    tree at build time: "NVIDIA Jetson AGX Orin Developer Kit"; pycuda at load time: "Orin").

    Args:
        extra: the engine spec's ``extra``: ``tensorrt`` (version it was built with), ``compute_capability``
            (``"8.7"``), ``gpu`` (device name), and optionally ``version_compatible`` / ``hardware_compatible``
            (built with those TensorRT flags).
        trt_version: installed ``tensorrt.__version__``.
        gpu_name: name of the CUDA device that will run it.
        compute_capability: that device's ``"major.minor"``.
        engine_name: file name for messages.

    Returns:
        Warnings: facts the spec does not record, or a GPU name that differs with the same compute capability.

    Raises:
        EngineMismatchError: the TensorRT version or the compute capability differ.
    """
    warnings = []
    built_version = extra.get(EXTRA_TRT_VERSION)
    built_cc = extra.get(EXTRA_COMPUTE_CAPABILITY)
    built_gpu = extra.get(EXTRA_GPU)
    rebuild = "rebuild it on this device: lite-deploy build-engine <model.onnx> (engines are not portable)"
    if not built_version:
        warnings.append(f"{engine_name}: its spec does not record the TensorRT version it was built with")
    elif not extra.get(EXTRA_VERSION_COMPATIBLE) and not same_version(str(built_version), trt_version):
        raise EngineMismatchError(
            f"{engine_name} was built with TensorRT {built_version}, this device has TensorRT {trt_version}: {rebuild}"
        )
    if not built_cc:
        warnings.append(f"{engine_name}: its spec does not record the GPU's compute capability")
    elif not extra.get(EXTRA_HARDWARE_COMPATIBLE) and str(built_cc).strip() != compute_capability.strip():
        raise EngineMismatchError(
            f"{engine_name} was built for a GPU of compute capability {built_cc} ({built_gpu or 'unnamed'}), this "
            f"device's is {compute_capability} ({gpu_name}): {rebuild}"
        )
    if built_gpu and str(built_gpu).strip().lower() != gpu_name.strip().lower():
        warnings.append(f"{engine_name} was built on a GPU named {built_gpu!r}, this one is named {gpu_name!r}")
    return warnings


def same_version(a: str, b: str) -> bool:
    """Whether two TensorRT versions agree in every component both give (``"10.3.0"`` == ``"10.3.0.30"``)."""
    pa, pb = a.strip().split("."), b.strip().split(".")
    n = min(len(pa), len(pb))
    return n >= 2 and pa[:n] == pb[:n]


def require_tensor_api(engine: Any, context: Any) -> None:
    """Check that an execution context was made and that the engine and context offer the name-based tensor API.

    Raises:
        BackendUnavailableError: no context (TensorRT could not allocate its device memory), or a TensorRT
            older than 8.5.
    """
    if context is None:
        raise BackendUnavailableError(
            "TensorRT could not create an execution context: the GPU is out of memory for this engine's "
            "activations; close other GPU programs, or rebuild with a smaller --max-batch / --workspace"
        )
    missing = [a for a in _TENSOR_API_ENGINE if not hasattr(engine, a)]
    missing += [a for a in _TENSOR_API_CONTEXT if not hasattr(context, a)]
    if missing:
        raise BackendUnavailableError(
            f"this TensorRT lacks the name-based tensor API ({', '.join(missing)}): lite-deploy needs TensorRT >= 8.5"
        )


def numpy_dtype(trt_dtype: Any) -> np.dtype:
    """TensorRT ``DataType`` -> numpy dtype.

    Raises:
        ValueError: a type numpy cannot hold (BF16, FP8, INT4); export such tensors as float32/float16.
    """
    name = getattr(trt_dtype, "name", None) or str(trt_dtype).split(".")[-1]
    if name not in _DTYPES:
        raise ValueError(f"engine tensor type {name} has no numpy equivalent: give the engine float32/float16 I/O")
    return np.dtype(_DTYPES[name])


def describe_io(engine: Any, trt: ModuleType) -> Tuple[Tuple[TensorInfo, ...], Tuple[TensorInfo, ...]]:
    """Inputs and outputs of an engine, in its I/O order; dynamic dimensions (-1) become ``None``.

    Args:
        engine: ``trt.ICudaEngine``.
        trt: the ``tensorrt`` module (for ``TensorIOMode``).
    """
    inputs, outputs = [], []
    for i in range(engine.num_io_tensors):
        name = engine.get_tensor_name(i)
        info = TensorInfo(
            name, tuple(dynamic_dim(int(d)) for d in engine.get_tensor_shape(name)),
            numpy_dtype(engine.get_tensor_dtype(name)),
        )
        (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(info)
    return tuple(inputs), tuple(outputs)


def profile_ranges(engine: Any, inputs: Sequence[TensorInfo], profile_index: int = 0) -> Dict[str, ProfileRange]:
    """(min, opt, max) shapes of the dynamic inputs in one optimization profile.

    Static inputs are left out; when the engine lacks ``get_tensor_profile_shape`` the result is empty and only
    TensorRT's own check applies.
    """
    getter = getattr(engine, "get_tensor_profile_shape", None)
    ranges: Dict[str, ProfileRange] = {}
    if getter is None:
        return ranges
    for info in inputs:
        if None in info.shape:
            low, opt, high = getter(info.name, profile_index)
            ranges[info.name] = (tuple(int(v) for v in low), tuple(int(v) for v in opt), tuple(int(v) for v in high))
    return ranges


def check_input_shape(info: TensorInfo, shape: Tuple[int, ...], profile: Optional[ProfileRange]) -> None:
    """Check a concrete input shape against the engine's static dims and its optimization profile.

    Raises:
        ValueError: the shape does not fit, naming the allowed range.
    """
    if len(shape) != len(info.shape) or any(e is not None and e != s for s, e in zip(shape, info.shape)):
        raise ValueError(f"input {info.name!r}: got shape {tuple(shape)}, the engine takes {_show(info.shape)}")
    if profile is not None:
        low, _, high = profile
        if any(s < lo or s > hi for s, lo, hi in zip(shape, low, high)):
            raise ValueError(
                f"input {info.name!r}: shape {tuple(shape)} is outside the engine's optimization profile "
                f"(min {low}, max {high}); rebuild the engine with a wider profile"
            )


def resolved_output_shapes(context: Any, outputs: Sequence[TensorInfo]) -> Dict[str, Tuple[int, ...]]:
    """Output shapes once every input shape is set (``context.get_tensor_shape``).

    Raises:
        ValueError: an output shape is data-dependent (-1), e.g. ONNX NonMaxSuppression; export with padded
            NMS outputs (EfficientNMS) or host NMS instead.
    """
    shapes = {}
    for info in outputs:
        shape = tuple(int(d) for d in context.get_tensor_shape(info.name))
        if any(d < 0 for d in shape):
            raise ValueError(
                f"output {info.name!r} has a data-dependent shape {shape}: export with fixed-size NMS outputs "
                "or without in-graph NMS"
            )
        shapes[info.name] = shape
    return shapes


def _show(shape: Shape) -> Tuple[Any, ...]:
    return tuple("?" if d is None else d for d in shape)
