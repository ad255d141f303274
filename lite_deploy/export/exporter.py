"""``lite_deploy.export``: weights -> verified, self-describing artifacts, one target (:mod:`.targets`) at a time.

Every artifact is written with its spec (embedded where the format allows, and ``<artifact>.json`` at commit),
checked against PyTorch where its backend runs here, then moved into the output folder (:mod:`.staging`): a failed
export leaves nothing behind. Artifacts are ``<stem><tag><suffix>`` in ``out`` (default ``<weights stem>_export/``
beside the weights), ``<tag>`` = ``_fp16`` / ``_int8``, ``_nms``. FP16/INT8 are judged against FP32 by mAP on ``data``
(INT8 without it: by agreement with FP32; :mod:`lite_deploy.quantize.gate`, :mod:`lite_deploy.quantize.agreement`).
"""

from __future__ import annotations

import copy
import logging
import shutil
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..quantize.gate import GateResult, Scores
from ..spec import ModelSpec
from . import onnx as onnx_export
from .describe import OUTPUT_NAMES, describe, output_layout, tool_versions
from .options import ExportOptions
from .prepare import default_out_dir, load_weights, resolve_options
from .staging import commit, remove_stale_staging, staging_dir, terminate_cleanly
from .targets import ExportResult, Target, get_target, resolve_targets
from .torch_runtime import set_torch_threads

LOGGER = logging.getLogger(__name__)

Weights = Union[str, Path, nn.Module]
Rebuild = Callable[[Sequence[str]], Path]  # writes an INT8 artifact again with these ONNX Conv nodes kept in float


def export(weights: Weights, target: Union[str, Sequence[str]] = "onnx", options: Optional[ExportOptions] = None, *,
           out: Optional[Union[str, Path]] = None, name: Optional[str] = None, **overrides) -> Dict[str, Path]:
    """Export a model to one or more targets and verify each artifact against PyTorch.

    Args:
        weights: a checkpoint (this project's, YOLOv5's or the slim-neck fork's), a bundled config name (random
            weights) or an already loaded model of this zoo.
        target: ``onnx``, ``openvino``, ``tflite``, ``trt``, a comma-separated list, or ``all``.
        options: an :class:`ExportOptions`; ``overrides`` are its fields (``imgsz=320, precision="fp16"`` ...).
        out: output folder (created if needed). name: file stem of the artifacts (default: the weights' stem).

    Returns:
        ``{target: main artifact path}`` (OpenVINO: the ``.xml``; TensorRT: the engine where it was built here,
        else the TensorRT-ready ONNX).

    Raises:
        TypeError: an unknown option. ValueError: bad option values (unknown target, size not a multiple of the
        stride ...). CheckpointError: unreadable weights. BackendUnavailableError: a converter is not installed.
        ExportError: a conversion failed. VerificationError: an artifact disagrees with PyTorch beyond tolerance.
        Each target is exported on its own: the others are still exported and kept, then the first failure is
        raised (:func:`export_targets` returns every outcome instead).
    """
    results = export_targets(weights, target, options, out=out, name=name, **overrides)
    failed = [r.error for r in results if r.error is not None]
    if failed:
        raise failed[0]
    return {r.target: r.files[0] for r in results}


def export_targets(weights: Weights, target: Union[str, Sequence[str]] = "onnx",
                   options: Optional[ExportOptions] = None, *, out: Optional[Union[str, Path]] = None,
                   name: Optional[str] = None, **overrides) -> List[ExportResult]:
    """:func:`export` returning each target's :class:`ExportResult` (files, timings, notes, gate, or its error).

    Errors found before any target starts (options, weights, calibration images) are raised.
    """
    targets = [get_target(t) for t in resolve_targets(target)]  # before any model loads
    options = ExportOptions.build(options, **overrides)
    model, source = (weights, None) if isinstance(weights, nn.Module) else load_weights(weights)
    stem = name or (type(weights).__name__.lower() if isinstance(weights, nn.Module)
                    else source.stem if source is not None else Path(weights).name)
    named = stem if isinstance(weights, nn.Module) else weights
    out_dir = Path(out) if out is not None else default_out_dir(named, source)
    job = Job(model, source, stem, resolve_options(options, model, source), out_dir)
    results = []
    with terminate_cleanly():
        try:
            for t in targets:
                try:
                    results.append(job.run(t))
                except Exception as exc:  # one target's failure, whatever raised it, must not cost the others
                    LOGGER.debug("%s failed", t.name, exc_info=True)
                    LOGGER.error("%s: %s", t.name, exc)
                    results.append(ExportResult(t.name, options.precision, error=exc))
        finally:
            job.close()
    return results


class Job:
    """One export call: the models, the options, and what the targets share (spec, traced ONNX, calibration,
    the FP32 reference and its mAP, the layers the accuracy gate keeps in float)."""

    def __init__(self, model: nn.Module, source: Optional[Path], stem: str, options: ExportOptions,
                 out_dir: Path) -> None:
        from ..models.deploy import prepare_for_export
        from ..quantize.calibration import find_images

        self.model, self.stem, self.options, self.out_dir = model, stem, options, out_dir
        self.calib_images = find_images(options.calib, options.calib_size) if options.precision == "int8" else []
        self.export_model = prepare_for_export(model)  # works on a copy: the caller's module is untouched
        o = options
        self.base = describe(model, imgsz=o.imgsz, target="onnx", batch=o.input_batch, nms=o.nms, source=source,
                             extra={"nms": {"max_det": o.max_det, "conf": o.conf, "iou": o.iou}} if o.nms else None)
        remove_stale_staging(out_dir)
        self._staging: Optional[Path] = None
        self._work: Optional[Path] = None  # job-wide: the FP32 reference ONNX, calibration ranges, sensitivity trials
        self._fp32_onnx: Dict[bool, Path] = {}  # by channels-last decode
        self._reference: Dict[bool, Tuple[Path, ModelSpec]] = {}
        self._reference_map: Optional[Scores] = None  # the FP32 model's mAP50 and mAP50-95 on the judging data
        self._agreement: Optional[str] = None  # without ``data``: the FP32 detections INT8 is judged by
        self._sensitivity: Optional[List[str]] = None
        self.float_layers: List[str] = []  # ONNX Conv node names kept in float by the accuracy gate so far

    def close(self) -> None:
        """Remove the job's working folder."""
        if self._work is not None:
            shutil.rmtree(self._work, ignore_errors=True)
            self._work = None

    def run(self, target: Target) -> ExportResult:
        """Check, build (export, verify, judge) and commit one target; on any failure remove what it staged.

        torch's threads are sized to the cores free as the target starts (:func:`.torch_runtime.set_torch_threads`),
        as are the backends' sessions made on the way.
        """
        start = time.perf_counter()
        target.check(self.options)
        set_torch_threads()
        try:
            built = target.build(self)
            files = commit(built.artifacts, self.out_dir)
        finally:
            if self._staging is not None:
                shutil.rmtree(self._staging, ignore_errors=True)
                self._staging, self._fp32_onnx = None, {}
        note = "\n".join(line for line in (f"accuracy gate: {built.gate.line()}" if built.gate else "", built.note)
                         if line)
        result = ExportResult(target.name, self.options.precision, files, time.perf_counter() - start - built.verify_s,
                              built.verify_s, note, built.gate)
        LOGGER.info("%s: %s (%.1f s, verify %.1f s)", target.name, files[0], result.export_s, result.verify_s)
        return result

    # ------------------------------------------------------------------ what targets build with
    def spec(self, target: str, *, precision: Optional[str] = None, layout: str = "NCHW",
             tools: Sequence[str] = ("torch",)) -> ModelSpec:
        """The spec of an artifact of this job (``target``: its spec target; the checkpoint was hashed once)."""
        return self.base.replace(target=target, precision=precision or self.options.precision,
                                 layout=layout, tool_versions=tool_versions(tools))

    def onnx_tools(self) -> Tuple[str, ...]:
        """The tools an ONNX-based artifact depends on (onnxruntime too for INT8: it quantizes)."""
        o = self.options
        return ("torch", "onnx") + ((o.simplifier,) if o.simplifier else ()) + (
            ("onnxruntime",) if o.precision == "int8" else ())

    def staged(self, filename: str) -> Path:
        """Path of ``filename`` in the staging folder (created beside the output folder on first use)."""
        if self._staging is None:
            self._staging = staging_dir(self.out_dir, "staging")
        return self._staging / filename

    def work(self, filename: str) -> Path:
        """Path of ``filename`` in the job-wide working folder (beside the output folder, removed by :meth:`close`)."""
        if self._work is None:
            self._work = staging_dir(self.out_dir, "work")
        return self._work / filename

    def write_onnx(self, path: Path, spec: ModelSpec, *, nms: bool, half: bool,
                   channels_last_decode: bool = False) -> Path:
        """Trace the export model (optionally FP16, optionally + ONNX NMS, optionally with the YOLO head's
        channels-last decode), simplify, check the opset, save."""
        from ..models.deploy import channels_last_decode as switch_decode

        o = self.options
        module: nn.Module = self.export_model
        names = OUTPUT_NAMES[output_layout(self.model)]
        if channels_last_decode:
            module = copy.deepcopy(module)
            switch_decode(module)
        if half:
            module = onnx_export.HalfPrecision(copy.deepcopy(module))
        if nms:
            from .nms import with_nms

            module, names = with_nms(module, max_det=o.max_det, iou=o.iou, conf=o.conf), OUTPUT_NAMES["nms"]
        sample = torch.rand(o.input_batch or 1, 3, *o.imgsz, generator=torch.Generator().manual_seed(0))
        proto = onnx_export.torch_to_onnx(module.eval(), sample, output_names=names, opset=o.opset,
                                          dynamic_batch=o.dynamic)
        proto = onnx_export.simplify(proto, o.simplifier)
        onnx_export.check_opset(proto, o.opset)
        return onnx_export.save(proto, path, spec)

    def fp32_onnx(self, channels_last_decode: bool = False) -> Path:
        """The plain FP32 ONNX (with NMS when asked for) that another format converts from (staged, not kept);
        ``channels_last_decode``: with the YOLO head's channels-last decode (OpenVINO), where it applies."""
        key = channels_last_decode and self.has_wide_yolo_head
        if key not in self._fp32_onnx:
            spec = self.spec("onnx", precision="fp32", tools=self.onnx_tools())
            filename = f"{self.stem}{'_nms' if self.options.nms else ''}{'.nhwc' if key else ''}.fp32-src.onnx"
            self._fp32_onnx[key] = self.write_onnx(self.staged(filename), spec, nms=self.options.nms, half=False,
                                                   channels_last_decode=key)
        return self._fp32_onnx[key]

    def reference(self, channels_last_decode: bool = False) -> Tuple[Path, ModelSpec]:
        """The FP32 ONNX (no NMS) and its spec, which calibration, the gate and the sensitivity trials all use;
        ``channels_last_decode``: the same model with the YOLO head's channels-last decode (what OpenVINO's INT8
        quantizes), where it applies."""
        key = channels_last_decode and self.has_wide_yolo_head
        if key not in self._reference:
            spec = self.base.replace(precision="fp32", tool_versions=tool_versions(("torch", "onnx")))
            if self.options.nms:
                layout = output_layout(self.model)
                spec = spec.replace(output_layout=layout, output_names=OUTPUT_NAMES[layout], extra={})
            path = self.work(f"{self.stem}{'.nhwc' if key else ''}.fp32.onnx")
            self._reference[key] = self.write_onnx(path, spec, nms=False, half=False, channels_last_decode=key), spec
        return self._reference[key]

    @property
    def has_wide_yolo_head(self) -> bool:
        """Whether the model ends in a YOLO head that takes the channels-last decode (see
        :func:`~lite_deploy.models.deploy.channels_last_decode`)."""
        from ..models.deploy import channels_last_heads

        return bool(channels_last_heads(self.export_model))

    def calibration(self, spec: ModelSpec):
        """The calibration images (a :class:`~lite_deploy.quantize.calibration.CalibrationSet`) for ``spec``."""
        from ..runtime.calibration import CalibrationSet

        return CalibrationSet(self.calib_images, spec)

    def write_qdq(self, path: Path, spec: ModelSpec, float_layers: Sequence[str], variant: str) -> Path:
        """The Q/DQ INT8 ONNX of :func:`lite_deploy.quantize.qdq_onnx.quantize_qdq`, ``float_layers`` kept in float.

        ``variant``: ``ort`` (uint8 activations, every operator between the convolutions quantized: ONNX Runtime's
        int8 kernels), ``openvino`` (uint8 activations) or ``trt`` (symmetric int8, float biases). Calibrated
        once per job and variant.
        """
        from ..quantize.qdq_onnx import ORT_QUANTIZED_OPS, QUANTIZED_OPS, quantize_qdq

        reference, reference_spec = self.reference()
        symmetric = variant == "trt"
        proto = quantize_qdq(reference, self.calibration(reference_spec), spec, float_nodes=float_layers,
                             cache=self.work(f"ranges.{variant}.json"), symmetric=symmetric, float_bias=symmetric,
                             ops=ORT_QUANTIZED_OPS if variant == "ort" else QUANTIZED_OPS, work=path.parent)
        return onnx_export.save(proto, path, spec)

    def judged(self, artifact: Path, spec: ModelSpec, rebuild: Optional[Rebuild] = None,
               ) -> Tuple[Path, float, Optional[GateResult]]:
        """Verify then gate a staged artifact: ``(artifact kept, seconds spent, gate result)``."""
        start = time.perf_counter()
        self.verify(artifact, spec)
        artifact, gate = self.gate(artifact, spec, rebuild)
        return artifact, time.perf_counter() - start, gate

    def verify(self, artifact: Path, spec: ModelSpec) -> float:
        """Compare ``artifact`` with the torch export model (VerificationError beyond tolerance); seconds spent.

        INT8 artifacts are judged by mAP (:meth:`gate`) instead: quantization moves every output.
        """
        start = time.perf_counter()
        if self.options.verify and spec.precision != "int8":
            from .verify import verify_artifact

            report = verify_artifact(artifact, self.export_model, spec)
            LOGGER.info("%s", report.table())
            report.raise_for_failure()
        return time.perf_counter() - start

    def gate(self, artifact: Path, spec: ModelSpec, rebuild: Optional[Rebuild] = None,
             ) -> Tuple[Path, Optional[GateResult]]:
        """Judge FP16/INT8 by mAP50 and mAP50-95 against FP32 on ``data`` (INT8 without it: by agreement with FP32);
        INT8 keeps its most sensitive layers in float, 1, 2, 4, 8 more at a time, while it loses too much.

        Raises:
            VerificationError: a drop exceeds ``max_map_drop`` (mAP50-95) or ``max_map50_drop`` (mAP50).
        """
        from ..quantize.gate import FALLBACK_STEPS, Limits, enforce, fallback_goal, judge, map_scores

        o = self.options
        data = o.data
        if data is None and spec.precision == "int8" and o.verify:  # no labels: judged by agreement with FP32
            from ..quantize.agreement import agreement_set

            if self._agreement is None:  # "" when the FP32 model detects nothing to agree on
                self._agreement = agreement_set(o.calib, self.calib_images, self.reference()[0], self.work("agreement"))
            data = self._agreement
        if not data or spec.precision == "fp32":
            return artifact, None
        if self._reference_map is None:
            self._reference_map = map_scores(self.reference()[0], data)
        limits = Limits(o.max_map_drop, o.max_map50_drop)
        basis = "" if o.data is not None else "agreement with FP32"
        result = judge(artifact, self._reference_map, data, precision=spec.precision, limits=limits,
                       float_layers=self.float_layers, basis=basis)
        goal = fallback_goal(limits, agreement=bool(basis))
        if spec.precision == "int8" and rebuild is not None and result.exceeded(goal):
            rest = [n for n in self.sensitivity() if n not in self.float_layers]
            for layers in [self.float_layers + rest[:k] for k in FALLBACK_STEPS if k <= len(rest)]:
                artifact = rebuild(layers)
                result = judge(artifact, self._reference_map, data, precision="int8", limits=limits,
                               float_layers=layers, basis=basis)
                self.float_layers = list(layers)
                if not result.exceeded(goal):
                    break
        enforce(result)
        return artifact, result

    def sensitivity(self) -> List[str]:
        """Quantized Conv node names, most sensitive first (measured once per job)."""
        from ..quantize.gate import layer_sensitivity

        if self._sensitivity is None:
            reference, spec = self.reference()
            ranking = layer_sensitivity(reference, self.calibration(spec), spec.replace(precision="int8"),
                                        self.work("sensitivity"))
            self._sensitivity = [name for name, _ in ranking]
        return self._sensitivity

