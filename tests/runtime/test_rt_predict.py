"""``lite-deploy predict`` on the tiny detector: console summary, drawings, JSON, and a missing source."""

from __future__ import annotations

import json

import cv2
import numpy as np

from lite_deploy.cli import main


def test_predict_folder(tiny_artifacts, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    for i, shape in enumerate([(96, 128), (60, 40)]):
        cv2.imwrite(str(images / f"{i}.png"), np.random.default_rng(i).integers(0, 256, (*shape, 3), dtype=np.uint8))
    (images / "notes.txt").write_text("not an image")
    out_json = tmp_path / "dets.json"
    code = main(["predict", str(tiny_artifacts["onnx"]), "--source", str(images), "--save", str(tmp_path / "drawn"),
                 "--json", str(out_json), "--conf", "0.3"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "0.png:" in printed and "1.png:" in printed and "ms infer" in printed
    report = json.loads(out_json.read_text())
    assert sorted(report) == [str(images / "0.png"), str(images / "1.png")]
    first = report[str(images / "0.png")]
    assert first and all(d["score"] > 0.3 and d["name"] in ("cat", "dog", "bird") for d in first)
    assert cv2.imread(str(tmp_path / "drawn" / "1.png")).shape == (60, 40, 3)


def test_predict_missing_source(tiny_artifacts, tmp_path, capsys):
    code = main(["predict", str(tiny_artifacts["onnx"]), "--source", str(tmp_path / "nope.jpg")])
    assert code == 2
    assert "nope.jpg does not exist: give an image file or a folder of images" in capsys.readouterr().err
