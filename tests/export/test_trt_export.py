"""``export --target trt``: the TensorRT-ready ONNX for FP32, FP16 and INT8, with and without EfficientNMS (TensorRT
itself is not installed here: the build command is printed instead)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from lite_deploy.export.exporter import export_targets
from lite_deploy.runtime.backends.tensorrt.verify import reference_model
from lite_deploy.runtime.check import check_model
from lite_deploy.spec import ModelSpec, sidecar_path

NMS_OUTPUTS = ["num_dets", "det_boxes", "det_scores", "det_classes"]


def nms_node(proto: onnx.ModelProto) -> onnx.NodeProto:
    return next(n for n in proto.graph.node if n.op_type == "EfficientNMS_TRT")


def test_trt_target_writes_ready_onnx_and_command(tmp_path, tiny_detector):
    results = export_targets(tiny_detector(), "trt", imgsz=64, dynamic=True, out=tmp_path, name="tiny")
    path = results[0].files[0]
    assert path.name == "tiny_trt.onnx" and sidecar_path(path).is_file()
    command = "lite-deploy build-engine tiny_trt.onnx --workspace 4 --min-batch 1 --opt-batch 4 --max-batch 4"
    assert command in results[0].note
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [17]
    assert json.loads(sidecar_path(path).read_text())["batch"] is None


def test_trt_nms_uses_efficient_nms_plugin(tmp_path, tiny_detector):
    results = export_targets(tiny_detector(), "trt", imgsz=64, nms=True, max_det=50, conf=0.3, iou=0.5,
                             out=tmp_path, name="tiny")
    proto = onnx.load(str(results[0].files[0]))
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in nms_node(proto).attribute}
    assert attrs == {"background_class": -1, "box_coding": 0, "iou_threshold": pytest.approx(0.5),
                     "max_output_boxes": 50, "plugin_version": b"1", "score_activation": 0,
                     "score_threshold": pytest.approx(0.3)}
    assert [o.name for o in proto.graph.output] == NMS_OUTPUTS
    assert ModelSpec.load(sidecar_path(results[0].files[0])).output_layout == "nms"


def test_fp16_with_nms_feeds_the_plugin_float(tmp_path, yolov5n_pt):
    """Used to crash in torchvision's NMS (no Half kernel); the plugin now gets float boxes and scores."""
    results = export_targets(yolov5n_pt, "trt", imgsz=64, precision="fp16", nms=True, out=tmp_path, name="m")
    proto = onnx.load(str(results[0].files[0]))
    types = {v.name: v.type.tensor_type.elem_type for v in onnx.shape_inference.infer_shapes(proto).graph.value_info}
    assert all(types[name] == onnx.TensorProto.FLOAT for name in nms_node(proto).input)
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in proto.graph.initializer)  # the detector is FP16
    assert check_model(results[0].files[0], "trt8.5").ok


@pytest.fixture
def calib_folder(tmp_path):
    import cv2

    folder = tmp_path / "calib"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (48, 64, 3), dtype=np.uint8))
    return folder


def test_int8_with_nms_is_a_tensorrt_valid_qdq_model(tmp_path, tiny_detector, calib_folder):
    """--int8 --nms was refused, and the Q/DQ ONNX carried INT32 bias DequantizeLinear nodes TensorRT 8.5 rejects."""
    results = export_targets(tiny_detector(), "trt", imgsz=64, precision="int8", nms=True, calib=calib_folder,
                             calib_size=8, out=tmp_path, name="tiny")
    path = results[0].files[0]
    proto = onnx.load(str(path))
    assert [o.name for o in proto.graph.output] == NMS_OUTPUTS and nms_node(proto)
    consts = {i.name: i for i in proto.graph.initializer}
    dq = [n for n in proto.graph.node if n.op_type == "DequantizeLinear"]
    assert dq and all(consts[n.input[0]].data_type == onnx.TensorProto.INT8 for n in dq if n.input[0] in consts)
    for target in ("trt8.5", "trt8.6", "trt10"):
        assert check_model(path, target).ok, check_model(path, target).table()
    import onnxruntime as ort  # the detector before the plugin still runs on ONNX Runtime

    session = ort.InferenceSession(reference_model(path), providers=["CPUExecutionProvider"])
    boxes, scores = session.run(None, {"images": np.zeros((1, 3, 64, 64), np.float32)})
    assert boxes.shape[-1] == 4 and scores.shape[:2] == boxes.shape[:2]


def test_build_engine_verification_table_against_onnx_runtime(tmp_path, tiny_detector):
    """The engine check build-engine runs (an in-graph ONNX NMS model stands in for the engine, which cannot run
    here): the EfficientNMS ONNX is cut before the plugin and its boxes/scores go through the host NMS."""
    from lite_deploy.runtime.backends.tensorrt.verify import verify_engine

    model = tiny_detector().eval()
    kw = dict(imgsz=64, nms=True, max_det=20, conf=0.2, iou=0.5, out=tmp_path, name="tiny")
    onnx_nms = export_targets(model, "onnx", **kw)[0].files[0]
    trt_onnx = export_targets(model, "trt", **kw)[0].files[0]
    report = verify_engine(onnx_nms, trt_onnx, ModelSpec.load(sidecar_path(onnx_nms)))
    table = report.table()
    assert report.ok and "against ONNX Runtime (tiny_nms_trt.onnx)" in table and "matched" in table
    assert sum(m.matched for m in report.detections) > 0


def test_build_engine_keeps_nothing_that_disagrees_with_its_onnx(tmp_path, tiny_detector, monkeypatch):
    """A stand-in TensorRT 10.3 'engine' that outputs zeros fails the check: no engine is written."""
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "trt"))
    from fake_trt import FakeCuda, fake_tensorrt  # tests/trt

    from lite_deploy.errors import VerificationError
    from lite_deploy.runtime.backends.tensorrt import api, build, cuda, engine

    path = export_targets(tiny_detector().eval(), "trt", imgsz=64, out=tmp_path, name="tiny")[0].files[0]
    io = [("images", "INPUT", (1, 3, 64, 64), "FLOAT"), ("boxes", "OUTPUT", (1, 64, 4), "FLOAT"),
          ("scores", "OUTPUT", (1, 64, 3), "FLOAT")]
    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt("10.3", io=io, input_shape=(1, 3, 64, 64)))
    monkeypatch.setattr(api, "_OPENED", None)
    monkeypatch.setattr(cuda, "open_cuda", FakeCuda)
    monkeypatch.setattr(engine, "open_cuda", FakeCuda)
    with pytest.raises(VerificationError, match="disagrees with ONNX Runtime"):
        build.build_engine(path)
    engine_path = tmp_path / "tiny_trt.engine"
    assert not engine_path.exists() and not sidecar_path(engine_path).exists() and not list(tmp_path.glob(".*"))
