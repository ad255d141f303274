"""lite-deploy benchmark on a tiny zoo checkpoint: real ONNX Runtime and OpenVINO exports, CSV, chart, skipped rows."""

from __future__ import annotations

import csv
import importlib.util
from pathlib import Path

import pytest

from lite_deploy.cli import main
from lite_deploy.data.shapes import CLASSES, generate_shapes
from lite_deploy.eval.benchmark import COLUMNS, BenchmarkRow, benchmark, parse_precisions, unavailable

IMGSZ = 64
# a few strided convolutions and a YOLOv5 Detect on the last three (P3-P5): about 6k parameters
TINY_CFG = {
    "nc": len(CLASSES), "depth_multiple": 1.0, "width_multiple": 0.25,
    "anchors": [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]],
    "backbone": [[-1, 1, "Conv", [16, 3, 2]], [-1, 1, "Conv", [32, 3, 2]], [-1, 1, "Conv", [32, 3, 2]],
                 [-1, 1, "Conv", [64, 3, 2]], [-1, 1, "Conv", [64, 3, 2]]],
    "head": [[[2, 3, 4], 1, "Detect", ["nc", "anchors"]]],
}


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import torch

    from lite_deploy.models import build_model
    from lite_deploy.models.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = build_model(TINY_CFG)
    model.names = dict(enumerate(CLASSES))
    return save_checkpoint(model, tmp_path_factory.mktemp("weights") / "tiny.pt", imgsz=IMGSZ)


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_shapes(tmp_path_factory.mktemp("shapes"), train=0, val=4, seed=3, imgsz=IMGSZ, progress=False)


def _by_key(rows):
    return {(r.target, r.precision): r for r in rows}


def test_benchmark_table_csv_and_chart(tiny_weights: Path, shapes_data: Path, tmp_path: Path) -> None:
    report = benchmark(tiny_weights, targets="onnx,openvino,trt", precisions="fp32,int8", data=shapes_data,
                       imgsz=IMGSZ, out=tmp_path, runs=3, warmup=1, threads=1, progress=False)
    rows = _by_key(report.rows)
    assert list(rows) == [("pytorch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"), ("openvino", "fp32"),
                          ("openvino", "int8"), ("trt", "fp32"), ("trt", "int8")]
    reference = rows[("pytorch", "fp32")]
    assert reference.status == "ok" and 0 <= reference.map50_95 <= 1 and reference.file == str(tiny_weights)
    for target in ("onnx", "openvino"):
        row = rows[(target, "fp32")]
        assert row.status == "ok" and Path(row.file).is_file() and row.size_mb > 0
        assert 0 <= row.map50_95 <= 1 and row.map_change == pytest.approx(row.map50_95 - reference.map50_95)
        assert 0 < row.p50_ms <= row.p99_ms and row.fps > 0
        assert rows[(target, "int8")].status == "skipped: int8 needs calibration images (calib)"
    assert Path(rows[("openvino", "fp32")].file).suffix == ".xml"  # its size counts the .bin too
    assert rows[("openvino", "fp32")].size_mb > Path(rows[("openvino", "fp32")].file).stat().st_size / 1e6
    if importlib.util.find_spec("tensorrt") is None:
        for precision in ("fp32", "int8"):
            row = rows[("trt", precision)]
            assert row.status.startswith("skipped: tensorrt is not installed") and row.p50_ms is None
    with open(report.csv, newline="") as f:
        saved = list(csv.DictReader(f))
    assert tuple(saved[0]) == COLUMNS and len(saved) == len(report.rows)
    assert [(r["target"], r["precision"], r["status"]) for r in saved] == [(r.target, r.precision, r.status)
                                                                            for r in report.rows]
    assert float(saved[1]["p50_ms"]) == pytest.approx(rows[("onnx", "fp32")].p50_ms)
    assert report.chart.read_bytes()[:4] == b"\x89PNG"
    text = report.table()
    assert "mAP50-95" in text and "openvino" in text and "skipped" in text
    assert report.fastest("fp32").target in ("onnx", "openvino")


def test_failed_rows_do_not_stop_the_others(tiny_weights: Path, tmp_path: Path) -> None:
    # 60 is not a multiple of the stride: every export fails; the reference still runs, the table is complete
    report = benchmark(tiny_weights, targets="onnx,openvino", precisions="fp32,fp16", imgsz=64 - 4, out=tmp_path,
                       runs=2, warmup=0, progress=False)
    assert len(report.rows) == 5 and report.rows[0].status == "ok" and report.rows[0].p50_ms > 0
    for row in report.rows[1:]:
        assert row.status.startswith("export failed: image size 60 is not a multiple of the model stride 32")
        assert row.file == "" and row.p50_ms is None
    assert report.rows[0].map50_95 is None  # no dataset: no mAP, and the chart shows latency bars
    assert report.chart.read_bytes()[:4] == b"\x89PNG" and report.fastest("fp32") is None


def test_int8_without_the_export_arguments(tiny_weights: Path, tmp_path: Path, monkeypatch) -> None:
    import lite_deploy.export.exporter as exporter

    def export_without_int8(weights, target="onnx", *, imgsz=640, half=False, out=None):
        raise AssertionError("not called for int8")

    monkeypatch.setattr(exporter, "export", export_without_int8)
    report = benchmark(tiny_weights, targets="onnx", precisions="int8", calib=tmp_path, imgsz=IMGSZ, out=tmp_path,
                       runs=1, warmup=0, progress=False)
    assert [r.status for r in report.rows] == ["ok", "int8 export not available"]


def test_cli(tiny_weights: Path, tmp_path: Path, capsys) -> None:
    assert main(["benchmark", str(tiny_weights), "--targets", "onnx", "--precisions", "fp32", "--imgsz", str(IMGSZ),
                 "--runs", "2", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "onnx" in out and f"table written to {tmp_path / 'benchmark.csv'}" in out
    assert (tmp_path / "artifacts" / "tiny.onnx").is_file(), out
    assert main(["benchmark", str(tiny_weights), "--precisions", "fp8"]) == 2
    assert "unknown precision" in capsys.readouterr().err
    assert main(["benchmark", str(tmp_path / "missing.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_precisions_and_availability() -> None:
    assert parse_precisions("int8, fp32") == ["fp32", "int8"]
    with pytest.raises(ValueError, match="choose from fp32, fp16, int8"):
        parse_precisions("fp32,bf8")
    assert unavailable("onnx") == "" and unavailable("openvino") == ""
    assert BenchmarkRow("onnx", "fp32").status == "ok"
