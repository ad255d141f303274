"""validate(): a stand-in detector built from the ground truth plus noise, scored here and by pycocotools."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lite_deploy.data.coco import CocoDataset
from lite_deploy.data.shapes import generate_shapes
from lite_deploy.data.yolo import YoloDataset
from lite_deploy.eval.validate import validate


class NoisyOracle:
    """Detector stand-in: looks the frame up in the dataset and returns its jittered ground truth and junk boxes."""

    def __init__(self, dataset: YoloDataset, noise: float, junk_score: float = 0.29, seed: int = 0) -> None:
        self.truth = {}
        for i in range(len(dataset)):
            sample = dataset[i]
            self.truth[hashlib.sha1(sample.image.tobytes()).hexdigest()] = sample.targets
        self.noise = noise
        self.junk_score = junk_score
        self.rng = np.random.default_rng(seed)
        self.names = dataset.names

    def __call__(self, frames):
        if isinstance(frames, list):
            return [self(f) for f in frames]
        gt = self.truth[hashlib.sha1(frames.tobytes()).hexdigest()]
        n = len(gt.boxes)
        size = np.maximum(gt.boxes[:, 2:] - gt.boxes[:, :2], 1).repeat(2, axis=0).reshape(n, 4)
        boxes = gt.boxes + self.noise * size * self.rng.normal(0, 1, (n, 4))
        junk_xy = self.rng.uniform(0, 100, (3, 2))
        junk = np.concatenate([junk_xy, junk_xy + self.rng.uniform(5, 30, (3, 2))], 1)
        scores = np.concatenate([self.rng.uniform(0.3, 1.0, n), self.rng.uniform(0.0, self.junk_score, 3)])
        classes = np.concatenate([gt.class_ids, self.rng.integers(0, len(self.names), 3)])
        return SimpleNamespace(boxes=np.concatenate([boxes, junk]).astype(np.float32),
                               scores=scores.astype(np.float32), class_ids=classes)


@pytest.fixture(scope="module")
def shapes_val(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), train=0, val=12, seed=1, imgsz=128, progress=False)


def test_perfect_detector_scores_one(shapes_val: Path) -> None:
    ds = YoloDataset.from_yaml(shapes_val)
    res = validate(NoisyOracle(ds, noise=0.0), ds, progress=False, verbose=False)
    assert res["map50"] == 1.0 and res["map50_95"] == 1.0 and res["images"] == 12
    assert res["instances"] == sum(map(len, ds.labels)) > 12


def test_results_recomputed_by_pycocotools(shapes_val: Path, tmp_path: Path) -> None:
    pytest.importorskip("pycocotools")
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    ds = YoloDataset.from_yaml(shapes_val)
    res = validate(NoisyOracle(ds, noise=0.08, junk_score=0.6), shapes_val, save_json=tmp_path, plots=tmp_path, progress=False)
    assert 0.2 < res["map50_95"] < res["map50"] < 1.0 and 0 < res["precision"] <= 1 and 0 < res["recall"] <= 1
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(str(tmp_path / "gt.json"))
        ev = COCOeval(gt, gt.loadRes(str(tmp_path / "predictions.json")), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert res["map50_95"] == pytest.approx(ev.stats[0], abs=1e-9)
    assert res["map50"] == pytest.approx(ev.stats[1], abs=1e-9)
    assert json.loads((tmp_path / "results.json").read_text())["map50"] == res["map50"]
    assert (tmp_path / "pr_curve.png").read_bytes()[:4] == b"\x89PNG"
    # the same predictions through batches and through the written COCO file as the dataset
    batched = validate(NoisyOracle(ds, noise=0.08, junk_score=0.6), ds, batch=5, progress=False, verbose=False)
    assert batched["map50_95"] == res["map50_95"]
    coco = validate(NoisyOracle(ds, noise=0.08, junk_score=0.6), CocoDataset(tmp_path / "gt.json"), progress=False, verbose=False)
    assert coco["map50_95"] == res["map50_95"] and coco["per_class"] == res["per_class"]


def test_data_and_eval_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, lite_deploy.data, lite_deploy.data.shapes, lite_deploy.eval.validate, lite_deploy.eval.plots;"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[2])
    assert out.stdout.strip() == "False"
