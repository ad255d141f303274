"""The accuracy gate: mAP50-95 of an artifact against the FP32 model, --max-map-drop enforced, INT8 refusals."""

from __future__ import annotations

import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lite_deploy.data.yolo import YoloDataset
from lite_deploy.errors import ExportError, VerificationError
from lite_deploy.quantize.gate import GateResult, enforce, judge, map50_95

IMGSZ = 96


class Oracle:
    """A detector returning each val image's ground truth, with every ``drop_every``-th object left out."""

    def __init__(self, data: Path, drop_every: int = 0) -> None:
        dataset = YoloDataset.from_yaml(data)
        self.truth = {}
        for i in range(len(dataset)):
            sample = dataset[i]
            self.truth[hashlib.sha1(sample.image.tobytes()).hexdigest()] = sample.targets
        self.drop_every = drop_every
        self.names = dataset.names

    def __call__(self, frame: np.ndarray) -> SimpleNamespace:
        gt = self.truth[hashlib.sha1(frame.tobytes()).hexdigest()]
        keep = np.ones(len(gt.boxes), bool)
        if self.drop_every:
            keep[:: self.drop_every] = False
        return SimpleNamespace(boxes=gt.boxes[keep].astype(np.float32), scores=np.full(keep.sum(), 0.9, np.float32),
                               class_ids=gt.class_ids[keep])


def test_gate_measures_the_drop_and_enforces_the_limit(shapes_yaml: Path) -> None:
    reference = map50_95(Oracle(shapes_yaml), shapes_yaml)
    assert reference == 1.0
    worse = judge(Oracle(shapes_yaml, drop_every=2), reference, shapes_yaml, precision="int8", name="worse.onnx")
    assert 20 < worse.drop < 80 and "worse.onnx (int8)" in worse.line()
    with pytest.raises(VerificationError, match="more than the --max-map-drop 1 allowed"):
        enforce(worse, 1.0)
    enforce(worse, 90.0)
    enforce(worse, None)
    same = judge(Oracle(shapes_yaml), reference, shapes_yaml, precision="fp16", name="same.onnx")
    assert same.drop == 0.0
    assert "kept in float: /m/Conv" in GateResult("a", "int8", 0.5, 0.49, ("/m/Conv",)).line()


def test_int8_without_or_with_too_few_calibration_images_is_refused(tmp_path: Path, gsconv_pt: Path,
                                                                    shapes_yaml: Path) -> None:
    from lite_deploy.export.exporter import export

    out = tmp_path / "out"
    with pytest.raises(ExportError, match="pass --calib with a folder of images or a data.yaml"):
        export(gsconv_pt, "onnx", imgsz=IMGSZ, int8=True, out=out)
    with pytest.raises(ExportError, match="only 20 calibration images.*--calib-size 20"):
        export(gsconv_pt, "onnx", imgsz=IMGSZ, int8=True, calib=shapes_yaml, out=out)
    with pytest.raises(ValueError, match="--int8 or --half"):
        export(gsconv_pt, "onnx", imgsz=IMGSZ, int8=True, half=True, calib=shapes_yaml, calib_size=20, out=out)
    assert not out.exists()


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory, gsconv_pt: Path, shapes_yaml: Path):
    from lite_deploy.export.exporter import export_targets

    out = tmp_path_factory.mktemp("int8")
    return out, export_targets(gsconv_pt, "onnx,openvino,trt", imgsz=IMGSZ, int8=True, calib=shapes_yaml,
                               calib_size=20, out=out, name="gs")


def test_int8_artifacts_are_named_and_judged(int8_export) -> None:
    from lite_deploy.spec import ModelSpec, sidecar_path

    out, results = int8_export
    assert [r.files[0].name for r in results] == ["gs_int8.onnx", "gs_int8.xml", "gs_int8_trt.onnx"]
    for r in results:
        spec = ModelSpec.load(sidecar_path(r.files[0]))
        assert spec.precision == "int8" and "onnxruntime" in spec.tool_versions
        assert r.gate is not None and r.gate.precision == "int8"  # --calib data.yaml is the default --data
        assert abs(r.gate.drop) < 100 and r.note.startswith("accuracy gate: ")
    assert len({r.gate.reference for r in results}) == 1  # one FP32 reference for every target
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging or work left


def test_max_map_drop_fails_the_export_and_keeps_nothing(tmp_path: Path, gsconv_pt: Path, shapes_yaml: Path) -> None:
    from lite_deploy.export.exporter import export

    out = tmp_path / "fp16"
    with pytest.raises(VerificationError, match="max-map-drop -100"):  # no artifact can beat FP32 by 100 points
        export(gsconv_pt, "onnx", imgsz=IMGSZ, half=True, data=shapes_yaml, max_map_drop=-100, out=out)
    assert not out.exists() or not list(out.iterdir())


def test_layer_sensitivity_ranks_every_quantized_convolution(tmp_path: Path, gsconv_fp32: Path,
                                                              calib_images: list) -> None:
    import onnx

    from lite_deploy.quantize.calibration import CalibrationSet
    from lite_deploy.quantize.gate import layer_sensitivity
    from lite_deploy.quantize.qdq_onnx import quantizable_convs
    from lite_deploy.spec import ModelSpec, sidecar_path

    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    ranking = layer_sensitivity(gsconv_fp32, CalibrationSet(calib_images, spec), spec.replace(precision="int8"),
                                tmp_path, images=2)
    names = [name for name, _ in ranking]
    gains = np.array([gain for _, gain in ranking])
    assert sorted(names) == sorted(quantizable_convs(onnx.load(str(gsconv_fp32))))
    assert np.all(np.isfinite(gains)) and np.all(np.diff(gains) <= 0) and gains[0] > 0
