"""Build a TensorRT engine from an exported ONNX model, on the device that will run it (TensorRT 8.5 to 11).

Engines are tied to the GPU and the TensorRT version, so they are built where they run: a Jetson (TensorRT comes
with JetPack) or an x86 GPU machine. The route is chosen by feature detection (:func:`plan_build`), never by
comparing version numbers; what each version gets (the names are checked against every version's API table by
``tests/trt/test_conformance.py``):

- 8.5, 8.6: the ``EXPLICIT_BATCH`` network flag; FP16 with ``BuilderFlag.FP16``; INT8 from the Q/DQ ONNX with
  ``BuilderFlag.INT8`` (explicit quantization), or from an FP32 ONNX with ``--calib`` (implicit:
  ``IInt8EntropyCalibrator2``, its cache, ``set_calibration_profile``);
- 10.x: explicit batch without a flag, otherwise as 8.x (the calibrator is deprecated there, and the precision
  flags from 10.12);
- 11.x: always strongly typed, no precision flags and no calibrator: the precision is the ONNX's own, FP16 from
  ``export --half``, INT8 from the Q/DQ ONNX of ``export --int8``.

Also: the standard plugins are initialised before parsing (an ``EfficientNMS_TRT`` node needs them); where the
builder chooses precisions (8.x-10.x with FP16/INT8), plugin layers are pinned to float so EfficientNMS gets float
boxes and scores; a dynamic batch axis gets one optimization profile (also the calibration profile); a timing
cache is read before and written after the build; ``build_serialized_network`` builds (``build_engine`` is gone
since 10.0). The engine's spec records the TensorRT version, the GPU's compute capability and name (from the CUDA
binding that will also load it), and the profile.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple, Union

from ....errors import ExportError, VerificationError
from ....io import atomic_write_bytes, read_image
from ....spec import ModelSpec, file_records, sidecar_path
from .api import open_tensorrt

LOGGER = logging.getLogger(__name__)

GiB = 1 << 30
DEFAULT_WORKSPACE_GB = 4.0

Shape = Tuple[int, ...]
Profile = Tuple[Shape, Shape, Shape]


@dataclass(frozen=True)
class BuildPlan:
    """How one engine is built on this TensorRT.

    Attributes:
        precision: the engine's precision, ``fp32``, ``fp16`` or ``int8``.
        network_flags: ``create_network`` flags (the EXPLICIT_BATCH bit on 8.x, else 0).
        builder_flags: names of the ``BuilderFlag`` members to set (none on a strongly typed TensorRT).
        calibrate: implicit INT8 calibration with ``IInt8EntropyCalibrator2``.
        pin_plugins_float: plugin layers are constrained to float (the builder picks precisions elsewhere).
    """

    precision: str
    network_flags: int
    builder_flags: Tuple[str, ...]
    calibrate: bool
    pin_plugins_float: bool


def strongly_typed_only(trt: Any) -> bool:
    """Whether this TensorRT is always strongly typed (11.x: no ``BuilderFlag.FP16``/``INT8``, no calibrators)."""
    return not hasattr(trt.BuilderFlag, "FP16")


def plan_build(trt: Any, *, onnx_precision: str, half: bool = False, calibrate: bool = False) -> BuildPlan:
    """The build route for an ONNX of ``onnx_precision`` on this TensorRT (see the module docstring's table).

    Args:
        trt: the ``tensorrt`` module.
        onnx_precision: the ONNX's spec precision: ``fp32``, ``fp16`` (FP16 weights and arithmetic) or ``int8``
            (Q/DQ).
        half: FP16 asked for (layers the ONNX leaves in float may run in FP16).
        calibrate: implicit INT8 calibration of an FP32/FP16 ONNX (``build-engine --int8 --calib``).

    Raises:
        ExportError: a route this TensorRT does not have, with the export that gives it.
    """
    if calibrate and onnx_precision == "int8":
        raise ExportError("this ONNX is already quantized (Q/DQ INT8): build it without --int8/--calib")
    if strongly_typed_only(trt):
        if calibrate:
            raise ExportError(
                "this TensorRT has no INT8 calibrator (removed in TensorRT 11): export the Q/DQ ONNX with "
                "`lite-deploy export WEIGHTS --target trt --int8 --calib IMAGES` and build the engine from it"
            )
        if half and onnx_precision == "fp32":
            raise ExportError(
                "this TensorRT has no FP16 builder flag (TensorRT 11 is strongly typed): export an FP16 ONNX with "
                "`lite-deploy export WEIGHTS --target trt --half` and build the engine from that file."
            )
        return BuildPlan(onnx_precision, 0, (), False, False)
    creation = trt.NetworkDefinitionCreationFlag
    network_flags = 0 if hasattr(creation, "STRONGLY_TYPED") else 1 << int(creation.EXPLICIT_BATCH)
    flags: List[str] = []
    if onnx_precision == "int8" or calibrate:
        flags.append("INT8")
    if half or onnx_precision == "fp16":
        flags.append("FP16")
    precision = "int8" if "INT8" in flags else "fp16" if flags else "fp32"
    return BuildPlan(precision, network_flags, tuple(flags), calibrate, bool(flags))


def profile_shapes(
    input_shape: Sequence[Optional[int]], *, min_batch: int = 1, opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None,
) -> Optional[Profile]:
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


def pin_plugins_float(trt: Any, network: Any) -> int:
    """Constrain every plugin layer (EfficientNMS_TRT) to float32 computation and float32 float outputs.

    Returns:
        How many layers were pinned (the caller then sets ``BuilderFlag.PREFER_PRECISION_CONSTRAINTS``).
    """
    kinds = [getattr(trt.LayerType, name) for name in ("PLUGIN_V2", "PLUGIN_V3") if hasattr(trt.LayerType, name)]
    floats = (trt.float32, trt.float16)
    pinned = 0
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        if layer.type not in kinds:
            continue
        layer.precision = trt.float32
        for j in range(layer.num_outputs):
            if layer.get_output(j).dtype in floats:
                layer.set_output_type(j, trt.float32)
        pinned += 1
    return pinned


def configure(
    trt: Any, builder: Any, network: Any, plan: BuildPlan, *, workspace_gb: float, profile: Optional[Profile],
    input_name: str, timing_cache: Optional[bytes] = None, calibrator: Any = None,
) -> Any:
    """Create and fill the builder config for ``plan``.

    Args:
        trt: the ``tensorrt`` module.
        builder: a ``trt.Builder``.
        network: the parsed network.
        plan: from :func:`plan_build`.
        workspace_gb: workspace memory-pool limit in GiB.
        profile: (min, opt, max) input shapes from :func:`profile_shapes`, or ``None``.
        input_name: the network input the profile applies to.
        timing_cache: bytes of a previous timing cache, or ``None`` to start an empty one.
        calibrator: the ``IInt8EntropyCalibrator2`` of an implicit INT8 plan (``plan.calibrate``).

    Returns:
        The ``IBuilderConfig``.
    """
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gb * GiB))
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if plan.pin_plugins_float and pin_plugins_float(trt, network):
        config.set_flag(trt.BuilderFlag.PREFER_PRECISION_CONSTRAINTS)
    opt_profile = None
    if profile is not None:
        opt_profile = builder.create_optimization_profile()
        opt_profile.set_shape(input_name, *profile)
        config.add_optimization_profile(opt_profile)
    if plan.calibrate:
        config.int8_calibrator = calibrator
        if opt_profile is not None:  # a dynamic input is calibrated at the profile's opt shape
            config.set_calibration_profile(opt_profile)
    cache = config.create_timing_cache(timing_cache or b"")
    config.set_timing_cache(cache, False)
    return config


def parse_onnx(trt: Any, builder: Any, data: bytes, logger: Any, network_flags: int) -> Any:
    """Parse ONNX bytes into a new network; every parser error is reported in the exception."""
    network = builder.create_network(network_flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(data):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ExportError("TensorRT cannot parse the ONNX model: " + "; ".join(errors or ["no detail given"]))
    return network


def engine_spec(spec: ModelSpec, *, precision: str, trt_version: str, gpu: str, compute_capability: str,
                profile: Optional[Profile]) -> ModelSpec:
    """The engine's spec: the ONNX's spec with target, precision, TensorRT version, GPU and profile recorded."""
    extra = dict(spec.extra, tensorrt=trt_version, gpu=gpu, compute_capability=compute_capability)
    if profile is not None:
        extra["profile"] = {"min": list(profile[0]), "opt": list(profile[1]), "max": list(profile[2])}
    return spec.replace(target="tensorrt", precision=precision, extra=extra)


def build_engine(
    onnx_path: Union[str, Path], engine_path: Optional[Union[str, Path]] = None, *, half: bool = False,
    calib: Optional[Sequence[Path]] = None,
    workspace_gb: float = DEFAULT_WORKSPACE_GB, min_batch: int = 1, opt_batch: Optional[int] = None,
    max_batch: Optional[int] = None, timing_cache: Optional[Union[str, Path]] = None, verify: bool = True,
) -> Tuple[Path, Any]:
    """Build, verify and write a TensorRT engine (and its ``.json`` spec) from an ONNX exported by lite-deploy.

    The engine is built into a hidden staging folder beside its destination, checked there against the ONNX on
    ONNX Runtime (:func:`.verify.verify_engine`: the calibration images when given, else generated scenes), and
    moved into place only when it passes. INT8 engines are compared and reported, not refused: quantization moves
    every output (``export`` judges INT8 by mAP instead).

    Args:
        onnx_path: the TensorRT-ready ONNX (``lite-deploy export --target trt``) with its ``.json`` beside it.
        engine_path: destination; default ``<onnx stem>.engine`` beside the ONNX.
        half: FP16 (see :func:`plan_build`).
        calib: implicit INT8 calibration image files for an FP32 ONNX, TensorRT <= 10.x (``build-engine`` picks
            them from a folder or a data.yaml with :func:`lite_deploy.quantize.calibration.find_images`); the
            calibration cache is ``<engine>.calib.cache`` (reused only for the same ONNX and TensorRT).
        workspace_gb: builder workspace limit in GiB.
        min_batch, opt_batch, max_batch: the optimization profile of a dynamic-batch ONNX.
        timing_cache: timing cache file, read if present and rewritten after the build; default
            ``<engine>.timing.cache``.
        verify: compare the engine with the ONNX before keeping it.

    Returns:
        ``(engine path, verification report or None)``.

    Raises:
        BackendUnavailableError: TensorRT, its plugins or a CUDA binding is missing here (or onnxruntime, to
            verify).
        ExportError: the ONNX cannot be parsed, the route does not exist on this TensorRT, or the build failed.
        VerificationError: an FP32/FP16 engine disagrees with its ONNX (nothing is written).
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise ExportError(
            f"ONNX model {onnx_path} not found; export one with `lite-deploy export WEIGHTS --target trt`")
    trt, logger = open_tensorrt()  # plugins registered before parsing
    spec = read_onnx_spec(onnx_path)
    plan = plan_build(trt, onnx_precision=spec.precision, half=half, calibrate=calib is not None)
    engine_path = Path(engine_path) if engine_path else onnx_path.with_suffix(".engine")
    cache_path = Path(timing_cache) if timing_cache else engine_path.with_name(engine_path.name + ".timing.cache")
    from .cuda import open_cuda

    cuda = open_cuda()
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{engine_path.name}.", dir=str(engine_path.parent)))
    staged = staging / engine_path.name
    try:
        builder = trt.Builder(logger)
        data = onnx_path.read_bytes()
        network = parse_onnx(trt, builder, data, logger, plan.network_flags)
        network_input = network.get_input(0)
        profile = profile_shapes(tuple(network_input.shape), min_batch=min_batch, opt_batch=opt_batch,
                                 max_batch=max_batch)
        calibrator = calib_set = None
        if plan.calibrate:
            from ...calibration import CalibrationSet
            from .calib import entropy_calibrator

            calib_set = CalibrationSet(calib, spec)
            calibrator = entropy_calibrator(
                trt, calib_set, batch=profile[1][0] if profile is not None else (spec.batch or 1),
                cache=engine_path.with_name(engine_path.name + ".calib.cache"),
                model_sha256=hashlib.sha256(data).hexdigest(), cuda=cuda)
        config = configure(trt, builder, network, plan, workspace_gb=workspace_gb, profile=profile,
                           input_name=network_input.name, calibrator=calibrator,
                           timing_cache=cache_path.read_bytes() if cache_path.is_file() else None)
        LOGGER.info("building %s engine from %s (this takes minutes)", plan.precision.upper(), onnx_path.name)
        serialized = builder.build_serialized_network(network, config)
        if calibrator is not None:
            calibrator.free()
        if serialized is None:
            raise ExportError("TensorRT could not build the engine; its log above says which layer failed.")
        atomic_write_bytes(cache_path, bytes(memoryview(config.get_timing_cache().serialize())))
        atomic_write_bytes(staged, bytes(memoryview(serialized)))
        out_spec = engine_spec(spec, precision=plan.precision, trt_version=str(trt.__version__),
                               gpu=cuda.device_name(), compute_capability=cuda.compute_capability(), profile=profile)
        out_spec.replace(files=file_records(staged)).save(sidecar_path(staged))
        report = _verify(staged, onnx_path, out_spec, calib_set.images[:4] if calib_set else None) if verify else None
        staged.replace(engine_path)
        sidecar_path(staged).replace(sidecar_path(engine_path))
    finally:
        cuda.close()
        shutil.rmtree(staging, ignore_errors=True)
    return engine_path, report


def _verify(engine: Path, onnx_path: Path, spec: ModelSpec, image_files: Optional[Sequence[Path]]) -> Any:
    """Compare the staged engine with its ONNX on ``image_files`` (default: generated scenes); raise for an
    FP32/FP16 engine beyond tolerance."""
    from .verify import verify_engine

    images = [read_image(p) for p in image_files] if image_files else None
    report = verify_engine(engine, onnx_path, spec, images)
    if spec.precision == "int8":
        LOGGER.info("INT8 engine against its ONNX (reported, not enforced):\n%s", report.table())
    else:
        try:
            report.raise_for_failure()
        except VerificationError as exc:
            raise VerificationError(str(exc).replace("--no-verify", "build-engine --no-verify")) from None
    return report


def read_onnx_spec(onnx_path: Path) -> ModelSpec:
    """The spec beside an exported ONNX.

    Raises:
        ExportError: it is missing.
    """
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
