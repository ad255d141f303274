"""Compare an artifact with a reference model on the same letterboxed images (device side, torch-free).

The reference is any function ``x (B, 3, H, W) float32 -> raw outputs``: the PyTorch model at export
(:func:`lite_deploy.export.verify.verify_artifact`), or ONNX Runtime running the ONNX a TensorRT engine was built
from (:func:`lite_deploy.runtime.backends.tensorrt.verify.verify_engine`, on the device). Both sides decode and
suppress through the runtime's own code (:mod:`.pipeline`), so every comparison exercises what ships.

Two levels, with tolerances set by the artifact's precision:

1. raw outputs: per output, the maximum absolute difference, also relative to the reference output's range
   (max - min over the batch, or its largest magnitude where that is larger: the near-constant outputs of an
   untrained model, such as a CenterNet heatmap around its prior, vary less than their own rounding); FP32 must
   stay within 1e-4 of the range, FP16 within 1e-2 (FP16 keeps about 3 significant digits and errors grow
   through the network: NVIDIA/TensorRT#2709 reports 1e-2 as normal);
2. detections: both sides' outputs go through the same NMS, and every detection scoring clearly above the
   confidence threshold (by more than the score tolerance) on one side must meet one of the same class on the
   other side with IoU >= 0.99 (FP32) or 0.90 (FP16). Detections within the score tolerance of the threshold,
   NMS keeping the other of two overlapping near-equal boxes, and near-equal class scores swapping the label may
   legitimately differ and are not counted (untrained models, whose scores are nearly flat, show all three).
   Nor is a detection the other side has among its candidates before NMS (the same box at the matching IoU, its
   class scoring within the tolerance): a near-tie of two classes can flip the label and then let NMS remove the
   box under a higher-scoring neighbour of the new class, which a trained FP16 model shows (star 0.08482 vs ring
   0.08475 in FP32, ring 0.08488 vs star 0.08487 in FP16, then suppressed by a ring at IoU 0.55).

Classifiers compare logits and the top-1 class. CenterNet-style detectors compare ``hm``, ``wh`` and ``reg``, then
the boxes the runtime's peak decoding finds on each side.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..boxes import box_iou
from ..errors import VerificationError
from ..spec import ModelSpec
from .pipeline.centernet import decode_centernet
from .pipeline.postprocess import candidates_boxes_scores, select
from .pipeline.preprocess import Preprocessor
from .registry import load_runtime


@dataclass(frozen=True)
class Tolerance:
    """Allowed disagreement for one precision.

    Attributes:
        rel_range: max abs difference allowed, as a fraction of the reference output's range.
        iou: minimum IoU of matched detections.
    """

    rel_range: float
    iou: float


TOLERANCES: Dict[str, Tolerance] = {
    "fp32": Tolerance(rel_range=1e-4, iou=0.99),
    "fp16": Tolerance(rel_range=1e-2, iou=0.90),
    "bf16": Tolerance(rel_range=3e-2, iou=0.85),
}


@dataclass(frozen=True)
class OutputDiff:
    """Disagreement of one output tensor."""

    name: str
    max_abs: float
    value_range: float
    rel: float
    ok: bool


@dataclass(frozen=True)
class DetectionMatch:
    """Detections of one image compared: counts, IoU of the matched pairs, and the unmatched confident ones."""

    reference: int
    artifact: int
    matched: int
    min_iou: float
    missing: int
    extra: int

    @property
    def ok(self) -> bool:
        """No confident detection is missing on either side and every matched pair overlaps enough."""
        return self.missing == 0 and self.extra == 0


@dataclass
class VerificationReport:
    """Everything one verification found; :meth:`table` prints it, :meth:`raise_for_failure` enforces it."""

    artifact: str
    precision: str
    tolerance: Tolerance
    outputs: List[OutputDiff] = field(default_factory=list)
    detections: List[DetectionMatch] = field(default_factory=list)
    problems: List[str] = field(default_factory=list)
    reference: str = "PyTorch"

    @property
    def ok(self) -> bool:
        """Whether every check passed."""
        return not self.problems

    def table(self) -> str:
        """A plain-text table of the output differences and the detection matches."""
        lines = [f"verify {self.artifact} ({self.precision}, tolerance {self.tolerance.rel_range:g} of range, "
                 f"IoU >= {self.tolerance.iou:g}) against {self.reference}"]
        lines.append(f"  {'output':<12} {'max abs diff':>13} {'range':>10} {'rel':>10}  ok")
        for d in self.outputs:
            lines.append(f"  {d.name:<12} {d.max_abs:13.3g} {d.value_range:10.4g} {d.rel:10.2e}  "
                         f"{'yes' if d.ok else 'NO'}")
        if self.detections:
            lines.append(f"  {'image':<6} {'ref':>6} {'artifact':>9} {'matched':>8} {'min IoU':>8} {'missing':>8} "
                         f"{'extra':>6}")
            for i, m in enumerate(self.detections):
                lines.append(f"  {i:<6} {m.reference:6d} {m.artifact:9d} {m.matched:8d} {m.min_iou:8.4f} "
                             f"{m.missing:8d} {m.extra:6d}")
        lines.append("  result: " + ("pass" if self.ok else "FAIL: " + "; ".join(self.problems)))
        return "\n".join(lines)

    def raise_for_failure(self) -> None:
        """Raise :class:`VerificationError` (with the table) when a check failed."""
        if not self.ok:
            raise VerificationError(
                f"{self.artifact} disagrees with {self.reference} beyond the {self.precision} tolerance: "
                f"{'; '.join(self.problems)}; export with --no-verify to keep it anyway.\n{self.table()}"
            )


def sample_images(n: int = 4, seed: int = 0) -> List[np.ndarray]:
    """``n`` generated BGR scenes of different sizes and aspect ratios (so letterboxing pads differently).

    Each has a gradient background, sensor-like noise, and filled / outlined rectangles, ellipses and polylines
    of random colours and sizes, a few of them overlapping: enough structure for a random or trained detector
    to produce boxes of several scales.

    Returns:
        uint8 arrays (H, W, 3).
    """
    import cv2

    rng = np.random.default_rng(seed)
    sizes = [(480, 640), (640, 480), (360, 640), (500, 500), (300, 700), (720, 540)]
    images = []
    for i in range(n):
        h, w = sizes[i % len(sizes)]
        ramp = np.linspace(0, 1, w, dtype=np.float32)[None, :, None] * rng.uniform(40, 160, 3)
        ramp = ramp + np.linspace(0, 1, h, dtype=np.float32)[:, None, None] * rng.uniform(20, 90, 3)
        img = np.clip(ramp + rng.normal(0, 6, (h, w, 3)), 0, 255).astype(np.uint8)
        for _ in range(int(rng.integers(6, 14))):
            color = tuple(int(c) for c in rng.integers(0, 256, 3))
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            bw, bh = int(rng.integers(12, w // 2)), int(rng.integers(12, h // 2))
            thickness = -1 if rng.random() < 0.6 else int(rng.integers(2, 6))
            kind = rng.integers(0, 3)
            if kind == 0:
                cv2.rectangle(img, (x0, y0), (min(w - 1, x0 + bw), min(h - 1, y0 + bh)), color, thickness)
            elif kind == 1:
                cv2.ellipse(img, (x0, y0), (bw // 2, bh // 2), float(rng.uniform(0, 180)), 0, 360, color, thickness)
            else:
                pts = np.stack([rng.integers(0, w, 4), rng.integers(0, h, 4)], 1).astype(np.int32)
                cv2.polylines(img, [pts], True, color, max(2, thickness))
        images.append(img)
    return images


def compare_outputs(reference: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray],
                    tolerance: Tolerance) -> List[OutputDiff]:
    """Max abs difference of each output, relative to the reference's range (integer outputs must be equal).

    Raises:
        VerificationError: an output is missing or has another shape.
    """
    diffs = []
    for name, ref in reference.items():
        if name not in outputs:
            raise VerificationError(f"the artifact has no output {name!r} (it has {sorted(outputs)})")
        out = outputs[name]
        if out.shape != ref.shape:
            raise VerificationError(f"output {name!r} has shape {out.shape}, PyTorch gives {ref.shape}")
        ref64, out64 = ref.astype(np.float64), out.astype(np.float64)
        max_abs = float(np.abs(ref64 - out64).max()) if ref.size else 0.0
        value_range = float(max(ref64.max() - ref64.min(), np.abs(ref64).max())) if ref.size else 0.0
        rel = max_abs / value_range if value_range > 0 else max_abs
        exact = not np.issubdtype(ref.dtype, np.floating)
        ok = max_abs == 0 if exact else rel <= tolerance.rel_range
        diffs.append(OutputDiff(name, max_abs, value_range, rel, ok))
    return diffs


Dets = Tuple[np.ndarray, np.ndarray, np.ndarray]  # boxes (N, 4) xyxy, scores (N,), class ids (N,)
Candidates = Tuple[np.ndarray, np.ndarray]  # one image's outputs before NMS: boxes (N, 4) xyxy, scores (N, nc)


def pair_detections(reference: Dets, artifact: Dets, *, iou: float, conf: float, margin: float,
                    nms_iou: float = 0.45, reference_candidates: Optional[Candidates] = None,
                    artifact_candidates: Optional[Candidates] = None) -> DetectionMatch:
    """Greedily pair same-class detections by IoU, best scores first.

    An unpaired detection is not counted against the artifact when it scores below ``conf + margin`` (it may
    fall on either side of the threshold), or when the other side has, scoring within ``2 * margin`` of it,
    an overlapping box of the same class (IoU >= ``nms_iou``: NMS kept the other of two near-equal boxes), the
    same box under another class (IoU >= ``iou``: two class scores within the tolerance swapped places), or,
    among its candidates before NMS where given, the same box (IoU >= ``iou``) whose score for the detection's
    class is within ``2 * margin`` (a near-tie flipped the label, then NMS removed the box).

    Args:
        reference, artifact: (boxes, scores, class ids) of one image.
        iou: a pair counts as matched at or above this IoU.
        conf: the confidence threshold both sides used.
        margin: score tolerance of the precision.
        nms_iou: the NMS IoU threshold both sides used.
        reference_candidates, artifact_candidates: each side's outputs before NMS, when known.
    """
    rb, rs, rc = reference
    ab, as_, ac = artifact
    any_class = np.nan_to_num(box_iou(rb, ab)) if len(rb) and len(ab) else np.zeros((len(rb), len(ab)))
    ious = np.where(rc[:, None] == ac[None, :], any_class, 0.0)
    used = np.zeros(len(ab), bool)
    matched_ref = np.zeros(len(rb), bool)
    pair_ious = []
    for i in np.argsort(-rs, kind="stable"):
        if not len(ab):
            break
        cand = np.where(used, -1.0, ious[i])
        j = int(cand.argmax())
        if cand[j] >= iou:
            used[j], matched_ref[i] = True, True
            pair_ious.append(float(cand[j]))
    near = np.abs(rs[:, None] - as_[None, :]) <= 2 * margin
    swapped = ((ious >= nms_iou) | (any_class >= iou)) & near
    missing = (~matched_ref) & (rs >= conf + margin) & ~swapped.any(1)
    extra = (~used) & (as_ >= conf + margin) & ~swapped.any(0)
    missing &= ~_among_candidates(reference, missing, artifact_candidates, iou, 2 * margin)
    extra &= ~_among_candidates(artifact, extra, reference_candidates, iou, 2 * margin)
    return DetectionMatch(len(rb), len(ab), len(pair_ious), min(pair_ious) if pair_ious else 1.0,
                          int(missing.sum()), int(extra.sum()))


def _among_candidates(dets: Dets, which: np.ndarray, candidates: Optional[Candidates], iou: float,
                      tolerance: float) -> np.ndarray:
    """For the detections marked in ``which`` (bool (N,)): whether ``candidates`` hold a box at IoU >= ``iou``
    whose score for the detection's class is within ``tolerance`` of its score."""
    found = np.zeros(len(which), bool)
    if candidates is None or not which.any() or not len(candidates[0]):
        return found
    boxes, scores, classes = (d[which] for d in dets)
    same_box = box_iou(boxes, candidates[0]) >= iou  # (n, N); 0/0 = NaN is above no threshold
    close = np.abs(candidates[1][:, classes].T - scores[:, None]) <= tolerance  # (n, N)
    found[which] = (same_box & close).any(1)
    return found


def nms_detections(boxes: np.ndarray, scores: np.ndarray, *, conf: float, iou: float, max_det: int = 300) -> Dets:
    """One image's export outputs (boxes (N, 4) xyxy, scores (N, nc)) through the Detector's own decoding and NMS
    (:func:`~lite_deploy.runtime.pipeline.postprocess.candidates_boxes_scores`, then
    :func:`~lite_deploy.runtime.pipeline.postprocess.select`: best class, class-aware NMS), so every verification
    exercises the code that runs on the device.

    The same function is applied to the reference and the artifact outputs, so differences come from the outputs.
    """
    return select(candidates_boxes_scores(boxes, scores, conf), iou, max_det)


def _nms_outputs(outputs: Mapping[str, np.ndarray], i: int) -> Dets:
    n = int(outputs["num_dets"][i].reshape(-1)[0])
    return outputs["det_boxes"][i, :n], outputs["det_scores"][i, :n], outputs["det_classes"][i, :n].astype(int)


def _named(outputs: Mapping[str, np.ndarray], names: Sequence[str]) -> Dict[str, np.ndarray]:
    """The artifact's outputs under the spec's names (by name when present, else by position)."""
    if all(n in outputs for n in names):
        return {n: outputs[n] for n in names}
    if len(outputs) != len(names):
        raise VerificationError(f"the artifact has outputs {sorted(outputs)}, expected {list(names)}")
    return dict(zip(names, outputs.values()))


def compare_with_reference(
    artifact: Union[str, Path],
    reference: Callable[[np.ndarray], Sequence[np.ndarray]],
    spec: ModelSpec,
    *,
    images: Optional[Sequence[np.ndarray]] = None,
    conf: float = 0.25,
    iou: float = 0.45,
    reference_name: str = "PyTorch",
) -> VerificationReport:
    """Run ``artifact`` and ``reference(x (B, 3, H, W) float32)`` (its raw outputs, in the spec's output order;
    ``boxes``, ``scores`` before NMS for an artifact ending in NMS) on the same letterboxed images and compare.

    Args:
        artifact: the file (any suffix :func:`lite_deploy.runtime.load_runtime` opens).
        reference: the reference model as a function.
        spec: the artifact's spec (input size, layout, batch, outputs, precision).
        images: BGR images; default :func:`sample_images` (as many as the batch, at least 2).
        conf, iou: thresholds of the detection comparison; an artifact ending in NMS (output layout ``nms``) is
            compared with the reference's outputs after the runtime's NMS at the spec's ``extra['nms']``
            thresholds instead.
        reference_name: what the report calls the reference.

    Returns:
        The report (check ``ok`` or call ``raise_for_failure``).
    """
    tolerance = TOLERANCES.get(spec.precision, TOLERANCES["fp32"])
    report = VerificationReport(Path(artifact).name, spec.precision, tolerance, reference=reference_name)
    batch = spec.batch or 2
    images = list(images) if images is not None else sample_images(max(batch, 2))
    preprocess = Preprocessor(spec.replace(layout="NCHW"))
    runtime = load_runtime(artifact)
    try:
        for start in range(0, len(images) - batch + 1, batch):
            chunk = images[start:start + batch]
            x_nchw = preprocess(chunk)[0].copy()
            feed = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if spec.layout == "NHWC" else x_nchw
            ref_names = ("boxes", "scores") if spec.output_layout == "nms" else spec.output_names
            expected = dict(zip(ref_names, reference(x_nchw)))
            outputs = _named(runtime.infer(feed), spec.output_names)
            if spec.output_layout == "nms":
                _check_nms(report, expected, outputs, spec, tolerance)
            else:
                _check_raw(report, expected, outputs, spec, tolerance, conf, iou)
    finally:
        runtime.close()
    return report


def _check_raw(report: VerificationReport, reference: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
               spec: ModelSpec, tolerance: Tolerance, conf: float, iou: float) -> None:
    diffs = compare_outputs(reference, outputs, tolerance)
    _merge_diffs(report, diffs)
    if spec.output_layout == "logits":
        if (reference["logits"].argmax(1) != outputs["logits"].argmax(1)).any() and not all(d.ok for d in diffs):
            report.problems.append("top-1 classes differ")
        return
    if spec.output_layout == "centernet":
        _check_centernet(report, reference, outputs, spec, tolerance, conf, iou)
        return
    margin = tolerance.rel_range * max(1e-6, float(np.ptp(reference["scores"])))
    # both sides' candidates count: with the near-flat scores of an untrained model, a threshold taken from one
    # side alone can fall a rounding step above every score of the other
    conf = min(effective_conf(reference["scores"], conf), effective_conf(outputs["scores"], conf))
    for i in range(len(reference["boxes"])):
        ref_candidates = (reference["boxes"][i], reference["scores"][i])
        art_candidates = (outputs["boxes"][i], outputs["scores"][i])
        _add_match(report, nms_detections(*ref_candidates, conf=conf, iou=iou),
                   nms_detections(*art_candidates, conf=conf, iou=iou), tolerance, conf, margin, iou,
                   ref_candidates, art_candidates)


def _check_centernet(report: VerificationReport, reference: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
                     spec: ModelSpec, tolerance: Tolerance, conf: float, iou: float) -> None:
    """Heatmap peaks of both sides through the runtime's decoder, matched like boxes; ``iou`` marks neighbouring
    near-equal peaks, either of which may win."""
    margin = tolerance.rel_range * max(1e-6, float(reference["hm"].max()))  # the scale compare_outputs uses
    conf = min(effective_conf(reference["hm"].reshape(-1, 1), conf), effective_conf(outputs["hm"].reshape(-1, 1), conf))
    for i in range(len(reference["hm"])):
        ref_dets, art_dets = (decode_centernet(o["hm"][i], o["wh"][i], o["reg"][i], spec.strides[0], conf)
                              for o in (reference, outputs))
        _add_match(report, ref_dets, art_dets, tolerance, conf, margin, iou)


def effective_conf(scores: np.ndarray, conf: float, candidates: int = 100) -> float:
    """``conf``, lowered to just below the ``candidates``-th best box score of the batch when fewer boxes reach it
    (the runtime keeps scores above its threshold, so that box is kept).

    Untrained (random-weight) models score far below any useful threshold; comparing their detections at a
    threshold that keeps about ``candidates`` boxes per batch still tests boxes, scores and NMS.
    """
    best = scores.max(-1).ravel()
    kth = best.min() if best.size <= candidates else np.partition(best, -candidates)[-candidates]
    return float(min(conf, np.nextafter(np.float32(kth), np.float32(-np.inf))))  # scores are float32


def _merge_diffs(report: VerificationReport, diffs: Sequence[OutputDiff]) -> None:
    """Keep, per output, the worst difference over all batches; record failures once."""
    for d in diffs:
        old = next((i for i, o in enumerate(report.outputs) if o.name == d.name), None)
        if old is None:
            report.outputs.append(d)
        elif d.rel > report.outputs[old].rel:
            report.outputs[old] = d
    report.problems[:] = [p for p in report.problems if not p.startswith("output ")]
    report.problems[:0] = [f"output {o.name} differs by {o.max_abs:.3g} ({o.rel:.2e} of its range)"
                           for o in report.outputs if not o.ok]


def _check_nms(report: VerificationReport, reference: Dict[str, np.ndarray], outputs: Dict[str, np.ndarray],
               spec: ModelSpec, tolerance: Tolerance) -> None:
    settings = spec.extra.get("nms", {})
    conf, iou, max_det = settings.get("conf", 0.25), settings.get("iou", 0.45), settings.get("max_det", 300)
    margin = tolerance.rel_range * max(1e-6, float(np.ptp(reference["scores"])))
    for i in range(len(reference["boxes"])):
        ref_candidates = (reference["boxes"][i], reference["scores"][i])
        ref_dets = nms_detections(*ref_candidates, conf=conf, iou=iou, max_det=max_det)
        _add_match(report, ref_dets, _nms_outputs(outputs, i), tolerance, conf, margin, iou, ref_candidates)


def _add_match(report: VerificationReport, ref_dets: Dets, art_dets: Dets, tolerance: Tolerance, conf: float,
               margin: float, nms_iou: float, ref_candidates: Optional[Candidates] = None,
               art_candidates: Optional[Candidates] = None) -> None:
    match = pair_detections(ref_dets, art_dets, iou=tolerance.iou, conf=conf, margin=margin, nms_iou=nms_iou,
                             reference_candidates=ref_candidates, artifact_candidates=art_candidates)
    report.detections.append(match)
    if not match.ok:
        report.problems.append(
            f"image {len(report.detections) - 1}: {match.missing} PyTorch detections unmatched, {match.extra} extra "
            f"(IoU >= {tolerance.iou:g} required)"
        )
