"""COCO mAP of lite_deploy.eval.metrics against pycocotools on the same randomised predictions."""

from __future__ import annotations

import contextlib
import io
from types import SimpleNamespace
from typing import List, Tuple

import numpy as np
import pytest

from lite_deploy.data.coco import to_coco_predictions
from lite_deploy.eval.metrics import DetectionEvaluator, box_iou_coco, match_detections

pycocotools = pytest.importorskip("pycocotools")
from pycocotools.coco import COCO  # noqa: E402
from pycocotools.cocoeval import COCOeval  # noqa: E402

NC = 7  # class 5 gets no predictions, class 6 no ground truth


def random_scene(rng: np.random.Generator, n_images: int, crowd: bool) -> Tuple[list, list]:
    """Ground truth and noisy predictions with empty images, duplicates, score ties and >100 detections."""
    gts, preds = [], []
    for i in range(n_images):
        n_gt = 0 if i % 7 == 3 else int(rng.integers(1, 12))
        xy = rng.uniform(0, 200, (n_gt, 2))
        wh = rng.uniform(4, 90, (n_gt, 2))
        gt_boxes = np.concatenate([xy, xy + wh], 1).astype(np.float32)
        gt_cls = rng.integers(0, NC - 1, n_gt)
        gt_crowd = (rng.random(n_gt) < 0.08) if crowd else np.zeros(n_gt, bool)
        # predictions: jittered copies of the ground truth (some twice), plus random boxes
        keep = rng.random(n_gt) < 0.85
        jitter = rng.normal(0, 1, (n_gt, 4)) * np.concatenate([wh, wh], 1) * rng.uniform(0.02, 0.25, (n_gt, 1))
        hits = (gt_boxes + jitter)[keep]
        hit_cls = np.where(rng.random(n_gt) < 0.1, rng.integers(0, NC, n_gt), gt_cls)[keep]
        dup = rng.random(len(hits)) < 0.3
        n_rand = int(rng.integers(0, 25)) if i % 11 else 130  # >100 detections of one class on some images
        rxy = rng.uniform(0, 220, (n_rand, 2))
        rand = np.concatenate([rxy, rxy + rng.uniform(3, 80, (n_rand, 2))], 1)
        rand_cls = np.full(n_rand, 2) if n_rand == 130 else rng.integers(0, NC, n_rand)
        boxes = np.concatenate([hits, hits[dup] + rng.normal(0, 2, (int(dup.sum()), 4)), rand]).astype(np.float32)
        classes = np.concatenate([hit_cls, hit_cls[dup], rand_cls])
        scores = rng.choice(np.linspace(0.05, 0.7, 14), len(boxes)).astype(np.float32)  # many exact ties
        scores[: len(hits)] = rng.choice(np.linspace(0.4, 1.0, 13), len(hits))
        boxes[: len(hits) // 4] = gt_boxes[keep][: len(hits) // 4]  # some exact copies (IoU == 1)
        classes[classes == 5] = 4
        gts.append((gt_boxes, gt_cls, gt_crowd))
        preds.append(SimpleNamespace(boxes=boxes, scores=scores, class_ids=classes))
    return gts, preds


def pycocotools_stats(gts: list, preds: list) -> np.ndarray:
    images = [{"id": i + 1, "width": 320, "height": 320} for i in range(len(gts))]
    anns: List[dict] = []
    for i, (boxes, classes, crowd) in enumerate(gts):
        for b, c, cr in zip(boxes.astype(np.float64), classes, crowd):
            w, h = b[2] - b[0], b[3] - b[1]
            anns.append(
                {"id": len(anns) + 1, "image_id": i + 1, "category_id": int(c) + 1, "bbox": [b[0], b[1], w, h],
                 "area": w * h, "iscrowd": int(cr)}
            )
    gt = COCO()
    gt.dataset = {"images": images, "annotations": anns, "categories": [{"id": c + 1} for c in range(NC)]}
    with contextlib.redirect_stdout(io.StringIO()):
        gt.createIndex()
        dt = gt.loadRes(to_coco_predictions(preds, [i + 1 for i in range(len(gts))], range(1, NC + 1)))
        ev = COCOeval(gt, dt, "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev


def ours(gts: list, preds: list):
    ev = DetectionEvaluator(NC)
    for (gb, gc, gcr), p in zip(gts, preds):
        ev.update(p.boxes, p.scores, p.class_ids, gb, gc, gcr)
    return ev.compute()


@pytest.mark.parametrize("seed,crowd", [(0, False), (1, False), (2, True)])
def test_map_matches_pycocotools(seed: int, crowd: bool) -> None:
    gts, preds = random_scene(np.random.default_rng(seed), 80, crowd)
    ref = pycocotools_stats(gts, preds)
    got = ours(gts, preds)
    assert got.map50_95 == pytest.approx(ref.stats[0], abs=1e-9)
    assert got.map50 == pytest.approx(ref.stats[1], abs=1e-9)
    np.testing.assert_allclose(got.pr_precision, ref.eval["precision"][:, :, :, 0, 2], atol=1e-12)
    assert got.per_class[6].map50_95 == -1 and got.per_class[5].map50 == 0.0
    assert 0.1 < got.map50_95 < got.map50 < 0.9  # a meaningful, non-degenerate case


def test_precision_recall_at_f1_max() -> None:
    """Perfect predictions plus low-score junk: P and R are 1 at the chosen confidence, which lies above the junk."""
    gts, preds = [], []
    rng = np.random.default_rng(3)
    for _ in range(20):
        xy = rng.uniform(0, 200, (4, 2))
        boxes = np.concatenate([xy, xy + 40], 1).astype(np.float32)
        cls = np.array([0, 1, 2, 0])
        junk = np.concatenate([xy + 100, xy + 130], 1).astype(np.float32)
        gts.append((boxes, cls, np.zeros(4, bool)))
        preds.append(SimpleNamespace(boxes=np.concatenate([boxes, junk]), class_ids=np.concatenate([cls, cls]),
                                     scores=np.array([0.9] * 4 + [0.2] * 4, np.float32)))
    got = ours(gts, preds)
    # P is interpolated between the last true and the first junk detection, as YOLOv5 does
    assert got.precision == pytest.approx(1.0, abs=0.01) and got.recall == pytest.approx(1.0)
    assert 0.2 < got.f1_conf <= 0.9
    assert got.map50 == pytest.approx(1.0) and got.per_class[0].instances == 40 and got.per_class[0].images == 20
    assert "all" in got.table() and got.to_dict()["per_class"]["1"]["instances"] == 20


def test_iou_and_matching_edge_cases() -> None:
    dt = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [50, 50, 5, 5]], float)
    gt = np.array([[2, 0, 10, 10], [0, 0, 10, 10], [20, 20, 40, 40]], float)
    iou = box_iou_coco(dt, gt, np.array([False, False, True]))
    np.testing.assert_allclose(iou[0], [80 / 120, 1.0, 0.0])
    assert iou[2, 2] == 1.0  # inside a crowd region: intersection over the detection's own area
    matched, ignored = match_detections(iou, np.array([False, False, True]))
    assert matched[:, 0].all()  # the first copy takes the exact match
    assert matched[:4, 1].all() and not matched[4:, 1].any()  # the second one gets gt 0 (IoU 0.667) below 0.70
    assert ignored[:, 2].all() and not ignored[:, :2].any()


def test_bad_input_is_rejected() -> None:
    ev = DetectionEvaluator(2)
    with pytest.raises(ValueError, match="ground-truth class ids must be in"):
        ev.update(np.zeros((0, 4)), [], [], np.zeros((1, 4)), [2])
    with pytest.raises(ValueError, match="predictions disagree in length"):
        ev.update(np.zeros((2, 4)), [0.5], [0, 1], np.zeros((0, 4)), [])
