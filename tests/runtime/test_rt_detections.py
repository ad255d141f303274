"""Detections: validation, slicing, JSON, drawing; Classifier on a tiny ONNX classifier."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lite_deploy.runtime import Classifier, Detections
from lite_deploy.spec import ModelSpec, sidecar_path


def _detections() -> Detections:
    boxes = np.array([[10, 10, 50, 40], [5, 60, 30, 90], [70, 20, 95, 35]], np.float32)
    return Detections(boxes, np.array([0.9, 0.6, 0.3]), np.array([1, 0, 1]), ("cat", "dog"))


@pytest.mark.parametrize(
    "boxes, scores, class_ids, message",
    [
        (np.zeros(4), np.zeros(1), np.zeros(1), r"boxes must be a 2D array of shape \(N, 4\), but got shape \(4,\)"),
        (np.zeros((2, 4)), np.zeros(3), np.zeros(2), r"scores must have shape \(2,\) to match 2 boxes"),
        (np.zeros((2, 4)), np.zeros(2), np.zeros((2, 1)), r"class_ids must have shape \(2,\)"),
        (np.zeros((1, 4)), np.zeros(1), np.array([0.5]), r"class_ids must be integers"),
    ],
)
def test_validation(boxes, scores, class_ids, message):
    with pytest.raises(ValueError, match=message):
        Detections(boxes, scores, class_ids)


def test_dtypes_len_and_indexing():
    det = _detections()
    assert det.boxes.dtype == np.float32 and det.scores.dtype == np.float32 and det.class_ids.dtype == np.int32
    assert len(det) == 3 and len(Detections.empty()) == 0
    assert len(det[0]) == 1 and det[0].label(0) == "dog"
    np.testing.assert_array_equal(det[1:].scores, det.scores[1:])
    np.testing.assert_array_equal(det[det.class_ids == 1].scores, np.float32([0.9, 0.3]))
    np.testing.assert_array_equal(det[[2, 0]].boxes, det.boxes[[2, 0]])
    with pytest.raises(Exception):
        det.boxes = det.boxes  # frozen


def test_to_json():
    data = json.loads(_detections().to_json())
    assert data[0] == {"box": [10.0, 10.0, 50.0, 40.0], "score": 0.9, "class_id": 1, "name": "dog"}
    assert json.loads(Detections.empty().to_json()) == []


def test_draw_marks_boxes_and_leaves_the_input_alone():
    image = np.zeros((100, 100, 3), np.uint8)
    drawn = _detections().draw(image)
    assert image.max() == 0 and drawn.shape == image.shape
    assert drawn[10, 30].any() and drawn[40, 30].any() and not drawn[80, 80].any()


def test_classifier_topk_softmax(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 6)).eval()
    path = tmp_path / "clf.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), input_names=["images"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    ModelSpec(task="classify", names=tuple("abcdef"), imgsz=(32, 32), output_layout="logits", output_names=("logits",),
              preprocess="center_crop", mean=mean, std=std).save(sidecar_path(path))
    frame = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    with Classifier.load(path, top_k=3) as clf:
        ids, probs = clf(frame)
        blob = clf.preprocess([frame])[0].copy()
    with torch.no_grad():
        want = torch.softmax(model(torch.from_numpy(blob)), 1)[0].numpy()
    np.testing.assert_array_equal(ids, np.argsort(-want)[:3])
    np.testing.assert_allclose(probs, want[ids], atol=1e-5)
    assert probs[0] >= probs[1] >= probs[2]
