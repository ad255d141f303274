"""Build a TensorRT engine from an exported ONNX model, on the device that will run it (TensorRT 8.5 to 11).

Engines are tied to the GPU and the TensorRT version, so they are built where they run: a Jetson (TensorRT comes
with JetPack) or an x86 GPU machine. Only the API present from 8.5 to 11 is used, chosen by feature detection,
never by comparing versions:

- ``NetworkDefinitionCreationFlag.EXPLICIT_BATCH`` is set where the attribute exists (required in 8.5, a no-op in
  10, gone from the Python API in 11);
- the workspace is set with ``config.set_memory_pool_limit(MemoryPoolType.WORKSPACE, bytes)``;
- FP16 uses ``BuilderFlag.FP16`` where it exists (<= 10.x); TensorRT 11 is always strongly typed and has no
  precision flags, so FP16 there comes from an FP16 ONNX (``lite-deploy export --target trt --half``);
- INT8 comes from the Q/DQ ONNX (``--int8``), with ``BuilderFlag.INT8`` set where it exists (<= 10.x);
- a dynamic batch axis gets one optimization profile (min/opt/max);
- a timing cache file is read before and written after the build;
- ``builder.build_serialized_network`` (``build_engine`` is gone since 10.0).

Everything that does not need TensorRT itself (flags, profile shapes, the spec) is a pure function of the
``tensorrt`` module object passed in, so it can be checked without a GPU.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any, Optional, Sequence, Tuple, Union

from ..errors import BackendUnavailableError, ExportError
from ..spec import ModelSpec, atomic_write_bytes, sidecar_path

LOGGER = logging.getLogger(__name__)

GiB = 1 << 30
DEFAULT_WORKSPACE_GB = 4.0
TENSORRT_MISSING = (
    "TensorRT is not installed here: it comes with JetPack on a Jetson (python3-libnvinfer; a virtualenv needs "
    "--system-site-packages) or with NVIDIA's tensorrt wheels on an x86 GPU machine; run `lite-deploy build-engine` "
    "on that device."
)

Shape = Tuple[int, ...]


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`BackendUnavailableError` saying where TensorRT comes from."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(TENSORRT_MISSING) from exc
    return tensorrt


def network_flags(trt: Any) -> int:
    """Network creation flags: the EXPLICIT_BATCH bit where this TensorRT still has it, else 0."""
    flags = getattr(trt, "NetworkDefinitionCreationFlag", None)
    if flags is not None and hasattr(flags, "EXPLICIT_BATCH"):
        return 1 << int(flags.EXPLICIT_BATCH)
    return 0


def fp16_plan(trt: Any, *, half: bool, onnx_fp16: bool) -> Tuple[bool, str]:
    """Decide how the engine gets its precision.

    Args:
        trt: the ``tensorrt`` module (or an object with its ``BuilderFlag`` namespace).
        half: the user asked for FP16.
        onnx_fp16: the ONNX already carries FP16 weights and arithmetic (its spec says ``fp16``).

    Returns:
        ``(set_fp16_flag, precision)``: whether to set ``BuilderFlag.FP16`` and the engine's precision name.

    Raises:
        ExportError: FP16 asked of a strongly typed TensorRT (no FP16 flag) with an FP32 ONNX.
    """
    has_flag = hasattr(getattr(trt, "BuilderFlag", None), "FP16")
    if onnx_fp16:
        return has_flag, "fp16"
    if not half:
        return False, "fp32"
    if not has_flag:
        raise ExportError(
            "this TensorRT has no FP16 builder flag (TensorRT 11 is strongly typed): export an FP16 ONNX with "
            "`lite-deploy export WEIGHTS --target trt --half` and build the engine from that file."
        )
    return True, "fp16"


def profile_shapes(
    input_shape: Sequence[Optional[int]], *, min_batch: int = 1, opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
) -> Optional[Tuple[Shape, Shape, Shape]]:
    """Optimization profile (min, opt, max) for an input whose batch axis may be dynamic.

    Args:
        input_shape: the ONNX input shape, ``None`` or a negative value for a symbolic axis; only axis 0 may be
            symbolic (height and width are fixed at export).
        min_batch, opt_batch, max_batch: batch sizes of the profile; ``opt_batch`` defaults to ``max_batch``,
            ``max_batch`` to ``opt_batch`` or ``min_batch``.

    Returns:
        ``None`` for a fully static input (no profile needed), else the three shapes.

    Raises:
        ValueError: symbolic axes other than the batch, or batch sizes out of order.
    """
    dims = [None if d is None or int(d) < 0 else int(d) for d in input_shape]
    if any(d is None for d in dims[1:]):
        raise ValueError(f"only the batch axis may be dynamic for TensorRT, input shape is {list(input_shape)}")
    if dims[0] is not None:
        return None
    max_batch = max_batch or opt_batch or min_batch
    opt_batch = opt_batch or max_batch
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"need 1 <= min-batch <= opt-batch <= max-batch, got {min_batch}, {opt_batch}, {max_batch}")
    rest = tuple(dims[1:])
    return (min_batch, *rest), (opt_batch, *rest), (max_batch, *rest)


def configure(
    trt: Any, builder: Any, network: Any, *, half: bool, onnx_fp16: bool, workspace_gb: float,
    profile: Optional[Tuple[Shape, Shape, Shape]], input_name: str, timing_cache: Optional[bytes] = None,
    onnx_int8: bool = False,
) -> Tuple[Any, str]:
    """Create and fill the builder config.

    Args:
        trt: the ``tensorrt`` module.
        builder: a ``trt.Builder``.
        network: the parsed network.
        half, onnx_fp16: see :func:`fp16_plan`.
        workspace_gb: workspace memory-pool limit in GiB.
        profile: (min, opt, max) input shapes from :func:`profile_shapes`, or ``None``.
        input_name: the network input the profile applies to.
        timing_cache: bytes of a previous timing cache, or ``None`` to start an empty one.
        onnx_int8: the ONNX is a Q/DQ INT8 model (``lite-deploy export --target trt --int8``): TensorRT <= 10.x
            builds its Q/DQ layers in INT8 only with ``BuilderFlag.INT8`` set; 11 (strongly typed) has no flag.

    Returns:
        ``(config, precision)``.
    """
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * GiB))
    set_fp16, precision = fp16_plan(trt, half=half, onnx_fp16=onnx_fp16)
    if set_fp16:
        config.set_flag(trt.BuilderFlag.FP16)
    if onnx_int8:
        precision = "int8"
        if hasattr(getattr(trt, "BuilderFlag", None), "INT8"):
            config.set_flag(trt.BuilderFlag.INT8)
    if profile is not None:
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(input_name, *profile)
        config.add_optimization_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, False)
    return config, precision


def parse_onnx(trt: Any, builder: Any, data: bytes, logger: Any) -> Any:
    """Parse ONNX bytes into a new network; every parser error is reported in the exception."""
    network = builder.create_network(network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT cannot parse the ONNX model: " + "; ".join(errors or ["no detail given"]))
    return network


def engine_spec(spec: ModelSpec, *, precision: str, trt_version: str, gpu: str,
                profile: Optional[Tuple[Shape, Shape, Shape]]) -> ModelSpec:
    """The engine's spec: the ONNX's spec with target, precision, TensorRT version, GPU and profile recorded."""
    extra = dict(spec.extra, tensorrt=trt_version, gpu=gpu)
    if profile is not None:
        extra["profile"] = {"min": list(profile[0]), "opt": list(profile[1]), "max": list(profile[2])}
    return spec.replace(target="tensorrt", precision=precision, extra=extra)


def gpu_name() -> str:
    """Name of CUDA device 0 (cuda-python, then ``nvidia-smi``, then a Jetson's device-tree model), else ``""``."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            cudart = None
    if cudart is not None:
        err, props = cudart.cudaGetDeviceProperties(0)
        if int(err) == 0:
            return props.name.decode(errors="replace").strip("\x00").strip()
    if shutil.which("nvidia-smi"):
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.splitlines()[0].strip()
    model = Path("/proc/device-tree/model")
    return model.read_text(errors="replace").strip("\x00").strip() if model.is_file() else ""


def build_engine(
    onnx_path: Union[str, Path], engine_path: Optional[Union[str, Path]] = None, *, half: bool = False,
    workspace_gb: float = DEFAULT_WORKSPACE_GB, min_batch: int = 1, opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None, timing_cache: Optional[Union[str, Path]] = None,
) -> Path:
    """Build and write a TensorRT engine (and its ``.json`` spec) from an ONNX exported by lite-deploy.

    Args:
        onnx_path: the TensorRT-ready ONNX (``lite-deploy export --target trt``); its spec is read from the
            ``.json`` beside it or from its metadata.
        engine_path: destination; default ``<onnx stem>.engine`` beside the ONNX.
        half: build FP16 (see :func:`fp16_plan`).
        workspace_gb: builder workspace limit in GiB.
        min_batch, opt_batch, max_batch: the optimization profile of a dynamic-batch ONNX.
        timing_cache: timing cache file, read if present and rewritten after the build; default
            ``<engine>.timing.cache``.

    Returns:
        The engine path.

    Raises:
        BackendUnavailableError: TensorRT is not installed here.
        ExportError: the ONNX cannot be parsed or the engine cannot be built.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(f"ONNX model {onnx_path} not found; export one with `lite-deploy export WEIGHTS --target trt`")
    trt = import_tensorrt()
    spec = _read_spec(onnx_path)
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    cache_path = Path(timing_cache) if timing_cache else engine_path.with_name(engine_path.name + ".timing.cache")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = parse_onnx(trt, builder, onnx_path.read_bytes(), logger)
    network_input = network.get_input(0)
    input_name = network_input.name
    profile = profile_shapes(tuple(network_input.shape), min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch)
    config, precision = configure(
        trt, builder, network, half=half, onnx_fp16=spec.precision == "fp16", workspace_gb=workspace_gb,
        profile=profile, input_name=input_name, timing_cache=cache_path.read_bytes() if cache_path.is_file() else None,
        onnx_int8=spec.precision == "int8",
    )
    LOGGER.info("building %s engine from %s (this takes minutes)", precision.upper(), onnx_path.name)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build the engine; its log above says which layer failed.")
    atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    engine_spec(spec, precision=precision, trt_version=str(trt.__version__), gpu=gpu_name(), profile=profile).save(
        sidecar_path(engine_path)
    )
    return engine_path


def _read_spec(onnx_path: Path) -> ModelSpec:
    side = sidecar_path(onnx_path)
    if not side.is_file():
        raise ExportError(
            f"{side.name} is missing: copy it with {onnx_path.name} (both come from `lite-deploy export --target trt`)"
        )
    return ModelSpec.load(side)


def build_command(onnx_name: str, *, half: bool, spec_batch: Optional[int], max_batch: int) -> str:
    """The ``lite-deploy build-engine`` command line to run on the device for an exported ONNX."""
    parts = ["lite-deploy", "build-engine", onnx_name]
    if half:
        parts.append("--half")
    parts += ["--workspace", f"{DEFAULT_WORKSPACE_GB:g}"]
    if spec_batch is None:
        parts += ["--min-batch", "1", "--opt-batch", str(max_batch), "--max-batch", str(max_batch)]
    return " ".join(parts)

