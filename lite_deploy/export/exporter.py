"""``lite_deploy.export``: weights -> verified, self-describing artifacts for ONNX, OpenVINO, TFLite and TensorRT.

Every artifact is written with its spec (``<artifact>.json``, and embedded where the format allows), checked
against PyTorch on generated images where its backend runs here, and only then moved into the output folder:
a failed export leaves nothing behind.

Artifact names, in ``out`` (default: ``<weights folder>/<weights stem>_export/``; for a bundled config name,
``./<name>_export/``), with ``<tag>`` = ``_fp16`` for FP16, ``_int8`` for INT8, ``_nms`` for in-graph NMS:

- ``<stem><tag>.onnx``                    ONNX (ONNX Runtime, or any ONNX consumer); INT8: symmetric Q/DQ
- ``<stem><tag>.xml`` / ``.bin``          OpenVINO IR; INT8: from a Q/DQ ONNX with uint8 activations
- ``<stem><tag>.tflite``                  TFLite; INT8: static int8 weights and activations, head in float
- ``<stem><tag>_trt.onnx``                the ONNX a TensorRT engine is built from (``lite-deploy build-engine``)
- ``<stem><tag>_trt.engine``              the engine, when TensorRT and a GPU are present

FP16 and INT8 artifacts are judged by mAP50 and mAP50-95 against the FP32 model on ``data`` (see
:mod:`lite_deploy.quantize.gate`); INT8 ones are calibrated on ``calib`` (see :mod:`lite_deploy.quantize`).
"""

from __future__ import annotations

import contextlib
import copy
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import BackendUnavailableError, CheckpointError, ConfigError, ExportError
from ..quantize.gate import GateResult, Scores
from ..spec import ModelSpec, file_records, sidecar_path
from . import onnx as onnx_export
from .describe import OUTPUT_NAMES, describe, output_layout

if TYPE_CHECKING:
    from ..runtime.calibration import CalibrationSet

LOGGER = logging.getLogger(__name__)

TARGETS = ("onnx", "openvino", "tflite", "trt")
DYNAMIC_MAX_BATCH = 4  # TensorRT profile max (and opt) batch of a --dynamic export unless build-engine says otherwise
_ALIASES = {"tensorrt": "trt", "engine": "trt", "ov": "openvino"}


@dataclass(frozen=True)
class ExportOptions:
    """What to export and how (see :func:`export` for each field)."""

    imgsz: Tuple[int, int] = (640, 640)
    batch: Optional[int] = 1
    half: bool = False
    opset: int = onnx_export.DEFAULT_OPSET
    simplifier: Optional[str] = "onnxslim"
    nms: bool = False
    max_det: int = 300
    conf: float = 0.25
    iou: float = 0.45
    verify: bool = True
    int8: bool = False
    calib: Optional[str] = None
    calib_size: int = 300
    data: Optional[str] = None
    max_map_drop: Optional[float] = None
    max_map50_drop: Optional[float] = None
    tflite_io: str = "int8"

    @property
    def precision(self) -> str:
        """``int8``, ``fp16`` or ``fp32``."""
        return "int8" if self.int8 else "fp16" if self.half else "fp32"

    @property
    def tag(self) -> str:
        """File-name tag of the precision and NMS choice."""
        return {"fp32": ""}.get(self.precision, f"_{self.precision}") + ("_nms" if self.nms else "")


@dataclass
class ExportResult:
    """One target's outcome: its artifact paths (main file first) and timings in seconds, or the error that
    stopped it (then nothing of it was written)."""

    target: str
    files: List[Path] = field(default_factory=list)
    export_s: float = 0.0
    verify_s: float = 0.0
    note: str = ""
    gate: Optional[GateResult] = None
    error: Optional[Exception] = None

    @property
    def ok(self) -> bool:
        """Whether the target was exported, verified and written."""
        return self.error is None


# A target's outcome: (files, main one first; seconds verifying and judging; note for the user; gate result).
_TargetOutcome = Tuple[List[Path], float, str, Optional[GateResult]]


def parse_targets(target: Union[str, Sequence[str]]) -> List[str]:
    """``"onnx,tflite"``, ``["onnx", "trt"]`` or ``"all"`` -> the list of targets, in a stable order.

    Raises:
        ValueError: an unknown target (the message lists the known ones).
    """
    items = target.split(",") if isinstance(target, str) else list(target)
    names = []
    for item in (i.strip().lower() for i in items):
        if item == "all":
            names.extend(TARGETS)
            continue
        name = _ALIASES.get(item, item)
        if name not in TARGETS:
            raise ValueError(f"unknown export target {item!r}: choose from {', '.join(TARGETS)} or all")
        names.append(name)
    if not names:
        raise ValueError(f"no export target given: choose from {', '.join(TARGETS)} or all")
    return [t for t in TARGETS if t in names]


def resolve_imgsz(imgsz: Union[int, Sequence[int]], stride: int) -> Tuple[int, int]:
    """An int or (height, width) -> (height, width), each a positive multiple of ``stride``.

    Raises:
        ValueError: not a multiple of the stride (the message gives the nearest valid sizes).
    """
    hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
    if len(hw) == 1:
        hw = (hw[0], hw[0])
    if len(hw) != 2 or min(hw) <= 0:
        raise ValueError(f"imgsz must be one size or (height, width) in pixels, got {imgsz}")
    for v in hw:
        if v % stride:
            low, high = max(stride, v // stride * stride), (v // stride + 1) * stride
            raise ValueError(f"image size {v} is not a multiple of the model stride {stride}: use {low} or {high}")
    return hw  # type: ignore[return-value]


def load_weights(weights: Union[str, Path]) -> Tuple[nn.Module, Optional[Path]]:
    """A weights file, or a bundled config name (random weights, for trying the tool) -> (model, source file).

    Raises:
        CheckpointError: not an existing file and not a bundled config name.
    """
    from ..models import build_model, list_configs, load_model

    path = Path(weights)
    if path.is_file():
        return load_model(path), path
    if path.suffix or path.parent != Path("."):
        raise CheckpointError(f"weights file {str(weights)!r} does not exist")
    try:
        model = build_model(str(weights)).eval()
    except ConfigError:
        raise CheckpointError(
            f"{str(weights)!r} is neither a weights file nor a bundled config ({', '.join(list_configs())})"
        ) from None
    LOGGER.warning("%s: bundled config with random weights (for trying the tool; detections are meaningless)", weights)
    return model, None


def default_out_dir(weights: Union[str, Path], source: Optional[Path]) -> Path:
    """``<weights folder>/<stem>_export`` for a file, ``./<name>_export`` for a bundled config name."""
    if source is not None:
        return source.parent / f"{source.stem}_export"
    return Path.cwd() / f"{Path(weights).name}_export"


def export(
    weights: Union[str, Path, nn.Module],
    target: Union[str, Sequence[str]] = "onnx",
    *,
    imgsz: Union[int, Sequence[int]] = 640,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplify: bool = True,
    simplifier: str = "onnxslim",
    nms: bool = False,
    max_det: int = 300,
    conf: float = 0.25,
    iou: float = 0.45,
    out: Optional[Union[str, Path]] = None,
    verify: bool = True,
    name: Optional[str] = None,
    int8: bool = False,
    calib: Optional[Union[str, Path]] = None,
    calib_size: int = 300,
    data: Optional[Union[str, Path]] = None,
    max_map_drop: Optional[float] = None,
    max_map50_drop: Optional[float] = None,
    tflite_io: str = "int8",
) -> Dict[str, Path]:
    """Export a model to one or more deployment formats and verify each artifact against PyTorch.

    Args:
        weights: a checkpoint (this project's, YOLOv5's or the slim-neck fork's), a bundled config name (random
            weights) or an already loaded model of this zoo.
        target: ``onnx``, ``openvino``, ``tflite``, ``trt``, a comma-separated list, or ``all``.
        imgsz: input size, one int or (height, width), multiples of the model stride.
        batch: fixed batch size (ignored with ``dynamic``).
        dynamic: symbolic batch axis (ONNX and OpenVINO; TensorRT gets an optimization profile).
        half: FP16 artifacts: FP16 ONNX (float32 I/O), FP16-compressed OpenVINO IR, TFLite FP16 weights,
            TensorRT FP16 engine.
        opset: ONNX opset (17 by default, the newest TensorRT 8.5 / JetPack 5 parses).
        simplify: simplify the ONNX graph.
        simplifier: ``onnxslim`` (default) or ``onnxsim``.
        nms: end the graph in NMS (outputs ``num_dets``, ``det_boxes``, ``det_scores``, ``det_classes``): ONNX
            ``NonMaxSuppression`` for ONNX / OpenVINO, the ``EfficientNMS_TRT`` plugin for TensorRT.
        max_det, conf, iou: in-graph NMS settings (``nms=True`` only).
        out: output folder (default: see the module docstring). Created if needed.
        verify: compare every artifact that can run here with PyTorch (raises VerificationError beyond tolerance).
        name: file stem of the artifacts (default: the weights' stem or the config name).
        int8: INT8 artifacts calibrated on ``calib``: symmetric Q/DQ ONNX (ONNX Runtime, and TensorRT's ONNX),
            OpenVINO IR from a Q/DQ ONNX, TFLite with int8 activations.
        calib: calibration images: a folder of images or a data.yaml (its train split); required with ``int8``.
        calib_size: number of calibration images used (at most; fewer than 100 only when asked for explicitly).
        data: data.yaml whose validation split judges FP16/INT8 artifacts by mAP50 and mAP50-95 against the FP32
            model (default with ``int8`` and ``verify``: ``calib`` when it is a data.yaml). The drops are logged and
            returned in :attr:`ExportResult.gate`; an INT8 artifact losing more than ``max_map_drop`` mAP50-95 or
            ``max_map50_drop`` mAP50 points (each 1 point when not given) gets its most sensitive layers kept in
            float until it does not.
        max_map_drop: fail (VerificationError) when an artifact's mAP50-95 is more than this many points below the
            FP32 model's on ``data`` (default: no limit).
        max_map50_drop: the same for mAP50 (default: no limit).
        tflite_io: input type of the INT8 TFLite: ``int8`` (the runtime quantizes) or ``float32``; its outputs
            are float32.

    Returns:
        ``{target: main artifact path}`` (for OpenVINO the ``.xml``; for TensorRT the engine where it was built,
        else the TensorRT-ready ONNX).

    Raises:
        ValueError: bad arguments (unknown target, image size not a multiple of the stride ...).
        CheckpointError: the weights cannot be read.
        BackendUnavailableError: a target's converter is not installed.
        ExportError: a conversion failed (nothing of it was written).
        VerificationError: an artifact disagrees with PyTorch beyond its precision's tolerance.

        Each target is exported on its own: when one fails, the others are still exported and kept, and the
        first failure is raised afterwards (:func:`export_targets` returns every outcome instead).
    """
    results = export_targets(
        weights, target, imgsz=imgsz, batch=batch, dynamic=dynamic, half=half, opset=opset,
        simplifier=simplifier if simplify else None, nms=nms, max_det=max_det, conf=conf, iou=iou, out=out,
        verify=verify, name=name, int8=int8, calib=calib, calib_size=calib_size, data=data,
        max_map_drop=max_map_drop, max_map50_drop=max_map50_drop, tflite_io=tflite_io,
    )
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise failed[0]
    return {r.target: r.files[0] for r in results}


def export_targets(
    weights: Union[str, Path, nn.Module],
    target: Union[str, Sequence[str]] = "onnx",
    *,
    imgsz: Union[int, Sequence[int]] = 640,
    batch: int = 1,
    dynamic: bool = False,
    half: bool = False,
    opset: int = onnx_export.DEFAULT_OPSET,
    simplifier: Optional[str] = "onnxslim",
    nms: bool = False,
    max_det: int = 300,
    conf: float = 0.25,
    iou: float = 0.45,
    out: Optional[Union[str, Path]] = None,
    verify: bool = True,
    name: Optional[str] = None,
    int8: bool = False,
    calib: Optional[Union[str, Path]] = None,
    calib_size: int = 300,
    data: Optional[Union[str, Path]] = None,
    max_map_drop: Optional[float] = None,
    max_map50_drop: Optional[float] = None,
    tflite_io: str = "int8",
) -> List[ExportResult]:
    """:func:`export` returning the full :class:`ExportResult` of each target (files, timings, notes).

    Targets are exported one after the other, each on its own: a target that fails gets its error in
    :attr:`ExportResult.error` (nothing of it is written) and the next one is still exported. Errors found before
    any target starts (arguments, weights, calibration images) are raised.
    """
    targets = parse_targets(target)
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if isinstance(weights, nn.Module):
        model, source = weights, None  # prepare_for_export works on a copy; the caller's module is untouched
        stem = name or type(weights).__name__.lower()
    else:
        model, source = load_weights(weights)
        stem = name or (source.stem if source is not None else Path(weights).name)
    stride = int(getattr(model, "stride", torch.tensor([32])).max()) if getattr(model, "task", "detect") == "detect" else 32
    options = ExportOptions(
        imgsz=resolve_imgsz(imgsz, stride), batch=None if dynamic else int(batch), half=half, opset=opset,
        simplifier=simplifier, nms=nms, max_det=max_det, conf=conf, iou=iou, verify=verify, int8=int8,
        calib=None if calib is None else str(calib), calib_size=int(calib_size),
        data=_judging_data(data, calib, int8 and verify),
        max_map_drop=max_map_drop, max_map50_drop=max_map50_drop, tflite_io=tflite_io,
    )
    if nms and output_layout(model) != "boxes_scores":
        raise ValueError("--nms applies to anchor-based detectors only (CenterNet heatmaps are decoded without NMS)")
    calib_images = _check_int8(options, model) if int8 else []
    out_dir = Path(out) if out is not None else default_out_dir(weights if not isinstance(weights, nn.Module) else stem, source)
    from ..models.deploy import prepare_for_export

    export_model = prepare_for_export(model)
    remove_stale_staging(out_dir)
    job = _Job(model, export_model, source, stem, options, out_dir, calib_images)
    results = []
    with _terminate_cleanly():
        try:
            for t in targets:
                try:
                    results.append(job.run(t))
                except Exception as exc:  # one target's failure, whatever raised it, must not cost the others
                    LOGGER.debug("%s failed", t, exc_info=True)
                    LOGGER.error("%s: %s", t, exc)
                    results.append(ExportResult(t, error=exc))
        finally:
            job.close()
    return results


@contextlib.contextmanager
def _terminate_cleanly() -> Iterator[None]:
    """While exporting in the main thread, SIGTERM (``kill``, ``timeout``) raises SystemExit, so that the staging
    folders are removed as on any error; SIGKILL cannot be caught (see :func:`remove_stale_staging`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def staging_dir(out_dir: Path, kind: str) -> Path:
    """A new hidden folder beside ``out_dir`` for files not yet verified: ``.<out>.<kind>.<pid>.<random>``.

    It lies on the output folder's file system (so committing is a rename), and it names the process that owns
    it, so that :func:`remove_stale_staging` can tell the leftovers of a killed export from a running one's.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.{kind}.{os.getpid()}.", dir=str(out_dir.parent)))


def remove_stale_staging(out_dir: Path) -> List[Path]:
    """Remove the staging and working folders (:func:`staging_dir`) that exports into ``out_dir`` left beside it
    when they were killed (their process is gone); those of running exports are kept. Returns the removed ones."""
    pattern = re.compile(rf"\.{re.escape(out_dir.name)}\.(?:staging|work)\.(\d+)\.")
    stale = []
    if out_dir.parent.is_dir():
        for path in out_dir.parent.iterdir():
            match = pattern.match(path.name)
            if match and path.is_dir() and not _process_alive(int(match.group(1))):
                shutil.rmtree(path, ignore_errors=True)
                stale.append(path)
    if stale:
        LOGGER.info("removed %d unverified folder(s) left by interrupted exports into %s: %s", len(stale), out_dir,
                    ", ".join(p.name for p in stale))
    return stale


def _process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (on Windows, where a signal would end it, every process counts as alive)."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _judging_data(data: Optional[Union[str, Path]], calib: Optional[Union[str, Path]], int8: bool) -> Optional[str]:
    """The data.yaml the accuracy gate uses: ``data``, else with INT8 (and verification on) a data.yaml ``calib``."""
    if data is not None:
        return str(data)
    if int8 and calib is not None and Path(calib).suffix.lower() in (".yaml", ".yml"):
        return str(calib)
    return None


def _check_int8(options: ExportOptions, model: nn.Module) -> List[Path]:
    """Refuse INT8 requests that cannot work, before anything is exported; return the calibration images.

    Raises:
        ValueError: INT8 with ``half`` or for a classifier, or an unknown TFLite I/O type.
        ExportError: no calibration images, or too few (see :func:`lite_deploy.quantize.calibration.find_images`).
    """
    from ..quantize.calibration import find_images
    from ..quantize.tflite_int8 import IO_DTYPES

    if options.half:
        raise ValueError("choose one precision: --int8 or --half")
    if output_layout(model) == "logits":
        raise ValueError("--int8 applies to detectors only (its accuracy gate measures mAP): export a classifier "
                         "without --int8")
    if options.tflite_io not in IO_DTYPES:
        raise ValueError(f"tflite_io must be one of {', '.join(IO_DTYPES)}, got {options.tflite_io!r}")
    images = find_images(options.calib, options.calib_size)
    if options.data is None:
        LOGGER.warning("INT8 artifacts are not judged without a validation set: pass --data data.yaml to measure "
                       "their mAP against the FP32 model")
    return images


class _Job:
    """One export call: the models, options and the staging folder every target writes into first."""

    def __init__(self, model: nn.Module, export_model: nn.Module, source: Optional[Path], stem: str,
                 options: ExportOptions, out_dir: Path, calib_images: Sequence[Path] = ()) -> None:
        self.model, self.export_model, self.source, self.stem = model, export_model, source, stem
        self.options, self.out_dir = options, out_dir
        self.calib_images = list(calib_images)
        self._fp32_onnx: Optional[Path] = None
        self._staging: Optional[Path] = None
        self._work: Optional[Path] = None  # job-wide: the FP32 reference ONNX, calibration ranges, sensitivity trials
        self._reference_map: Optional[Scores] = None  # the FP32 model's mAP50 and mAP50-95 on ``data``
        self._sensitivity: Optional[List[str]] = None
        self.float_layers: List[str] = []  # ONNX Conv node names kept in float by the accuracy gate so far

    def close(self) -> None:
        """Remove the job's working folder."""
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    # ------------------------------------------------------------------ helpers
    def spec(self, target: str, *, precision: Optional[str] = None, layout: str = "NCHW",
             tools: Sequence[str] = ("torch",)) -> ModelSpec:
        """The spec of an artifact of this job."""
        o = self.options
        return describe(
            self.model, imgsz=o.imgsz, target=target, batch=o.batch, precision=precision or o.precision,
            layout=layout, nms=o.nms, source=self.source, tools=tools,
            extra={"nms": {"max_det": o.max_det, "conf": o.conf, "iou": o.iou}} if o.nms else None,
        )

    def sample(self) -> torch.Tensor:
        """A random input (B, 3, H, W) in [0, 1) for tracing (B = the fixed batch, or 1 for a dynamic one)."""
        return torch.rand(self.options.batch or 1, 3, *self.options.imgsz, generator=torch.Generator().manual_seed(0))

    def staged(self, filename: str) -> Path:
        """Path of ``filename`` in the staging folder (created beside the output folder on first use)."""
        if self._staging is None:
            self._staging = staging_dir(self.out_dir, "staging")
        return self._staging / filename

    def module_for(self, nms_kind: Optional[str], half: bool) -> Tuple[nn.Module, Tuple[str, ...]]:
        """The module to trace and its output names: export model, optionally FP16, optionally + ONNX NMS (which
        then gets the FP16 detector's outputs cast to float)."""
        module: nn.Module = self.export_model
        names = OUTPUT_NAMES[output_layout(self.model)]
        if half:
            module = onnx_export.HalfPrecision(copy.deepcopy(module))
        if nms_kind is not None:
            from .nms import with_nms

            o = self.options
            module = with_nms(module, max_det=o.max_det, iou=o.iou, conf=o.conf)
            names = OUTPUT_NAMES["nms"]
        return module.eval(), names

    def write_onnx(self, filename: str, spec: ModelSpec, *, nms_kind: Optional[str], half: bool) -> Path:
        """Trace, check the opset, simplify and save one ONNX into the staging folder."""
        o = self.options
        module, names = self.module_for(nms_kind, half)
        proto = onnx_export.torch_to_onnx(module, self.sample(), output_names=names, opset=o.opset,
                                          dynamic_batch=o.batch is None)
        proto = onnx_export.simplify(proto, o.simplifier)
        onnx_export.check_opset(proto, o.opset)
        return onnx_export.save(proto, self.staged(filename), spec)

    def fp32_onnx(self) -> Path:
        """The plain FP32 ONNX that OpenVINO converts from (staged, not kept)."""
        if self._fp32_onnx is None:
            spec = self.spec("onnx", precision="fp32", tools=self.onnx_tools())
            self._fp32_onnx = self.write_onnx(f"{self.stem}{'_nms' if self.options.nms else ''}.fp32-src.onnx", spec,
                                              nms_kind="onnx" if self.options.nms else None, half=False)
        return self._fp32_onnx

    def work(self, filename: str) -> Path:
        """Path of ``filename`` in the job-wide working folder (beside the output folder, removed by :meth:`close`)."""
        if self._work is None:
            self._work = staging_dir(self.out_dir, "work")
        return self._work / filename

    def reference_onnx(self) -> Path:
        """The FP32 ONNX (no NMS) that calibration, the accuracy gate and the sensitivity trials all use."""
        path = self.work(f"{self.stem}.fp32.onnx")
        if not path.is_file():
            spec = self.spec("onnx", precision="fp32", tools=self.onnx_tools())
            module, names = self.module_for(None, False)
            o = self.options
            proto = onnx_export.torch_to_onnx(module, self.sample(), output_names=names, opset=o.opset,
                                              dynamic_batch=o.batch is None)
            onnx_export.save(onnx_export.simplify(proto, o.simplifier), path, spec)
        return path

    def calibration(self, spec: ModelSpec) -> "CalibrationSet":
        """The calibration images, pre-processed for ``spec``."""
        from ..runtime.calibration import CalibrationSet

        return CalibrationSet(self.calib_images, spec)

    def write_qdq(self, filename: str, spec: ModelSpec, float_layers: Sequence[str], symmetric: bool = True,
                  for_trt: bool = False, for_ort: bool = False) -> Path:
        """The Q/DQ INT8 ONNX (staged), with ``float_layers`` kept in float; calibrated once per job and kind.

        ``symmetric``: int8 activations with zero point 0 (TensorRT); else uint8 ones (OpenVINO).
        ``for_ort``: ONNX Runtime's variant: uint8 activations and every operator between the convolutions
        quantized (:data:`~lite_deploy.quantize.qdq_onnx.ORT_QUANTIZED_OPS`), which ORT runs in int8 kernels.
        ``for_trt``: TensorRT's variant: biases kept float, and ``--nms`` allowed (the caller appends
        EfficientNMS_TRT to the judged Q/DQ model).
        """
        from ..quantize.qdq_onnx import ORT_QUANTIZED_OPS, QUANTIZED_OPS, quantize_qdq

        if self.options.nms and not for_trt:
            raise ExportError("--int8 with --nms is TensorRT-only (EfficientNMS): export this target's INT8 without "
                              "--nms (NMS runs on the host)")
        reference = self.reference_onnx()
        calib = self.calibration(ModelSpec.load(sidecar_path(reference)))
        symmetric = symmetric and not for_ort
        kind = ("int8" if symmetric else "uint8") + (".ort" if for_ort else "")
        return quantize_qdq(reference, self.staged(filename), calib, spec, float_nodes=float_layers,
                            cache=self.work(f"ranges.{kind}.json"), symmetric=symmetric, float_bias=for_trt,
                            ops=ORT_QUANTIZED_OPS if for_ort else QUANTIZED_OPS)

    def gate(self, artifact: Path, spec: ModelSpec, rebuild: Optional[Callable[[Sequence[str]], Path]] = None,
             ) -> Tuple[Path, Optional[GateResult]]:
        """Judge an FP16/INT8 artifact by mAP50 and mAP50-95 against the FP32 model; INT8 falls back layer by layer.

        Args:
            artifact: the staged artifact.
            spec: its spec.
            rebuild: for INT8, writes the artifact again with the given ONNX Conv node names kept in float.

        Returns:
            ``(artifact, result)``: the artifact finally kept (rebuilt by the fallback or not) and its gate result
            (``None`` without ``data`` or for FP32).

        Raises:
            VerificationError: a drop exceeds ``max_map_drop`` (mAP50-95) or ``max_map50_drop`` (mAP50).
        """
        from ..quantize.gate import INT8_TARGET_DROP, Limits, enforce, judge, map_scores

        o = self.options
        if o.data is None or spec.precision == "fp32":
            return artifact, None
        if self._reference_map is None:
            self._reference_map = map_scores(self.reference_onnx(), o.data)
        limits = Limits(o.max_map_drop, o.max_map50_drop)
        result = judge(artifact, self._reference_map, o.data, precision=spec.precision, limits=limits,
                       float_layers=self.float_layers)
        target = Limits(*(INT8_TARGET_DROP if v is None else v for v in limits))
        if spec.precision == "int8" and rebuild is not None and result.exceeded(target):
            ranking = self.sensitivity(spec)
            for layers in self._fallback_sets(ranking):
                artifact = rebuild(layers)
                result = judge(artifact, self._reference_map, o.data, precision="int8", limits=limits,
                               float_layers=layers)
                self.float_layers = list(layers)
                if not result.exceeded(target):
                    break
        enforce(result)
        return artifact, result

    def sensitivity(self, spec: ModelSpec) -> List[str]:
        """Quantized Conv node names, most sensitive first (measured once per job)."""
        from ..quantize.gate import layer_sensitivity

        if self._sensitivity is None:
            reference = self.reference_onnx()
            calib = self.calibration(ModelSpec.load(sidecar_path(reference)))
            ranking = layer_sensitivity(reference, calib, spec.replace(target="onnx"), self.work("sensitivity"))
            self._sensitivity = [name for name, _ in ranking]
        return self._sensitivity

    def _fallback_sets(self, ranking: Sequence[str]) -> List[List[str]]:
        """The float sets the fallback tries: the most sensitive 1, 2, 4, 8 layers beyond those already kept."""
        from ..quantize.gate import FALLBACK_STEPS

        rest = [n for n in ranking if n not in self.float_layers]
        return [self.float_layers + rest[:k] for k in FALLBACK_STEPS if k <= len(rest)]

    def onnx_tools(self) -> Tuple[str, ...]:
        return ("torch", "onnx") + ((self.options.simplifier,) if self.options.simplifier else ())

    def verify(self, artifact: Path, spec: ModelSpec) -> None:
        """Compare ``artifact`` with the torch export-mode model; raise VerificationError beyond tolerance.

        INT8 artifacts are not compared tensor by tensor (quantization moves every output); the accuracy gate
        judges them by mAP instead.
        """
        if not self.options.verify or spec.precision == "int8":
            return
        from .verify import verify_artifact

        report = verify_artifact(artifact, self.export_model, spec)
        LOGGER.info("%s", report.table())
        report.raise_for_failure()

    def commit(self, files: Sequence[Path]) -> List[Path]:
        """Move staged files into the output folder (each with an atomic rename) and return the new paths.

        Each sidecar first records the size and SHA-256 of its artifact's files (:attr:`ModelSpec.files`) and is
        moved in before them: a commit interrupted over an earlier export of the same name leaves a sidecar that
        does not match the files beside it, which :func:`lite_deploy.runtime.load_runtime` refuses, never a mix
        of two exports that loads.
        """
        sidecars = [f for f in files if f.suffix == ".json"]
        for sidecar in sidecars:
            artifact = sidecar.with_name(sidecar.name[: -len(".json")])
            ModelSpec.load(sidecar).replace(files=file_records(artifact)).save(sidecar)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        for f in sidecars + [f for f in files if f not in sidecars]:
            f.chmod(0o666 & ~umask)  # temporary files are created private
            f.replace(self.out_dir / f.name)
        return [self.out_dir / f.name for f in files]

    # ------------------------------------------------------------------ targets
    def run(self, target: str) -> ExportResult:
        """Export, verify (and judge) and commit one target; on any failure remove everything it staged."""
        start = time.perf_counter()
        result = ExportResult(target)
        try:
            files, verify_s, note, gate = getattr(self, f"_{target}")()
            result.files = self.commit(files)
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging, self._fp32_onnx = None, None
        result.verify_s, result.gate = verify_s, gate
        result.note = "\n".join(line for line in (f"accuracy gate: {gate.line()}" if gate else "", note) if line)
        result.export_s = time.perf_counter() - start - verify_s
        LOGGER.info("%s: %s (%.1f s, verify %.1f s)", target, result.files[0], result.export_s, result.verify_s)
        return result

    def _timed_verify(self, artifact: Path, spec: ModelSpec) -> float:
        start = time.perf_counter()
        self.verify(artifact, spec)
        return time.perf_counter() - start

    def _judged(self, artifact: Path, spec: ModelSpec, rebuild: Optional[Callable[[Sequence[str]], Path]] = None,
                ) -> Tuple[Path, float, Optional[GateResult]]:
        """:meth:`verify` then :meth:`gate` an artifact: ``(artifact kept, seconds spent, gate result)``."""
        start = time.perf_counter()
        self.verify(artifact, spec)
        artifact, gate = self.gate(artifact, spec, rebuild)
        return artifact, time.perf_counter() - start, gate

    def _onnx(self) -> _TargetOutcome:
        o = self.options
        spec = self.spec("onnx", tools=self.onnx_tools() + (("onnxruntime",) if o.int8 else ()))
        filename = f"{self.stem}{o.tag}.onnx"
        if o.int8:
            path, seconds, gate = self._judged(self.write_qdq(filename, spec, self.float_layers, for_ort=True), spec,
                                               lambda layers: self.write_qdq(filename, spec, layers, for_ort=True))
        else:
            path = self.write_onnx(filename, spec, nms_kind="onnx" if o.nms else None, half=o.half)
            path, seconds, gate = self._judged(path, spec)
        return [path, sidecar_path(path)], seconds, "", gate

    def _openvino(self) -> _TargetOutcome:
        from .openvino import onnx_to_openvino

        o = self.options
        spec = self.spec("openvino", tools=self.onnx_tools() + (("onnxruntime",) if o.int8 else ()) + ("openvino",))
        xml_path = self.staged(f"{self.stem}{o.tag}.xml")
        if o.int8:
            from ..quantize.openvino_int8 import qdq_to_openvino

            def build(layers: Sequence[str]) -> Path:
                qdq = self.write_qdq(f"{self.stem}.openvino-src.int8.onnx", spec.replace(target="onnx"), layers,
                                     symmetric=False)
                return qdq_to_openvino(qdq, xml_path, spec)

            xml, seconds, gate = self._judged(build(self.float_layers), spec, build)
        else:
            xml, seconds, gate = self._judged(onnx_to_openvino(self.fp32_onnx(), xml_path, spec), spec)
        return [xml, xml.with_suffix(".bin"), sidecar_path(xml)], seconds, "", gate

    def _tflite(self) -> _TargetOutcome:
        from .tflite import DEFAULT_LAYOUT, torch_to_tflite

        o = self.options
        if o.batch is None:
            raise ExportError("TFLite needs a fixed batch size: export it with --batch N instead of --dynamic")
        if o.nms:
            raise ExportError("in-graph NMS is not available for TFLite: export it without --nms")
        spec = self.spec("tflite", layout=DEFAULT_LAYOUT, tools=("torch", "litert-torch"))
        if o.int8:
            from ..quantize.tflite_int8 import module_of_node, torch_to_tflite_int8

            spec = spec.replace(input_dtype=o.tflite_io)
            path = self.staged(f"{self.stem}{o.tag}.tflite")

            def build(layers: Sequence[str]) -> Path:
                return torch_to_tflite_int8(self.export_model, path, spec, self.calibration(spec),
                                            float_modules=[module_of_node(n) for n in layers])

            path, seconds, gate = self._judged(build(self.float_layers), spec, build)
        else:
            path = torch_to_tflite(self.export_model, self.staged(f"{self.stem}{o.tag}.tflite"), spec)
            path, seconds, gate = self._judged(path, spec)
        return [path, sidecar_path(path)], seconds, "", gate

    def _trt(self) -> _TargetOutcome:
        from ..runtime.backends.tensorrt.build import build_command, build_engine

        o = self.options
        if o.opset > 17:
            LOGGER.warning("opset %d: TensorRT 8.5 (JetPack 5) parses ONNX opsets up to 17 only", o.opset)
        spec = self.spec("tensorrt", tools=self.onnx_tools() + (("onnxruntime",) if o.int8 else ()))
        filename = f"{self.stem}{o.tag}_trt.onnx"
        # the detector alone is verified (and judged) on ONNX Runtime; EfficientNMS, which it cannot run, comes after
        layout = output_layout(self.model)
        plain = spec.replace(output_layout=layout, output_names=OUTPUT_NAMES[layout],
                             extra={k: v for k, v in spec.extra.items() if k != "nms"})
        if o.int8:  # the same Q/DQ graph TensorRT builds from
            path, verify_s, gate = self._judged(self.write_qdq(filename, plain, self.float_layers, for_trt=True), plain,
                                                lambda layers: self.write_qdq(filename, plain, layers, for_trt=True))
        else:
            path = self.write_onnx(filename, plain, nms_kind=None, half=o.half)
            path, verify_s, gate = self._judged(path, plain.replace(target="onnx"))
        if o.nms:
            import onnx

            from .nms import append_efficient_nms

            proto = append_efficient_nms(onnx.load(str(path)), max_det=o.max_det, iou=o.iou, conf=o.conf)
            path = onnx_export.save(proto, path, spec)
        files = [path, sidecar_path(path)]
        try:
            engine, _ = build_engine(path, half=o.half, max_batch=None if o.batch else DYNAMIC_MAX_BATCH, verify=False)
        except BackendUnavailableError:
            command = build_command(path.name, half=o.half, spec_batch=o.batch, max_batch=DYNAMIC_MAX_BATCH)
            return files, verify_s, f"TensorRT is not installed here; on the device run: {command}", gate
        files = [engine, sidecar_path(engine)] + files
        verify_s += self._timed_verify(engine, ModelSpec.load(sidecar_path(engine)))
        return files, verify_s, "", gate
