"""The accuracy gate of FP16 and INT8 artifacts: mAP50-95 against the FP32 model on a validation set.

Both models go through :func:`lite_deploy.eval.validate.validate` (the runtime's own letterbox, decoding and NMS),
so the difference is the precision's alone. The drop is printed in mAP50-95 points (percent); with a limit,
an artifact that loses more fails the export with :class:`~lite_deploy.errors.VerificationError`.

When INT8 loses too much, :func:`layer_sensitivity` measures, for every quantized convolution, how much closer
the Q/DQ model's outputs come to the FP32 model's when that one convolution alone is kept in float (calibration
ranges are computed once and reused, so each trial is a re-quantization and a few inferences, not a
calibration); the exporter then keeps the most sensitive ones in float, 1, 2, 4 ... at a time, until the drop is
within the limit, and names them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import VerificationError
from ..spec import ModelSpec
from .calibration import CalibrationSet

LOGGER = logging.getLogger(__name__)

INT8_TARGET_DROP = 1.0  # mAP50-95 points an INT8 artifact may lose before the per-layer fallback starts
FALLBACK_STEPS = (1, 2, 4, 8)  # most sensitive layers kept in float, tried in this order
SENSITIVITY_IMAGES = 8

PathLike = Union[str, Path]


@dataclass(frozen=True)
class GateResult:
    """One artifact judged against the FP32 model.

    Attributes:
        artifact: the artifact's file name.
        precision: its precision.
        reference: FP32 mAP50-95, in [0, 1].
        value: the artifact's mAP50-95, in [0, 1].
        float_layers: layers kept in float by the per-layer fallback (empty when none was needed).
    """

    artifact: str
    precision: str
    reference: float
    value: float
    float_layers: Tuple[str, ...] = ()

    @property
    def drop(self) -> float:
        """mAP50-95 lost, in points (percent; negative when the artifact scores higher)."""
        return 100.0 * (self.reference - self.value)

    def line(self) -> str:
        """One printable line: artifact, precision, both mAPs, the drop, and any layers kept in float."""
        text = (f"{self.artifact} ({self.precision}): mAP50-95 {100 * self.value:.2f} vs FP32 "
                f"{100 * self.reference:.2f}, drop {self.drop:+.2f} points")
        if self.float_layers:
            text += f"; kept in float: {', '.join(self.float_layers)}"
        return text


def map50_95(model: Any, data: PathLike, *, progress: bool = False) -> float:
    """mAP50-95 in [0, 1] of a model path or detector on the validation split of ``data``."""
    from ..eval.validate import validate

    return float(validate(model if callable(model) else str(model), data, progress=progress, verbose=False)["map50_95"])


def judge(artifact: Any, reference: float, data: PathLike, *, precision: str, name: Optional[str] = None,
          float_layers: Sequence[str] = ()) -> GateResult:
    """Score ``artifact`` (a path, or a detector callable) on ``data`` and compare with the FP32 ``reference``."""
    label = name or (Path(artifact).name if not callable(artifact) else type(artifact).__name__)
    result = GateResult(label, precision, reference, map50_95(artifact, data), tuple(float_layers))
    LOGGER.info("accuracy gate: %s", result.line())
    return result


def enforce(result: GateResult, max_drop: Optional[float]) -> None:
    """Raise :class:`VerificationError` when ``result`` lost more than ``max_drop`` points (``None``: no limit)."""
    if max_drop is not None and result.drop > max_drop:
        raise VerificationError(
            f"{result.line()}: more than the --max-map-drop {max_drop:g} allowed; calibrate on more representative "
            "images (--calib), use another precision, or raise --max-map-drop"
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
        trial = quantize_qdq(fp32_onnx, work / "trial.onnx", calib, spec, float_nodes=float_nodes, cache=cache)
        outputs = _run(ort, trial, blobs)
        return sum(float(np.sum((outputs[k] - reference[k]) ** 2) / max(np.sum(reference[k] ** 2), 1e-12))
                   for k in reference)

    base = error(base_float)
    candidates = [n for n in quantizable_convs(onnx.load(str(fp32_onnx))) if n not in base_float]
    gains = [(name, base - error([*base_float, name])) for name in tqdm(candidates, desc="layer sensitivity", unit="layer")]
    return sorted(gains, key=lambda item: -item[1])


def _batch_of(onnx_path: PathLike) -> int:
    import onnx

    dim = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1


def _run(ort: Any, path: PathLike, blobs: Sequence[np.ndarray]) -> Dict[str, np.ndarray]:
    """Outputs of an ONNX model over ``blobs``, concatenated along the batch axis, by output name."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    names = [o.name for o in session.get_outputs()]
    results: Dict[str, List[np.ndarray]] = {n: [] for n in names}
    for blob in blobs:
        for n, value in zip(names, session.run(names, {name: blob})):
            results[n].append(np.asarray(value, np.float64))
    return {n: np.concatenate(v) for n, v in results.items()}
