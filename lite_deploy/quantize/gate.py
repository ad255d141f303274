"""The accuracy gate of FP16 and INT8 artifacts: mAP50 and mAP50-95 against the FP32 model on a validation set.

Both models go through :func:`lite_deploy.eval.validate.validate` (the runtime's own letterbox, decoding and NMS),
so the difference is the precision's alone. Both drops are printed in points (percent) with their limits; an
artifact that loses more than a limit on either metric fails the export with
:class:`~lite_deploy.errors.VerificationError` (no limit by default). The two can disagree: an INT8 model may
keep mAP50-95 and lose 1.4 mAP50 points.

When INT8 loses too much (more than the limits, or :data:`INT8_TARGET_DROP` points on either metric without),
:func:`layer_sensitivity` measures, for every quantized convolution, how much closer
the Q/DQ model's outputs come to the FP32 model's when that one convolution alone is kept in float (calibration
ranges are computed once and reused, so each trial is a re-quantization and a few inferences, not a
calibration); the exporter then keeps the most sensitive ones in float, 1, 2, 4 ... at a time, until the drop is
within the limit, and names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import VerificationError
from ..runtime.calibration import CalibrationSet
from ..spec import ModelSpec

LOGGER = logging.getLogger(__name__)

INT8_TARGET_DROP = 1.0  # mAP50 or mAP50-95 points an INT8 artifact may lose before the per-layer fallback starts
FALLBACK_STEPS = (1, 2, 4, 8)  # most sensitive layers kept in float, tried in this order
SENSITIVITY_IMAGES = 8

PathLike = Union[str, Path]


class Scores(NamedTuple):
    """mAP50 and mAP50-95 of one model, each in [0, 1]."""

    map50: float
    map50_95: float


class Limits(NamedTuple):
    """Largest drops allowed, in points (``None``: no limit): mAP50-95 (``--max-map-drop``), mAP50
    (``--max-map50-drop``)."""

    map50_95: Optional[float] = None
    map50: Optional[float] = None


@dataclass(frozen=True)
class GateResult:
    """One artifact judged against the FP32 model.

    Attributes:
        artifact: the artifact's file name.
        precision: its precision.
        reference: the FP32 model's scores.
        value: the artifact's scores.
        limits: the drops allowed (printed by :meth:`line`, enforced by :func:`enforce`).
        float_layers: layers kept in float by the per-layer fallback (empty when none was needed).
        basis: what the scores measure when not mAP on labels, e.g. ``"agreement with FP32"`` (mAP against the
            FP32 model's own detections, :mod:`lite_deploy.quantize.agreement`).
    """

    artifact: str
    precision: str
    reference: Scores
    value: Scores
    limits: Limits = Limits()
    float_layers: Tuple[str, ...] = ()
    basis: str = ""

    @property
    def drop(self) -> float:
        """mAP50-95 lost, in points (percent; negative when the artifact scores higher)."""
        return 100.0 * (self.reference.map50_95 - self.value.map50_95)

    @property
    def drop50(self) -> float:
        """mAP50 lost, in points."""
        return 100.0 * (self.reference.map50 - self.value.map50)

    def exceeded(self, limits: Limits) -> List[str]:
        """The metrics whose drop is beyond ``limits``, as printable phrases (empty when within both)."""
        over = []
        for metric, drop, limit, option in (("mAP50-95", self.drop, limits.map50_95, "--max-map-drop"),
                                            ("mAP50", self.drop50, limits.map50, "--max-map50-drop")):
            if limit is not None and drop > limit:
                over.append(f"{metric} drop {drop:.2f} points is more than the {option} {limit:g} allowed")
        return over

    def line(self) -> str:
        """One printable line: artifact, precision, both metrics with their drops and limits, layers kept in float."""
        def part(metric: str, value: float, reference: float, drop: float, limit: Optional[float]) -> str:
            return (f"{metric} {100 * value:.2f} vs FP32 {100 * reference:.2f}, drop {drop:+.2f} points "
                    f"(limit {'none' if limit is None else f'{limit:g}'})")

        text = (f"{self.artifact} ({self.precision}{', ' + self.basis if self.basis else ''}): "
                + part("mAP50-95", self.value.map50_95, self.reference.map50_95, self.drop, self.limits.map50_95)
                + "; " + part("mAP50", self.value.map50, self.reference.map50, self.drop50, self.limits.map50))
        if self.float_layers:
            text += f"; kept in float: {', '.join(self.float_layers)}"
        return text


def map_scores(model: Any, data: PathLike, *, progress: bool = False) -> Scores:
    """mAP50 and mAP50-95 of a model path or detector on the validation split of ``data``."""
    from ..eval.validate import validate

    metrics = validate(model if callable(model) else str(model), data, progress=progress, verbose=False)
    return Scores(float(metrics["map50"]), float(metrics["map50_95"]))


def judge(artifact: Any, reference: Scores, data: PathLike, *, precision: str, limits: Limits = Limits(),
          name: Optional[str] = None, float_layers: Sequence[str] = (), basis: str = "") -> GateResult:
    """Score ``artifact`` (a path, or a detector callable) on ``data`` and compare with the FP32 ``reference``
    (``basis``: what ``data``'s labels are when not ground truth, printed in the result's line)."""
    label = name or (Path(artifact).name if not callable(artifact) else type(artifact).__name__)
    result = GateResult(label, precision, reference, map_scores(artifact, data), limits, tuple(float_layers), basis)
    LOGGER.info("accuracy gate: %s", result.line())
    return result


def fallback_goal(limits: Limits, *, agreement: bool = False) -> Limits:
    """The drops the per-layer fallback works towards: the user's limits, else :data:`INT8_TARGET_DROP` points.

    Judged by agreement with FP32 (no labels), only mAP50 gets the default goal: against the FP32 model's own boxes,
    mAP50-95 counts every sub-pixel shift at IoU 0.95 and overstates the loss on real labels (the demo's ONNX INT8
    at 320: agreement drops of 3.3 mAP50-95 and 0.8 mAP50 points where its 400 labelled validation images measure
    0.5 and 0.0), so keeping layers in float would not bring it under a point and would only cost time. A limit the
    user gives applies as given.
    """
    return Limits(limits.map50_95 if agreement or limits.map50_95 is not None else INT8_TARGET_DROP,
                  INT8_TARGET_DROP if limits.map50 is None else limits.map50)


def enforce(result: GateResult) -> None:
    """Raise :class:`VerificationError` when ``result`` lost more than its limits allow on either metric."""
    over = result.exceeded(result.limits)
    if over:
        raise VerificationError(
            f"{result.line()}: {'; '.join(over)}; calibrate on more representative images (--calib), use another "
            "precision, or raise the limit"
        )


def layer_sensitivity(
    fp32_onnx: PathLike,
    calib: CalibrationSet,
    spec: ModelSpec,
    work: PathLike,
    *,
    images: int = SENSITIVITY_IMAGES,
    base_float: Sequence[str] = (),
) -> List[Tuple[str, float]]:
    """Rank the quantized convolutions of the Q/DQ model by how much keeping each alone in float helps.

    Args:
        fp32_onnx: the FP32 ONNX.
        calib: calibration images (FP32 spec).
        spec: the INT8 spec written into the trial models.
        work: a folder for the trial models and the calibration cache.
        images: calibration images the outputs are compared on.
        base_float: nodes already kept in float in every trial.

    Returns:
        ``(conv node name, error reduction)`` pairs, most helpful first; the error is the outputs' summed
        relative squared error against FP32 (``sum((q - f)^2) / sum(f^2)`` per output, added over outputs), and
        the reduction is the fully quantized model's error minus the trial's.
    """
    import onnx
    import onnxruntime as ort
    from tqdm import tqdm

    from .qdq_onnx import quantizable_convs, quantize_qdq

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    cache = work / "ranges.json"
    blobs = list(calib.batches(_batch_of(fp32_onnx), limit=images))
    reference = _run(ort, fp32_onnx, blobs)

    def error(float_nodes: Sequence[str]) -> float:
        trial = work / "trial.onnx"
        onnx.save(quantize_qdq(fp32_onnx, calib, spec, float_nodes=float_nodes, cache=cache, work=work), str(trial))
        outputs = _run(ort, trial, blobs)
        return sum(float(np.sum((outputs[k] - reference[k]) ** 2) / max(np.sum(reference[k] ** 2), 1e-12))
                   for k in reference)

    base = error(base_float)
    candidates = [n for n in quantizable_convs(onnx.load(str(fp32_onnx))) if n not in base_float]
    gains = [(name, base - error([*base_float, name]))
             for name in tqdm(candidates, desc="layer sensitivity", unit="layer")]
    return sorted(gains, key=lambda item: -item[1])


def _batch_of(onnx_path: PathLike) -> int:
    import onnx

    dim = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1


def _run(ort: Any, path: PathLike, blobs: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """Outputs of an ONNX model over ``blobs``, concatenated along the batch axis, by output name."""
    from ..runtime.backends.onnxruntime.runtime import session_options

    session = ort.InferenceSession(str(path), sess_options=session_options(), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    results: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for blob in blobs:
        for n, value in zip(names, session.run(names, {name: blob})):
            results[n].append(np.asarray(value, np.float64))
    return {n: np.concatenate(v) for n, v in results.items()}
