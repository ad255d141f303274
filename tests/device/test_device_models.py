"""The committed artifacts through Detector / Classifier on this interpreter and backend, against PyTorch's
outputs recorded by tools/make_device_fixtures.py: raw outputs, then decoded detections (YOLO layout, GSConv,
CenterNet peaks) and classifier top-5; plus letterbox and NMS on hand-made input."""

from __future__ import annotations

from typing import Any, Dict, List

import numpy as np
import pytest
from devicekit import MODELS, backend_available

from lite_deploy import Classifier, Detector, letterbox, nms

DETECTORS = ["yolo.onnx", "yolo.xml", "gsconv.onnx", "gsconv.xml", "centernet.onnx"]
CONF = 0.25  # the Detector default the reference detections were made with
BORDER = 0.01  # detections this close to CONF may appear on one side only


def _load(cls: type, name: str) -> Any:
    path = MODELS / name
    if not backend_available(path):
        pytest.skip(f"the backend of {name} is not installed")
    return cls.load(path)


def _unmatched(one: Dict[str, np.ndarray], other: Dict[str, np.ndarray]) -> List[int]:
    """Detections of ``one`` clearly above CONF without a twin in ``other``: same class, score within 0.01, every
    corner within 0.5 px (not IoU: random weights make some boxes zero-wide)."""
    missing = []
    for i, score in enumerate(one["scores"]):
        if score < CONF + BORDER:
            continue
        twins = [j for j in range(len(other["scores"]))
                 if other["class_ids"][j] == one["class_ids"][i] and abs(other["scores"][j] - score) <= 0.01
                 and np.abs(other["boxes"][j] - one["boxes"][i]).max() <= 0.5]
        if not twins:
            missing.append(i)
    return missing


@pytest.mark.parametrize("name", DETECTORS)
def test_detector_matches_pytorch(name: str, reference: Dict[str, Any], frames: List[np.ndarray]) -> None:
    model = name.split(".")[0]
    arrays = reference["arrays"]
    with _load(Detector, name) as det:
        assert det.spec.output_layout == ("centernet" if model == "centernet" else "boxes_scores")
        for i, frame in enumerate(frames):
            blob, _ = det.preprocess([frame])
            raw = det.runtime.infer(blob)
            for key in reference["models"][model]["outputs"]:
                want = arrays[f"{model}/raw/{i}/{key}"]
                scale = max(1.0, float(np.abs(want).max()))
                np.testing.assert_allclose(raw[key], want, rtol=0, atol=2e-4 * scale, err_msg=f"{name} {key}")
            got = det(frame)
            want_det = {k: arrays[f"{model}/det/{i}/{k}"] for k in ("boxes", "scores", "class_ids")}
            got_det = {"boxes": got.boxes, "scores": got.scores, "class_ids": got.class_ids}
            assert len(got) <= reference["models"][model]["detections"][i] + 3
            assert not _unmatched(want_det, got_det), f"{name} image {i}: PyTorch detections missing"
            assert not _unmatched(got_det, want_det), f"{name} image {i}: detections PyTorch does not make"
    assert sum(reference["models"][model]["detections"]) > 0  # the comparison had something to compare


def test_classifier_matches_pytorch(reference: Dict[str, Any], frames: List[np.ndarray]) -> None:
    arrays = reference["arrays"]
    with _load(Classifier, "classifier_fp16.onnx") as clf:
        for i, frame in enumerate(frames):
            blob, _ = clf.preprocess([frame])
            logits = clf.runtime.infer(blob)["logits"]
            want = arrays[f"classifier/raw/{i}/logits"]
            np.testing.assert_allclose(logits, want, rtol=0, atol=0.02 * max(1.0, float(np.abs(want).max())))
            ids, probs = clf(frame)
            want_ids, want_probs = arrays[f"classifier/top/{i}/ids"], arrays[f"classifier/top/{i}/probs"]
            np.testing.assert_allclose(probs, want_probs, atol=0.01)
            if want_probs[0] - want_probs[1] > 0.02:  # a clear winner is the same class
                assert ids[0] == want_ids[0]


def test_detector_refuses_classifier_artifact() -> None:
    if not backend_available(MODELS / "classifier_fp16.onnx"):
        pytest.skip("onnxruntime is not installed")
    with pytest.raises(ValueError, match="Classifier.load"):
        Detector.load(MODELS / "classifier_fp16.onnx")


def test_letterbox_pads_and_scales() -> None:
    image = np.full((30, 60, 3), 200, np.uint8)  # 2:1 landscape
    padded, ratio, (dw, dh) = letterbox(image, 64)
    assert padded.shape == (64, 64, 3)
    assert ratio == (64 / 60, 64 / 60)
    rows = np.where((padded == 200).all(axis=(1, 2)))[0]
    assert len(rows) == round(30 * 64 / 60) and abs(rows[0] - dh) <= 1  # image centred, grey bands around it
    assert (padded[0] == 114).all() and (padded[-1] == 114).all() and dw == 0


def test_nms_keeps_the_best_of_overlapping_boxes_per_class() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    assert nms(boxes, scores, 0.5).tolist() == [0, 3]
    classes = np.array([0, 0, 1, 0])
    assert sorted(nms(boxes, scores, 0.5, class_ids=classes).tolist()) == [0, 2, 3]
    assert sorted(nms(boxes, scores, 0.9).tolist()) == [0, 1, 3]  # IoU(0, 1) = 0.68 stays under 0.9
