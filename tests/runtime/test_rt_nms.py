"""``nms`` keeps exactly what torchvision keeps; the YOLOv5-style candidate selection around it."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lite_deploy.runtime import nms
from lite_deploy.runtime.pipeline.postprocess import (
    candidates_boxes_scores,
    candidates_yolov5,
    decode_nms_outputs,
    select,
)

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")


def _random_boxes(rng: np.random.Generator, n: int, integer: bool) -> np.ndarray:
    xy = rng.uniform(0, 300, (n, 2))
    wh = rng.uniform(2, 90, (n, 2))
    if integer:  # many exactly equal areas and coordinates
        xy, wh = np.round(xy), np.round(wh)
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


def _near_threshold_pairs(rng: np.random.Generator, n: int, threshold: float) -> np.ndarray:
    """Pairs of boxes whose IoU lies within a float32 step of ``threshold`` (as torchvision's test builds)."""
    base = _random_boxes(rng, n, integer=False)
    w = base[:, 2] - base[:, 0]
    # a box shifted right by s has IoU (w - s) / (w + s) with the original: solve for the threshold
    shift = w * (1 - threshold) / (1 + threshold)
    shift = shift * (1 + rng.choice([-1e-6, 0, 1e-6], n)).astype(np.float32)
    moved = base.copy()
    moved[:, [0, 2]] += shift[:, None]
    return np.concatenate([base, moved]).astype(np.float32)


def _torch(boxes, scores, threshold, classes=None):
    b, s = torch.from_numpy(boxes), torch.from_numpy(scores)
    if classes is None:
        return torchvision.ops.nms(b, s, threshold).numpy()
    return torchvision.ops.batched_nms(b, s, torch.from_numpy(classes), threshold).numpy()


@pytest.mark.parametrize("seed", range(60))
def test_same_indices_as_torchvision(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 800))  # batched_nms uses its coordinate-offset path below 1000 boxes on the CPU
    boxes = _random_boxes(rng, n, integer=seed % 3 == 0)
    scores = rng.random(n).astype(np.float32)
    if seed % 2 == 0:
        scores = (np.round(scores * 8) / 8).astype(np.float32)  # many ties
    classes = rng.integers(0, 1 + seed % 6, n)
    threshold = float(rng.choice([0.3, 0.45, 0.5, 0.65, 0.7]))
    np.testing.assert_array_equal(nms(boxes, scores, threshold), _torch(boxes, scores, threshold))
    np.testing.assert_array_equal(nms(boxes, scores, threshold, classes), _torch(boxes, scores, threshold, classes))


@pytest.mark.parametrize("seed", range(20))
def test_same_indices_at_the_iou_margin(seed):
    rng = np.random.default_rng(100 + seed)
    threshold = float(rng.choice([0.45, 0.5, 0.6, 0.7]))
    boxes = _near_threshold_pairs(rng, 200, threshold)
    scores = rng.random(len(boxes)).astype(np.float32)
    classes = rng.integers(0, 3, len(boxes))
    np.testing.assert_array_equal(nms(boxes, scores, threshold), _torch(boxes, scores, threshold))
    np.testing.assert_array_equal(nms(boxes, scores, threshold, classes), _torch(boxes, scores, threshold, classes))


def test_many_boxes_cross_blocks():
    rng = np.random.default_rng(7)
    boxes = _random_boxes(rng, 3000, integer=False)
    scores = rng.random(3000).astype(np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), _torch(boxes, scores, 0.5))


def test_ties_keep_the_lower_index_first():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.5, 0.5, 0.5], np.float32)
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 2])


@pytest.mark.parametrize(
    "boxes, scores, classes, message",
    [
        (np.zeros((3, 5)), np.zeros(3), None, r"boxes must have shape \(N, 4\), got \(3, 5\)"),
        (np.zeros((3, 4)), np.zeros(2), None, r"scores must have shape \(3,\)"),
        (np.zeros((3, 4)), np.zeros(3), np.zeros(4, int), r"class_ids must have shape \(3,\)"),
    ],
)
def test_bad_arguments(boxes, scores, classes, message):
    with pytest.raises(ValueError, match=message):
        nms(boxes, scores, 0.5, classes)


def test_empty():
    assert nms(np.zeros((0, 4)), np.zeros(0), 0.5).shape == (0,)


def test_zero_area_boxes_as_torchvision_without_warnings():
    """Points and lines (random-weight models emit them): IoU 0/0 is NaN, which suppresses nothing, as in
    torchvision, and numpy warns of nothing."""
    rng = np.random.default_rng(3)
    boxes = _random_boxes(rng, 120, integer=True)
    boxes[::3, 2:] = boxes[::3, :2]  # points
    boxes[1::6, 2] = boxes[1::6, 0]  # zero-width lines
    boxes[60:] = boxes[:60]  # each one twice, points on points included
    scores = (np.round(rng.random(120) * 4) / 4).astype(np.float32)
    classes = rng.integers(0, 3, 120)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        agnostic, aware = nms(boxes, scores, 0.45), nms(boxes, scores, 0.45, classes)
    np.testing.assert_array_equal(agnostic, _torch(boxes, scores, 0.45))
    np.testing.assert_array_equal(aware, _torch(boxes, scores, 0.45, classes))
    assert {0, 60} <= set(agnostic.tolist())  # a point and its copy: both kept


def _yolov5_rows(rng, n, nc):
    pred = np.zeros((n, 5 + nc), np.float32)
    pred[:, :2] = rng.uniform(0, 320, (n, 2))
    pred[:, 2:4] = rng.uniform(8, 120, (n, 2))
    pred[:, 4] = rng.random(n)
    pred[:, 5:] = rng.random((n, nc))
    return pred


def _reference(pred, conf, iou, multi_label, classes, agnostic, max_det):
    """YOLOv5's non_max_suppression for one image, from its documented steps, in torch."""
    x = torch.from_numpy(pred.copy())
    x = x[x[:, 4] > conf]
    x[:, 5:] *= x[:, 4:5]
    box = torch.cat((x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2), 1)
    if multi_label:
        i, j = (x[:, 5:] > conf).nonzero(as_tuple=False).T
        box, score, cls = box[i], x[i, 5 + j], j
    else:
        score, cls = x[:, 5:].max(1)
        keep = score > conf
        box, score, cls = box[keep], score[keep], cls[keep]
    if classes is not None:
        keep = torch.isin(cls, torch.tensor(classes))
        box, score, cls = box[keep], score[keep], cls[keep]
    kept = torchvision.ops.nms(box + cls[:, None].float() * (0 if agnostic else 7680), score, iou)[:max_det]
    return box[kept].numpy(), score[kept].numpy(), cls[kept].numpy()


@pytest.mark.parametrize(
    "conf, multi_label, classes, agnostic, max_det",
    [(0.25, False, None, False, 300), (0.1, True, None, False, 300), (0.25, False, [1, 3], False, 300),
     (0.25, False, None, True, 300), (0.05, False, None, False, 7)],
)
def test_yolov5_selection_matches_reference(conf, multi_label, classes, agnostic, max_det):
    rng = np.random.default_rng(11)
    pred = _yolov5_rows(rng, 2000, 5)
    got = select(candidates_yolov5(pred, conf, multi_label, classes), 0.45, max_det, agnostic=agnostic)
    want = _reference(pred, conf, 0.45, multi_label, classes, agnostic, max_det)
    np.testing.assert_array_equal(got[2], want[2])
    np.testing.assert_array_equal(got[1], want[1])
    np.testing.assert_array_equal(got[0], want[0])


@pytest.mark.parametrize("conf", [0.6, 0.3])  # no row past objectness; rows past it, none past obj x class
def test_yolov5_rows_without_candidates(conf):
    pred = _yolov5_rows(np.random.default_rng(2), 300, 4)
    pred[:, 4], pred[:, 5:] = 0.5, 0.1
    boxes, scores, class_ids = candidates_yolov5(pred, conf)
    assert boxes.shape == (0, 4) and scores.shape == (0,) and class_ids.shape == (0,)
    assert (boxes.dtype, scores.dtype, class_ids.dtype) == (np.float32, np.float32, np.int64)
    assert all(len(x) == 0 for x in select((boxes, scores, class_ids), 0.45))


@pytest.mark.parametrize("seed", range(6))
def test_boxes_scores_candidates_are_the_rows_whose_best_score_passes(seed):
    """The rows OpenCV's compare finds, held to ``max > conf``, are the rows of numpy's row-wise max: the same
    candidates for float16 scores, NaN scores (their rows dropped), multi-label and class filters."""
    rng = np.random.default_rng(seed)
    n, nc = int(rng.integers(1, 3000)), int(rng.integers(1, 90))
    scores = (rng.random((n, nc)) ** rng.uniform(1, 30)).astype(np.float16 if seed % 2 else np.float32)
    scores[rng.integers(0, n, 5), rng.integers(0, nc, 5)] = np.nan
    boxes = rng.random((n, 4)).astype(np.float32)
    for conf in (0.0, 0.1, 0.25, 0.9):
        for multi_label, classes in ((False, None), (True, None), (False, [0, 2])):
            wide = scores.astype(np.float32)
            rows = wide.max(axis=1, initial=0) > conf
            best, kept = wide[rows], boxes[rows]
            if multi_label:
                index, ids = np.nonzero(best > conf)
                kept, best = kept[index], best[index, ids]
            else:
                ids = best.argmax(axis=1)
                best = best[np.arange(len(ids)), ids]
                kept, best, ids = kept[best > conf], best[best > conf], ids[best > conf]
            if classes is not None:
                keep = np.isin(ids, classes)
                kept, best, ids = kept[keep], best[keep], ids[keep]
            want = (kept, best, ids.astype(np.int64))
            got = candidates_boxes_scores(boxes, scores, conf, multi_label, classes)
            for a, b in zip(got, want):
                assert a.dtype == b.dtype and a.shape == b.shape
                np.testing.assert_array_equal(a, b)


def test_boxes_scores_layout_equals_yolov5_layout():
    rng = np.random.default_rng(5)
    pred = _yolov5_rows(rng, 500, 4)
    pred[:, 4] = 1.0  # objectness 1: the two layouts carry the same numbers
    boxes = np.concatenate([pred[:, :2] - pred[:, 2:4] / 2, pred[:, :2] + pred[:, 2:4] / 2], 1)
    a = select(candidates_yolov5(pred, 0.3), 0.5)
    b = select(candidates_boxes_scores(boxes, pred[:, 5:], 0.3), 0.5)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)


def test_in_graph_nms_outputs():
    boxes = np.arange(20, dtype=np.float32).reshape(5, 4)
    scores = np.array([0.9, 0.2, 0.7, 0.8, 0.0], np.float32)
    classes = np.array([0, 1, 2, 1, 0], np.int32)
    got_boxes, got_scores, got_classes = decode_nms_outputs(np.array([4]), boxes, scores, classes, 0.25, classes=[0, 1])
    np.testing.assert_array_equal(got_scores, scores[[0, 3]])
    np.testing.assert_array_equal(got_classes, [0, 1])
    np.testing.assert_array_equal(got_boxes, boxes[[0, 3]])


def test_nan_scores_are_dropped_before_nms():
    boxes = np.array([[0, 0, 10, 10], [100, 100, 110, 110], [50, 50, 60, 60], [51, 50, 61, 60]], np.float32)
    scores = np.array([0.9, np.nan, np.nan, 0.3], np.float32)
    # the lone NaN box is not kept, and the NaN box beside box 3 does not suppress it
    np.testing.assert_array_equal(nms(boxes, scores, 0.5), [0, 3])
    np.testing.assert_array_equal(nms(boxes, scores, 0.5, np.array([0, 0, 1, 1])), [0, 3])
    assert nms(boxes[1:3], scores[1:3], 0.5).shape == (0,)


def test_nan_never_reaches_nms_inside_the_detector(monkeypatch):
    """NaN model outputs (both layouts) are filtered out by the confidence test before NMS is called."""
    from lite_deploy.runtime import Detector, Runtime, TensorInfo
    from lite_deploy.runtime.pipeline import postprocess
    from lite_deploy.spec import ModelSpec

    rng = np.random.default_rng(7)
    pred = _yolov5_rows(rng, 200, 3).astype(np.float32)
    pred[::7, 4] = np.nan  # objectness
    pred[1::7, 5] = np.nan  # one class score
    pred[2::7, 5:] = np.nan  # every class score
    boxes = np.concatenate([pred[:, :2] - pred[:, 2:4] / 2, pred[:, :2] + pred[:, 2:4] / 2], 1)
    scores = pred[:, 5:] * np.where(np.isnan(pred[:, 4:5]), np.nan, 1).astype(np.float32)

    class Constant(Runtime):
        def __init__(self, spec, outputs):
            super().__init__("constant.onnx", spec)
            self._inputs = (TensorInfo("images", (1, 3, 64, 64), np.dtype(np.float32)),)
            self._result = outputs

        def _infer(self, feeds):
            return self._result

    seen = []
    real_nms = postprocess.nms

    def checked_nms(boxes, scores, *args, **kwargs):
        seen.append(int(np.isnan(scores).sum()))
        return real_nms(boxes, scores, *args, **kwargs)

    monkeypatch.setattr(postprocess, "nms", checked_nms)
    image = np.zeros((64, 64, 3), np.uint8)
    for layout, outputs in [("yolov5", {"output0": pred[None]}),
                            ("boxes_scores", {"boxes": boxes[None], "scores": scores[None]})]:
        spec = ModelSpec(task="detect", names=("a", "b", "c"), imgsz=(64, 64), output_layout=layout,
                         output_names=tuple(outputs))
        for multi_label in (False, True):
            detections = Detector(Constant(spec, outputs), conf=0.1, multi_label=multi_label)(image)
            assert len(detections) and not np.isnan(detections.scores).any()
    assert seen == [0, 0, 0, 0]


@pytest.mark.parametrize("count, rows", [(-1, 0), (0, 0), (2, 2), (5, 5), (99, 5)])
def test_in_graph_nms_count_is_clamped(count, rows):
    boxes = np.tile(np.array([[0, 0, 10, 10]], np.float32), (5, 1))
    scores = np.full(5, 0.9, np.float32)
    got_boxes, got_scores, got_classes = decode_nms_outputs(np.array([count]), boxes, scores, np.zeros(5), 0.25)
    assert got_boxes.shape == (rows, 4) and got_scores.shape == (rows,) and got_classes.shape == (rows,)


@settings(max_examples=200, deadline=None)
@given(
    n=st.integers(0, 300), classes=st.integers(1, 5), integer=st.booleans(), ties=st.booleans(),
    threshold=st.floats(0.05, 0.95), seed=st.integers(0, 2**32 - 1),
)
def test_same_indices_as_batched_nms_property(n, classes, integer, ties, threshold, seed):
    rng = np.random.default_rng(seed)
    boxes = _random_boxes(rng, n, integer)
    scores = rng.random(n).astype(np.float32)
    if ties:
        scores = (np.round(scores * 4) / 4).astype(np.float32)
    class_ids = rng.integers(0, classes, n)
    np.testing.assert_array_equal(nms(boxes, scores, threshold, class_ids), _torch(boxes, scores, threshold, class_ids))
    np.testing.assert_array_equal(nms(boxes, scores, threshold), _torch(boxes, scores, threshold))
