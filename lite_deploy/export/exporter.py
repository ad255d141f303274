"""``lite_deploy.export``: weights -> verified, self-describing artifacts for ONNX, OpenVINO, TFLite and TensorRT.

Every artifact is written with its spec (``<artifact>.json``, and embedded where the format allows), checked
against PyTorch on generated images where its backend runs here, and only then moved into the output folder:
a failed export leaves nothing behind.

Artifact names, in ``out`` (default: ``<weights folder>/<weights stem>_export/``; for a bundled config name,
``./<name>_export/``), with ``<tag>`` = ``_fp16`` for FP16, ``_nms`` for in-graph NMS:

- ``<stem><tag>.onnx``                    ONNX (ONNX Runtime, or any ONNX consumer)
- ``<stem><tag>.xml`` / ``.bin``          OpenVINO IR
- ``<stem><tag>.tflite``                  TFLite
- ``<stem><tag>_trt.onnx``                the ONNX a TensorRT engine is built from (``lite-deploy build-engine``)
- ``<stem><tag>_trt.engine``              the engine, when TensorRT and a GPU are present
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import BackendUnavailableError, CheckpointError, ConfigError, ExportError
from ..spec import ModelSpec, sidecar_path
from . import onnx as onnx_export
from .describe import OUTPUT_NAMES, describe, output_layout

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

    @property
    def precision(self) -> str:
        """``fp16`` or ``fp32``."""
        return "fp16" if self.half else "fp32"

    @property
    def tag(self) -> str:
        """File-name tag of the precision and NMS choice."""
        return ("_fp16" if self.half else "") + ("_nms" if self.nms else "")


@dataclass
class ExportResult:
    """One target's outcome: its artifact paths (main file first) and timings in seconds."""

    target: str
    files: List[Path] = field(default_factory=list)
    export_s: float = 0.0
    verify_s: float = 0.0
    note: str = ""


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
        int8: INT8 artifacts calibrated on ``calib`` (symmetric Q/DQ ONNX, NNCF OpenVINO IR, full-integer TFLite,
            Q/DQ ONNX for TensorRT).
        calib: calibration images: a folder of images or a data.yaml (its train split); required with ``int8``.
        calib_size: number of calibration images used (at most; fewer than 100 only when asked for explicitly).
        data: data.yaml whose validation split judges FP16/INT8 artifacts by mAP50-95 against the FP32 model.
        max_map_drop: fail (VerificationError) when an artifact's mAP50-95 is more than this many points below the
            FP32 model's on ``data``.

    Returns:
        ``{target: main artifact path}`` (for OpenVINO the ``.xml``; for TensorRT the engine where it was built,
        else the TensorRT-ready ONNX).

    Raises:
        ValueError: bad arguments (unknown target, image size not a multiple of the stride ...).
        CheckpointError: the weights cannot be read.
        BackendUnavailableError: a target's converter is not installed.
        ExportError: a conversion failed (nothing of it was written).
        VerificationError: an artifact disagrees with PyTorch beyond its precision's tolerance.
    """
    results = export_targets(
        weights, target, imgsz=imgsz, batch=batch, dynamic=dynamic, half=half, opset=opset,
        simplifier=simplifier if simplify else None, nms=nms, max_det=max_det, conf=conf, iou=iou, out=out,
        verify=verify, name=name, int8=int8, calib=calib, calib_size=calib_size, data=data,
        max_map_drop=max_map_drop,
    )
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
) -> List[ExportResult]:
    """:func:`export` returning the full :class:`ExportResult` of each target (files, timings, notes)."""
    targets = parse_targets(target)
    if int8:
        raise ExportError("INT8 export is not available in this version yet; export without --int8")
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
        simplifier=simplifier, nms=nms, max_det=max_det, conf=conf, iou=iou, verify=verify,
    )
    if nms and output_layout(model) != "boxes_scores":
        raise ValueError("--nms applies to anchor-based detectors only (CenterNet heatmaps are decoded without NMS)")
    out_dir = Path(out) if out is not None else default_out_dir(weights if not isinstance(weights, nn.Module) else stem, source)
    from ..models.deploy import prepare_for_export

    export_model = prepare_for_export(model)
    job = _Job(model, export_model, source, stem, options, out_dir)
    return [job.run(t) for t in targets]


class _Job:
    """One export call: the models, options and the staging folder every target writes into first."""

    def __init__(self, model: nn.Module, export_model: nn.Module, source: Optional[Path], stem: str,
                 options: ExportOptions, out_dir: Path) -> None:
        self.model, self.export_model, self.source, self.stem = model, export_model, source, stem
        self.options, self.out_dir = options, out_dir
        self._fp32_onnx: Optional[Path] = None
        self._staging: Optional[Path] = None

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
            self.out_dir.parent.mkdir(parents=True, exist_ok=True)
            self._staging = Path(tempfile.mkdtemp(prefix=f".{self.out_dir.name}.", dir=str(self.out_dir.parent)))
        return self._staging / filename

    def module_for(self, nms_kind: Optional[str], half: bool) -> Tuple[nn.Module, Tuple[str, ...]]:
        """The module to trace and its output names: export model, optionally + NMS, optionally FP16."""
        module: nn.Module = self.export_model
        names = OUTPUT_NAMES[output_layout(self.model)]
        if nms_kind is not None:
            from .nms import with_nms

            o = self.options
            module = with_nms(module, kind=nms_kind, max_det=o.max_det, iou=o.iou, conf=o.conf)
            names = OUTPUT_NAMES["nms"]
        if half:
            module = onnx_export.HalfPrecision(copy.deepcopy(module))
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

    def onnx_tools(self) -> Tuple[str, ...]:
        return ("torch", "onnx") + ((self.options.simplifier,) if self.options.simplifier else ())

    def verify(self, artifact: Path, spec: ModelSpec) -> None:
        """Compare ``artifact`` with the torch export-mode model; raise VerificationError beyond tolerance."""
        if not self.options.verify:
            return
        from .verify import verify_artifact

        report = verify_artifact(artifact, self.export_model, spec)
        LOGGER.info("%s", report.table())
        report.raise_for_failure()

    def commit(self, files: Sequence[Path]) -> List[Path]:
        """Move staged files into the output folder (each with an atomic rename) and return the new paths."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        umask = os.umask(0)
        os.umask(umask)
        moved = []
        for f in files:
            f.chmod(0o666 & ~umask)  # temporary files are created private
            dest = self.out_dir / f.name
            f.replace(dest)
            moved.append(dest)
        return moved

    # ------------------------------------------------------------------ targets
    def run(self, target: str) -> ExportResult:
        """Export, verify and commit one target; on any failure remove everything it staged."""
        start = time.perf_counter()
        result = ExportResult(target)
        try:
            files, verify_s, note = getattr(self, f"_{target}")()
            result.files = self.commit(files)
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging, self._fp32_onnx = None, None
        result.verify_s, result.note = verify_s, note
        result.export_s = time.perf_counter() - start - verify_s
        LOGGER.info("%s: %s (%.1f s, verify %.1f s)", target, result.files[0], result.export_s, result.verify_s)
        return result

    def _timed_verify(self, artifact: Path, spec: ModelSpec) -> float:
        start = time.perf_counter()
        self.verify(artifact, spec)
        return time.perf_counter() - start

    def _onnx(self) -> Tuple[List[Path], float, str]:
        o = self.options
        spec = self.spec("onnx", tools=self.onnx_tools())
        path = self.write_onnx(f"{self.stem}{o.tag}.onnx", spec, nms_kind="onnx" if o.nms else None, half=o.half)
        return [path, sidecar_path(path)], self._timed_verify(path, spec), ""

    def _openvino(self) -> Tuple[List[Path], float, str]:
        from .openvino import onnx_to_openvino

        spec = self.spec("openvino", tools=self.onnx_tools() + ("openvino",))
        xml = onnx_to_openvino(self.fp32_onnx(), self.staged(f"{self.stem}{self.options.tag}.xml"), spec)
        files = [xml, xml.with_suffix(".bin"), sidecar_path(xml)]
        return files, self._timed_verify(xml, spec), ""

    def _tflite(self) -> Tuple[List[Path], float, str]:
        from .tflite import DEFAULT_LAYOUT, torch_to_tflite

        o = self.options
        if o.batch is None:
            raise ExportError("TFLite needs a fixed batch size: export it with --batch N instead of --dynamic")
        if o.nms:
            raise ExportError("in-graph NMS is not available for TFLite: export it without --nms")
        spec = self.spec("tflite", layout=DEFAULT_LAYOUT, tools=("torch", "litert-torch"))
        path = torch_to_tflite(self.export_model, self.staged(f"{self.stem}{o.tag}.tflite"), spec)
        return [path, sidecar_path(path)], self._timed_verify(path, spec), ""

    def _trt(self) -> Tuple[List[Path], float, str]:
        from .tensorrt import build_command, build_engine

        o = self.options
        if o.opset > 17:
            LOGGER.warning("opset %d: TensorRT 8.5 (JetPack 5) parses ONNX opsets up to 17 only", o.opset)
        spec = self.spec("tensorrt", tools=self.onnx_tools())
        path = self.write_onnx(f"{self.stem}{o.tag}_trt.onnx", spec, nms_kind="trt" if o.nms else None, half=o.half)
        files = [path, sidecar_path(path)]
        verify_s = 0.0 if o.nms else self._timed_verify(path, spec.replace(target="onnx"))
        try:
            engine = build_engine(path, half=o.half, max_batch=None if o.batch else DYNAMIC_MAX_BATCH)
        except BackendUnavailableError:
            command = build_command(path.name, half=o.half, spec_batch=o.batch, max_batch=DYNAMIC_MAX_BATCH)
            return files, verify_s, f"TensorRT is not installed here; on the device run: {command}"
        files = [engine, sidecar_path(engine)] + files
        verify_s += self._timed_verify(engine, ModelSpec.load(sidecar_path(engine)))
        return files, verify_s, ""

