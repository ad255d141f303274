"""The accuracy gate: mAP50 and mAP50-95 of an artifact against the FP32 model, both limits enforced, INT8
refusals."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from lite_deploy.data.yolo import YoloDataset
from lite_deploy.errors import ExportError, VerificationError
from lite_deploy.quantize.gate import GateResult, Limits, Scores, enforce, judge, map_scores

IMGSZ = 96


class Oracle:
    """A detector returning each val image's ground truth, with every ``drop_every``-th object left out and every
    box grown by ``grow`` of its size on each side (IoU with the truth ``1 / (1 + 2 * grow) ** 2``)."""

    def __init__(self, data: Path, drop_every: int = 0, grow: float = 0.0) -> None:
        dataset = YoloDataset.from_yaml(data)
        self.truth = {}
        for i in range(len(dataset)):
            sample = dataset[i]
            self.truth[hashlib.sha1(sample.image.tobytes()).hexdigest()] = sample.targets
        self.drop_every, self.grow = drop_every, grow
        self.names = dataset.names

    def __call__(self, frame: np.ndarray) -> SimpleNamespace:
        gt = self.truth[hashlib.sha1(frame.tobytes()).hexdigest()]
        keep = np.ones(len(gt.boxes), bool)
        if self.drop_every:
            keep[:: self.drop_every] = False
        boxes = gt.boxes[keep].astype(np.float32)
        size = np.tile(boxes[:, 2:] - boxes[:, :2], 2) * np.array([-1, -1, 1, 1], np.float32)
        return SimpleNamespace(boxes=boxes + self.grow * size, scores=np.full(keep.sum(), 0.9, np.float32),
                               class_ids=gt.class_ids[keep])


def test_gate_measures_the_drop_and_enforces_the_limit(shapes_yaml: Path) -> None:
    reference = map_scores(Oracle(shapes_yaml), shapes_yaml)
    assert reference == (1.0, 1.0)
    worse = judge(Oracle(shapes_yaml, drop_every=2), reference, shapes_yaml, precision="int8", name="worse.onnx",
                  limits=Limits(map50_95=1.0))
    assert 20 < worse.drop < 80 and 20 < worse.drop50 < 80 and "worse.onnx (int8)" in worse.line()
    with pytest.raises(VerificationError, match="mAP50-95 drop .* more than the --max-map-drop 1 allowed"):
        enforce(worse)
    enforce(dataclasses.replace(worse, limits=Limits(90.0, 90.0)))
    enforce(dataclasses.replace(worse, limits=Limits()))  # no limit
    same = judge(Oracle(shapes_yaml), reference, shapes_yaml, precision="fp16", name="same.onnx")
    assert same.drop == 0.0 and same.drop50 == 0.0
    assert "kept in float: /m/Conv" in GateResult("a", "int8", Scores(0.7, 0.5), Scores(0.7, 0.49), Limits(),
                                                  ("/m/Conv",)).line()


def test_gate_judges_map50_and_map50_95_each_with_its_limit(shapes_yaml: Path) -> None:
    """Boxes 1.2 times too big (IoU 0.69): mAP50 keeps, mAP50-95 drops; left-out objects: mAP50 drops too."""
    reference = map_scores(Oracle(shapes_yaml), shapes_yaml)
    loose = judge(Oracle(shapes_yaml, grow=0.1), reference, shapes_yaml, precision="int8", name="loose.onnx",
                  limits=Limits(map50_95=None, map50=1.0))
    assert loose.drop50 == 0.0 and loose.drop > 20
    enforce(loose)  # within the mAP50 limit, and mAP50-95 has none
    assert "mAP50-95" in loose.line() and "(limit none)" in loose.line() and "(limit 1)" in loose.line()
    missed = judge(Oracle(shapes_yaml, drop_every=4), reference, shapes_yaml, precision="int8", name="missed.onnx",
                   limits=Limits(map50_95=100.0, map50=1.0))
    assert missed.drop50 > 1.0
    with pytest.raises(VerificationError, match=r"mAP50 drop \d+\.\d+ points is more than the --max-map50-drop 1"):
        enforce(missed)


def test_int8_without_or_with_too_few_calibration_images_is_refused(tmp_path: Path, gsconv_pt: Path,
                                                                    shapes_yaml: Path) -> None:
    from lite_deploy.export.exporter import export

    out = tmp_path / "out"
    with pytest.raises(ExportError, match="pass --calib with a folder of images or a data.yaml"):
        export(gsconv_pt, "onnx", imgsz=IMGSZ, precision="int8", out=out)
    with pytest.raises(ExportError, match="only 20 calibration images.*--calib-size 20"):
        export(gsconv_pt, "onnx", imgsz=IMGSZ, precision="int8", calib=shapes_yaml, out=out)
    assert not out.exists()


@pytest.fixture(scope="module")
def int8_export(tmp_path_factory: pytest.TempPathFactory, gsconv_pt: Path, shapes_yaml: Path):
    from lite_deploy.export.exporter import export_targets

    out = tmp_path_factory.mktemp("int8")
    return out, export_targets(gsconv_pt, "onnx,openvino,trt", imgsz=IMGSZ, precision="int8", calib=shapes_yaml,
                               calib_size=20, out=out, name="gs")


def test_int8_artifacts_are_named_and_judged(int8_export, shapes_yaml: Path) -> None:
    from lite_deploy.spec import ModelSpec, sidecar_path

    out, results = int8_export
    assert [r.files[0].name for r in results] == ["gs_int8.onnx", "gs_int8.xml", "gs_int8_trt.onnx"]
    for r in results:
        spec = ModelSpec.load(sidecar_path(r.files[0]))
        assert spec.precision == "int8" and "onnxruntime" in spec.tool_versions
        assert r.gate is not None and r.gate.precision == "int8"  # --calib data.yaml is the default --data
        assert r.note.startswith("accuracy gate: ")
        # the gate scored the committed artifact itself, and within the INT8 goal or with layers kept in float
        assert map_scores(r.files[0], shapes_yaml) == pytest.approx(r.gate.value, abs=1e-9)
        assert not r.gate.exceeded(Limits(1.0, 1.0)) or r.gate.float_layers
    assert len({r.gate.reference for r in results}) == 1  # one FP32 reference for every target
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]  # no staging or work left


def _perturbed_fp16(kind: str) -> type:
    """:class:`HalfPrecision` whose boxes grow by 10% of their size on each side (``grow``: IoU with the truth
    0.69, mAP50 kept, mAP50-95 lost) or whose candidates centred in the left half score 0 (``left``: objects there
    are missed, mAP50 lost): an FP16 export whose accuracy drop is known to be large."""
    import torch

    from lite_deploy.export.onnx import HalfPrecision

    class Perturbed(HalfPrecision):
        def forward(self, images: torch.Tensor):
            boxes, scores = super().forward(images)
            if kind == "grow":
                size = (boxes[..., 2:] - boxes[..., :2]).repeat(1, 1, 2) * torch.tensor([-1.0, -1.0, 1.0, 1.0])
                return boxes + 0.1 * size, scores
            right = (boxes[..., 0] + boxes[..., 2]) / 2 >= images.shape[-1] / 2
            return boxes, scores * right.unsqueeze(-1).to(scores.dtype)

    return Perturbed


@pytest.mark.parametrize("kind, limit", [("grow", "max_map_drop"), ("left", "max_map50_drop")])
def test_the_gate_fails_an_export_that_loses_accuracy_and_keeps_nothing(tmp_path: Path, shapes_yaml: Path,
                                                                         monkeypatch, kind: str, limit: str) -> None:
    """The demo detector's FP16 export, deliberately perturbed, loses more than 5 points: refused, nothing written.
    The same export unperturbed passes the same limits (FP16 keeps the demo's mAP within 1 point)."""
    from lite_deploy.assets import demo_weights
    from lite_deploy.export import onnx as onnx_export
    from lite_deploy.export.exporter import export_targets

    limits = {"max_map_drop": 5.0, "max_map50_drop": 5.0}
    clean = export_targets(demo_weights(), "onnx", imgsz=IMGSZ, precision="fp16", data=shapes_yaml, out=tmp_path / "ok",
                           name="m", **limits)[0]
    assert clean.ok and clean.gate.reference.map50 > 0.3, clean.gate.line()  # a detector worth judging
    assert abs(clean.gate.drop) < 1 and abs(clean.gate.drop50) < 1, clean.gate.line()
    monkeypatch.setattr(onnx_export, "HalfPrecision", _perturbed_fp16(kind))
    out = tmp_path / "bad"
    result = export_targets(demo_weights(), "onnx", imgsz=IMGSZ, precision="fp16", data=shapes_yaml, out=out,
                            name="m", verify=False, **limits)[0]
    option = "--" + limit.replace("_", "-")
    assert isinstance(result.error, VerificationError) and f"more than the {option} 5 allowed" in str(result.error)
    assert not out.exists() or not list(out.iterdir())


def test_layer_sensitivity_ranks_every_quantized_convolution(tmp_path: Path, gsconv_fp32: Path,
                                                              calib_images: list) -> None:
    import onnx

    from lite_deploy.quantize.gate import layer_sensitivity
    from lite_deploy.quantize.qdq_onnx import quantizable_convs
    from lite_deploy.runtime.calibration import CalibrationSet
    from lite_deploy.spec import ModelSpec, sidecar_path

    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    ranking = layer_sensitivity(gsconv_fp32, CalibrationSet(calib_images, spec), spec.replace(precision="int8"),
                                tmp_path, images=2)
    names = [name for name, _ in ranking]
    gains = np.array([gain for _, gain in ranking])
    assert sorted(names) == sorted(quantizable_convs(onnx.load(str(gsconv_fp32))))
    assert np.all(np.isfinite(gains)) and np.all(np.diff(gains) <= 0) and gains[0] > 0
