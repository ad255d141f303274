"""``lite-deploy info`` and the model summary it prints."""

from __future__ import annotations

import pytest
import torch

from lite_deploy.cli import main
from lite_deploy.models import build_model
from lite_deploy.models.summary import summarize

torch.set_num_threads(1)


def test_gflops_match_the_published_figures():
    # YOLOv5 reports 4.5 GFLOPs for yolov5n at 640 (2 x conv MACs); the slim-neck n model 4.1
    assert summarize(build_model("yolov5n"), 640).gflops == pytest.approx(4.47, abs=0.005)
    assert summarize(build_model("slimneck-yolov5n"), 640).gflops == pytest.approx(4.14, abs=0.005)


def test_summary_table_of_a_checkpoint(yolov5_fixtures, capsys):
    assert main(["info", str(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt"), "--imgsz", "320", "256"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 1,661,489" in out and "strides: 8, 16, 32" in out
    assert "GFLOPs at 320x256:" in out and "classes (4): 0: class0" in out
    assert " 24   [17, 20, 23]   1" in out and "GSConv" in out and "32x80x64" in out


def test_info_reports_a_bad_config(capsys):
    assert main(["info", "no-such-model"]) == 2
    assert "unknown model config 'no-such-model'" in capsys.readouterr().err
