"""lite-deploy predict on images with the tiny detector: console lines, drawings, JSON lines, a missing source."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest

from lite_deploy.cli import main


def _records(out: Path) -> Dict[str, List[dict]]:
    """``image -> detections`` from the predictions.jsonl that ``--json`` wrote into ``out``."""
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    return {line["image"]: line["detections"] for line in lines}


def test_predict_folder(tiny_artifacts, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i, shape in enumerate([(96, 128), (60, 40)]):
        cv2.imwrite(str(images / f"{i}.png"), np.random.default_rng(i).integers(0, 256, (*shape, 3), dtype=np.uint8))
    (images / "notes.txt").write_text("not an image")
    out = tmp_path / "drawn"
    code = main(["predict", str(tiny_artifacts["onnx"]), "--source", str(images), "--save", "--json",
                 "--out", str(out), "--conf", "0.3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "0.png:" in printed and "1.png:" in printed and "ms infer" in printed
    report = _records(out)
    assert sorted(report) == [str(images / "0.png"), str(images / "1.png")]
    first = report[str(images / "0.png")]
    assert first and all(d["score"] > 0.3 and d["name"] in ("cat", "dog", "bird") for d in first)
    assert cv2.imread(str(out / "1.png")).shape == (60, 40, 3)
    assert sorted(p.name for p in out.iterdir()) == ["0.png", "1.png", "predictions.jsonl"]  # no temporary left


def test_predict_missing_source(tiny_artifacts, tmp_path, capsys):
    code = main(["predict", str(tiny_artifacts["onnx"]), "--source", str(tmp_path / "nope.jpg")])
    assert code == 2
    assert "nope.jpg does not exist: give a camera index (0), /dev/videoN, a video file" in capsys.readouterr().err


def test_predict_folder_with_unreadable_files(tiny_artifacts, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "c.jpg", "e.png"):
        cv2.imwrite(str(images / name), np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8))
    (images / "b.jpg").write_text("a text file named like an image")
    (images / "d.png").write_bytes((images / "a.png").read_bytes()[:60])  # truncated
    out = tmp_path / "out"
    assert main(["predict", str(tiny_artifacts["onnx"]), "--source", str(images), "--json", "--out", str(out)]) == 0
    captured = capsys.readouterr()
    assert "a.png:" in captured.out and "e.png:" in captured.out
    assert "2 of 5 images could not be read and were skipped: b.jpg, d.png" in captured.err
    assert sorted(_records(out)) == [str(images / n) for n in ("a.png", "c.jpg", "e.png")]


def test_predict_nothing_readable_is_an_error(tiny_artifacts, tmp_path, capsys):
    (tmp_path / "text.jpg").write_text("hello")
    out = tmp_path / "out"
    code = main(["predict", str(tiny_artifacts["onnx"]), "--source", str(tmp_path / "text.jpg"), "--json", "--out",
                 str(out)])
    assert code == 2 and "not one frame of" in capsys.readouterr().err
    assert not (out / "predictions.jsonl").exists()


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 2), (1, 1)])
def test_predict_extreme_aspect_ratios(tiny_artifacts, tmp_path, capsys, shape):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    cv2.imwrite(str(tmp_path / "thin.png"), image)
    out = tmp_path / "out"
    assert main(["predict", str(tiny_artifacts["onnx"]), "--source", str(tmp_path / "thin.png"), "--json",
                 "--out", str(out), "--conf", "0.01"]) == 0
    detections = _records(out)[str(tmp_path / "thin.png")]
    h, w = shape
    assert all(0 <= d["box"][0] <= d["box"][2] <= w and 0 <= d["box"][1] <= d["box"][3] <= h for d in detections)
