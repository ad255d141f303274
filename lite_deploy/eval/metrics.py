"""COCO-style detection metrics (bbox mAP50 and mAP50-95, as pycocotools computes them) and YOLOv5-style P and R.

The COCO part re-implements ``pycocotools.cocoeval.COCOeval`` for ``iouType="bbox"``, area range ``all`` and
``maxDets=100`` step by step, so its numbers equal ``stats[0]`` (mAP50-95) and ``stats[1]`` (mAP50):

* per image and class, detections are sorted by descending score with a stable sort (ties keep their input order)
  and cut to the ``max_dets`` best;
* IoU is computed on ``x y w h`` boxes without the legacy ``+1`` (``w = x2 - x1``); for crowd regions the union is
  the detection's own area;
* matching is greedy, per IoU threshold 0.50:0.05:0.95: each detection takes the unmatched regular ground truth
  with the highest IoU >= threshold (ties: the later one), otherwise any crowd region with IoU >= threshold, in
  which case it is ignored (neither true nor false positive);
* per class, detections of all images (in image order) are sorted again by score (stable), precision is made
  monotone (precision envelope) and read at 101 recall thresholds ``linspace(0, 1, 101)`` with
  ``searchsorted(side="left")``; recall thresholds beyond the reached recall count as precision 0;
* classes without ground truth get -1 and are left out of the means (a dataset without any ground truth has -1).

P and R follow YOLOv5's ``ap_per_class``: precision and recall at IoU 0.50 as functions of the confidence on a
1000-point grid, one confidence chosen where the class-mean F1 (box-smoothed over 10 % of the grid) is highest, and
P and R of each class read at that confidence.

numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..boxes import xyxy_to_xywh

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)  # pycocotools: linspace(.5, .95, round((.95 - .5) / .05) + 1)
RECALL_THRESHOLDS = np.linspace(0.0, 1.0, 101)
MAX_DETS = 100
CONF_GRID = np.linspace(0.0, 1.0, 1000)
# COCO's area range "all": detections outside it that match nothing are ignored.
AREA_ALL = (0.0, 1e5**2)


def box_iou_coco(dt: np.ndarray, gt: np.ndarray, crowd: Optional[np.ndarray] = None) -> np.ndarray:
    """IoU of COCO ``x y w h`` boxes exactly as pycocotools' ``maskUtils.iou`` computes it for boxes.

    Args:
        dt: (D, 4) float64 xywh detections.
        gt: (G, 4) float64 xywh ground truth.
        crowd: (G,) bool; for crowd columns the union is the detection's area.

    Returns:
        (D, G) float64 IoU.
    """
    dx, dy, dw, dh = (dt[:, i : i + 1] for i in range(4))
    gx, gy, gw, gh = (gt[None, :, i] for i in range(4))
    w = np.minimum(dw + dx, gw + gx) - np.maximum(dx, gx)
    h = np.minimum(dh + dy, gh + gy) - np.maximum(dy, gy)
    inter = np.where((w > 0) & (h > 0), w * h, 0.0)
    d_area = dw * dh
    union = d_area + gw * gh - inter
    if crowd is not None and crowd.any():
        union = np.where(crowd[None, :], d_area, union)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(inter > 0, inter / union, 0.0)


def match_detections(
    ious: np.ndarray, crowd: np.ndarray, thresholds: np.ndarray = IOU_THRESHOLDS
) -> Tuple[np.ndarray, np.ndarray]:
    """Greedy COCO matching of score-sorted detections to the ground truth of one image and class.

    Args:
        ious: (D, G) IoU, rows sorted by descending score, columns in ground-truth order.
        crowd: (G,) bool crowd flags.
        thresholds: (T,) IoU thresholds.

    Returns:
        ``(matched, ignored)``, each (T, D) bool: detection d is a match at threshold t (a true positive unless
        ignored); ignored detections matched a crowd region.
    """
    n_det, n_gt = ious.shape
    thr = np.minimum(thresholds, 1 - 1e-10)[:, None]
    matched = np.zeros((len(thr), n_det), bool)
    ignored = np.zeros((len(thr), n_det), bool)
    if n_det == 0 or n_gt == 0:
        return matched, ignored
    regular = ious[:, ~crowd]
    crowd_ious = ious[:, crowd]
    taken = np.zeros((len(thr), regular.shape[1]), bool)
    candidates = np.flatnonzero(ious.max(axis=1) >= thr.min())
    for d in candidates:
        hit = np.zeros(len(thr), bool)
        if regular.shape[1]:
            ok = ~taken & (regular[d][None, :] >= thr)
            values = np.where(ok, regular[d][None, :], -np.inf)
            last_best = values.shape[1] - 1 - np.argmax(values[:, ::-1], axis=1)
            hit = ok.any(axis=1)
            taken[hit, last_best[hit]] = True
            matched[hit, d] = True
        if crowd_ious.shape[1]:
            on_crowd = ~hit & (crowd_ious[d][None, :] >= thr).any(axis=1)
            matched[on_crowd, d] = True
            ignored[on_crowd, d] = True
    return matched, ignored


@dataclass(frozen=True)
class ClassMetrics:
    """Metrics of one class.

    Attributes:
        name: class name.
        images: images containing the class.
        instances: ground-truth objects of the class (crowd regions excluded).
        precision: P at the dataset's F1-max confidence.
        recall: R at that confidence.
        map50: COCO AP at IoU 0.50 (-1 without ground truth).
        map50_95: COCO AP averaged over IoU 0.50:0.95 (-1 without ground truth).
    """

    name: str
    images: int
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float


@dataclass(frozen=True)
class DetectionMetrics:
    """Result of :meth:`DetectionEvaluator.compute`.

    Attributes:
        images: images evaluated.
        instances: ground-truth objects (crowd regions excluded).
        precision: mean P over classes with ground truth, at ``f1_conf``.
        recall: mean R over those classes, at ``f1_conf``.
        map50: COCO mAP at IoU 0.50 (pycocotools ``stats[1]``).
        map50_95: COCO mAP at IoU 0.50:0.95 (pycocotools ``stats[0]``).
        f1_conf: the confidence where the class-mean F1 peaks.
        per_class: one entry per class, in class-id order.
        pr_precision: (T, R, K) interpolated precision at each IoU threshold, recall threshold and class
            (-1 for classes without ground truth), pycocotools' ``eval["precision"][..., 0, -1]``.
    """

    images: int
    instances: int
    precision: float
    recall: float
    map50: float
    map50_95: float
    f1_conf: float
    per_class: Tuple[ClassMetrics, ...]
    pr_precision: np.ndarray

    def table(self) -> str:
        """The result as a text table: one ``all`` row, then one row per class with ground truth."""
        head = f"{'Class':>20}{'Images':>11}{'Instances':>11}{'P':>11}{'R':>11}{'mAP50':>11}{'mAP50-95':>11}"

        def row(name: str, images: int, instances: int, p: float, r: float, m50: float, m: float) -> str:
            return f"{name:>20}{images:>11}{instances:>11}{p:>11.3f}{r:>11.3f}{m50:>11.3f}{m:>11.3f}"

        lines = [head, row("all", self.images, self.instances, self.precision, self.recall, self.map50, self.map50_95)]
        for c in self.per_class:
            if c.instances:
                lines.append(row(c.name, c.images, c.instances, c.precision, c.recall, c.map50, c.map50_95))
        return "\n".join(lines)

    def to_dict(self) -> Dict[str, object]:
        """JSON-ready summary (no arrays)."""
        return {
            "images": self.images,
            "instances": self.instances,
            "precision": self.precision,
            "recall": self.recall,
            "map50": self.map50,
            "map50_95": self.map50_95,
            "f1_conf": self.f1_conf,
            "per_class": {c.name: {k: v for k, v in c.__dict__.items() if k != "name"} for c in self.per_class},
        }


class DetectionEvaluator:
    """Accumulates predictions and ground truth image by image, then computes :class:`DetectionMetrics`.

    Images must be added in the order of their COCO image ids for score ties across images to be broken as
    pycocotools breaks them.

    Example:
        >>> ev = DetectionEvaluator(nc=2)
        >>> ev.update(pred_boxes, pred_scores, pred_classes, gt_boxes, gt_classes)
        >>> ev.compute(names=("cat", "dog")).map50_95
    """

    def __init__(self, nc: int, *, max_dets: int = MAX_DETS, iou_thresholds: np.ndarray = IOU_THRESHOLDS) -> None:
        """Start an empty evaluation.

        Args:
            nc: number of classes; predictions of other class ids are ignored, as pycocotools ignores categories
                absent from the ground truth file.
            max_dets: detections kept per image and class (COCO: 100).
            iou_thresholds: (T,) IoU thresholds; the first one is used for P and R.
        """
        if nc < 1:
            raise ValueError(f"nc must be >= 1, got {nc}")
        self.nc = nc
        self.max_dets = max_dets
        self.iou_thresholds = np.asarray(iou_thresholds, np.float64)
        self._scores: List[List[np.ndarray]] = [[] for _ in range(nc)]
        self._matched: List[List[np.ndarray]] = [[] for _ in range(nc)]
        self._ignored: List[List[np.ndarray]] = [[] for _ in range(nc)]
        self._instances = np.zeros(nc, np.int64)
        self._images_with = np.zeros(nc, np.int64)
        self.images = 0

    def update(
        self,
        pred_boxes: np.ndarray,
        pred_scores: np.ndarray,
        pred_classes: np.ndarray,
        gt_boxes: np.ndarray,
        gt_classes: np.ndarray,
        gt_crowd: Optional[np.ndarray] = None,
    ) -> None:
        """Add one image.

        Args:
            pred_boxes: (N, 4) xyxy pixels.
            pred_scores: (N,) confidences.
            pred_classes: (N,) int class ids.
            gt_boxes: (M, 4) xyxy pixels.
            gt_classes: (M,) int class ids.
            gt_crowd: (M,) bool crowd flags, default all false.

        Raises:
            ValueError: when array lengths disagree or a ground-truth class id is outside ``[0, nc)``.
        """
        pred_xywh = xyxy_to_xywh(pred_boxes)
        gt_xywh = xyxy_to_xywh(gt_boxes)
        pred_scores = np.asarray(pred_scores, np.float64).reshape(-1)
        pred_classes = np.asarray(pred_classes).reshape(-1).astype(np.int64)
        gt_classes = np.asarray(gt_classes).reshape(-1).astype(np.int64)
        crowd = np.zeros(len(gt_classes), bool) if gt_crowd is None else np.asarray(gt_crowd, bool).reshape(-1)
        if not len(pred_xywh) == len(pred_scores) == len(pred_classes):
            raise ValueError(
                f"predictions disagree in length: {len(pred_xywh)} boxes, {len(pred_scores)} scores, "
                f"{len(pred_classes)} classes"
            )
        if not len(gt_xywh) == len(gt_classes) == len(crowd):
            raise ValueError(f"ground truth disagrees in length: {len(gt_xywh)} boxes, {len(gt_classes)} classes")
        if len(gt_classes) and (gt_classes.min() < 0 or gt_classes.max() >= self.nc):
            raise ValueError(f"ground-truth class ids must be in [0, {self.nc}), got {sorted(set(gt_classes))}")
        self.images += 1
        for c in np.union1d(gt_classes, pred_classes[(pred_classes >= 0) & (pred_classes < self.nc)]):
            gi = np.flatnonzero(gt_classes == c)
            gi = gi[np.argsort(crowd[gi], kind="mergesort")]  # regular ground truth first, order kept
            di = np.flatnonzero(pred_classes == c)
            di = di[np.argsort(-pred_scores[di], kind="mergesort")][: self.max_dets]
            n_regular = int((~crowd[gi]).sum())
            self._instances[c] += n_regular
            self._images_with[c] += n_regular > 0
            if not len(di):
                continue
            ious = box_iou_coco(pred_xywh[di], gt_xywh[gi], crowd[gi])
            matched, ignored = match_detections(ious, crowd[gi], self.iou_thresholds)
            area = pred_xywh[di, 2] * pred_xywh[di, 3]
            outside = (area < AREA_ALL[0]) | (area > AREA_ALL[1])
            ignored |= ~matched & outside[None, :]
            self._scores[c].append(pred_scores[di])
            self._matched[c].append(matched)
            self._ignored[c].append(ignored)

    def compute(self, names: Optional[Sequence[str]] = None) -> DetectionMetrics:
        """The metrics over every image added so far.

        Args:
            names: class names (default ``"0"``, ``"1"``, ...).

        Returns:
            The metrics.
        """
        names = tuple(names) if names is not None else tuple(str(i) for i in range(self.nc))
        if len(names) != self.nc:
            raise ValueError(f"got {len(names)} names for {self.nc} classes")
        n_t, n_r = len(self.iou_thresholds), len(RECALL_THRESHOLDS)
        precision = -np.ones((n_t, n_r, self.nc))
        p_curve = np.zeros((self.nc, len(CONF_GRID)))
        r_curve = np.zeros((self.nc, len(CONF_GRID)))
        for c in range(self.nc):
            npig = int(self._instances[c])
            if npig == 0:
                continue
            if self._scores[c]:
                scores = np.concatenate(self._scores[c])
                order = np.argsort(-scores, kind="mergesort")
                scores = scores[order]
                matched = np.concatenate(self._matched[c], axis=1)[:, order]
                ignored = np.concatenate(self._ignored[c], axis=1)[:, order]
            else:
                scores, matched, ignored = np.zeros(0), np.zeros((n_t, 0), bool), np.zeros((n_t, 0), bool)
            tp_sum = np.cumsum(matched & ~ignored, axis=1).astype(float)
            fp_sum = np.cumsum(~matched & ~ignored, axis=1).astype(float)
            for t in range(n_t):
                precision[t, :, c] = _interpolated_precision(tp_sum[t], fp_sum[t], npig)
            p_curve[c], r_curve[c] = _confidence_curves(scores, tp_sum[0], fp_sum[0], ignored[0], npig)
        return self._summarise(names, precision, p_curve, r_curve)

    def _summarise(
        self, names: Tuple[str, ...], precision: np.ndarray, p_curve: np.ndarray, r_curve: np.ndarray
    ) -> DetectionMetrics:
        has_gt = self._instances > 0
        f1 = 2 * p_curve * r_curve / (p_curve + r_curve + 1e-16)
        best = int(_box_smooth(f1[has_gt].mean(axis=0), 0.1).argmax()) if has_gt.any() else 0
        per_class = []
        for c, name in enumerate(names):
            ap = precision[:, :, c]
            per_class.append(
                ClassMetrics(
                    name=name,
                    images=int(self._images_with[c]),
                    instances=int(self._instances[c]),
                    precision=float(p_curve[c, best]) if has_gt[c] else 0.0,
                    recall=float(r_curve[c, best]) if has_gt[c] else 0.0,
                    map50=float(ap[0].mean()) if has_gt[c] else -1.0,
                    map50_95=float(ap.mean()) if has_gt[c] else -1.0,
                )
            )
        valid = precision[:, :, has_gt]
        return DetectionMetrics(
            images=self.images,
            instances=int(self._instances.sum()),
            precision=float(p_curve[has_gt, best].mean()) if has_gt.any() else 0.0,
            recall=float(r_curve[has_gt, best].mean()) if has_gt.any() else 0.0,
            map50=float(valid[0].mean()) if valid.size else -1.0,
            map50_95=float(valid.mean()) if valid.size else -1.0,
            f1_conf=float(CONF_GRID[best]),
            per_class=tuple(per_class),
            pr_precision=precision,
        )


def _interpolated_precision(tp: np.ndarray, fp: np.ndarray, npig: int) -> np.ndarray:
    """pycocotools' 101-point precision of one class at one IoU threshold from cumulative TP and FP counts."""
    q = np.zeros(len(RECALL_THRESHOLDS))
    if not len(tp):
        return q
    rc = tp / npig
    pr = tp / (fp + tp + np.spacing(1))
    pr = np.maximum.accumulate(pr[::-1])[::-1]
    inds = np.searchsorted(rc, RECALL_THRESHOLDS, side="left")
    reached = inds < len(pr)
    q[reached] = pr[inds[reached]]
    return q


def _confidence_curves(
    scores: np.ndarray, tp_sum: np.ndarray, fp_sum: np.ndarray, ignored: np.ndarray, npig: int
) -> Tuple[np.ndarray, np.ndarray]:
    """Precision and recall at IoU 0.50 as functions of the confidence threshold, sampled on :data:`CONF_GRID`."""
    if not (~ignored).any():
        return np.zeros(len(CONF_GRID)), np.zeros(len(CONF_GRID))
    scores, tp, fp = scores[~ignored], tp_sum[~ignored], fp_sum[~ignored]
    recall = tp / npig
    prec = tp / (tp + fp)
    # scores are descending, np.interp needs ascending x: use -score. Above the highest score: R 0, P 1.
    r = np.interp(-CONF_GRID, -scores, recall, left=0)
    p = np.interp(-CONF_GRID, -scores, prec, left=1)
    return p, r


def _box_smooth(y: np.ndarray, fraction: float) -> np.ndarray:
    """Box-filter ``y`` over ``fraction`` of its length (odd window), padding with the end values."""
    n = round(len(y) * fraction * 2) // 2 + 1
    padded = np.concatenate([np.full(n // 2, y[0]), y, np.full(n // 2, y[-1])])
    return np.convolve(padded, np.ones(n) / n, mode="valid")
