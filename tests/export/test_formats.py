"""Real exports of the real YOLOv5 and slim-neck GSConv checkpoints, run by ONNX Runtime, OpenVINO and TFLite."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import shutil

import numpy as np
import onnx
import pytest

from lite_deploy.runtime import Detector, load_runtime, load_spec
from lite_deploy.runtime.backends.tflite.runtime import read_metadata
from lite_deploy.runtime.check import check_model
from lite_deploy.runtime.compare import sample_images
from lite_deploy.spec import SPEC_KEY, ModelSpec, sidecar_path

IMGSZ = 128  # as in conftest.py


def _same_detections(a, b, iou_min: float = 0.99) -> None:
    """Same count, and every box paired with one of the same class at IoU >= iou_min."""
    from lite_deploy.runtime.compare import pair_detections

    assert len(a.boxes) == len(b.boxes) > 0
    m = pair_detections((a.boxes, a.scores, a.class_ids), (b.boxes, b.scores, b.class_ids), iou=iou_min,
                        conf=0.0, margin=0.0)
    assert m.matched == len(a.boxes) and m.min_iou >= iou_min, m


def test_onnx_opset_metadata_and_sidecar(exported):
    path = exported["yolov5n"]["onnx"]
    proto = onnx.load(str(path))
    assert [(o.domain, o.version) for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [("", 17)]
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == ["boxes", "scores"]
    meta = {p.key: p.value for p in proto.metadata_props}
    assert meta["stride"] == "32" and len(ast.literal_eval(meta["names"])) == 80
    embedded = ModelSpec.from_json(meta[SPEC_KEY])
    assert embedded == ModelSpec.load(sidecar_path(path))
    assert embedded.imgsz == (IMGSZ, IMGSZ) and embedded.batch == 1 and embedded.precision == "fp32"
    assert embedded.strides == (8, 16, 32) and len(embedded.anchors) == 3
    assert embedded.source == "yolov5n-v7-nc80.pt" and len(embedded.source_sha256) == 64
    assert embedded.tool_versions["torch"] == importlib.metadata.version("torch")


def test_embedded_specs_are_read_without_sidecar(exported, tmp_path):
    for key in ("onnx", "openvino"):
        src = exported["yolov5n"][key]
        for f in src.parent.glob(src.stem + ".*"):
            if not f.name.endswith(".json"):
                shutil.copy(f, tmp_path / f.name)
        assert load_spec(tmp_path / src.name) == ModelSpec.load(sidecar_path(src))
    tfl = exported["gsconv"]["tflite"]
    spec = ModelSpec.from_json(read_metadata(tfl.read_bytes(), SPEC_KEY).decode())
    assert spec == ModelSpec.load(sidecar_path(tfl)) and spec.layout == "NHWC"


@pytest.mark.parametrize("model", ["yolov5n", "gsconv"])
def test_dynamic_batch_onnx_runs_at_1_2_4(exported, model):
    path = exported[model]["onnx_dyn"]
    with load_runtime(path) as rt:
        assert rt.inputs[0].shape[0] is None
        single = rt.infer(np.random.default_rng(0).random((4, 3, IMGSZ, IMGSZ), dtype=np.float32))
        x = np.random.default_rng(0).random((4, 3, IMGSZ, IMGSZ), dtype=np.float32)
        for b in (1, 2, 4):
            out = rt.infer(x[:b])
            assert out["boxes"].shape[0] == b and out["scores"].shape[0] == b
            np.testing.assert_allclose(out["scores"], single["scores"][:b], atol=1e-6)


def test_gsconv_onnx_passes_trt85_check(exported):
    report = check_model(exported["gsconv"]["onnx_dyn"], "trt8.5")
    assert report.ok, report.table()
    assert not any(f.check == "batch axis" for f in report.findings)


@pytest.mark.parametrize("model,key", [("yolov5n", "onnx"), ("yolov5n", "openvino"), ("yolov5n", "tflite"),
                                       ("gsconv", "tflite"), ("yolov5n", "onnx_fp16"), ("yolov5n", "openvino_fp16"),
                                       ("gsconv", "tflite_fp16")])
def test_detector_matches_pt(exported, yolov5n_pt, gsconv_pt, model, key):
    pt = yolov5n_pt if model == "yolov5n" else gsconv_pt
    artifact = exported[model][key]
    spec = ModelSpec.load(sidecar_path(artifact))
    images = sample_images(2, seed=3)
    with Detector.load(pt, conf=0.0, imgsz=IMGSZ) as probe:  # the .pt backend: PyTorch, export-mode model
        conf = _conf_between(probe(images[0]).scores, 40)
    reference = Detector.load(pt, conf=conf, imgsz=IMGSZ)
    with Detector.load(artifact, conf=conf) as det:
        assert det.spec.precision == spec.precision
        for image in images:
            ref, got = reference(image), det(image)
            if spec.precision == "fp32":
                _same_detections(ref, got)
            else:
                _same_fp16(ref, got)


def _conf_between(scores: np.ndarray, k: int) -> float:
    """A threshold halfway between the k-th and (k+1)-th best scores (random weights score far below 0.25)."""
    s = np.sort(scores)[::-1]
    return float((s[k - 1] + s[k]) / 2)


def _same_fp16(ref, got) -> None:
    """FP16: most boxes find a partner (near-equal scores of an untrained model may reorder NMS)."""
    from lite_deploy.runtime.compare import pair_detections

    m = pair_detections((ref.boxes, ref.scores, ref.class_ids), (got.boxes, got.scores, got.class_ids), iou=0.9,
                        conf=0.0, margin=0.0)
    assert m.matched >= 0.9 * len(ref.boxes) > 0, m


@pytest.mark.parametrize("key", ["onnx_fp16", "openvino_fp16"])
def test_fp16_artifact_runs_close_to_fp32(exported, key):
    """The FP16 artifact run on letterboxed scenes: every output within FP16's tolerance (1e-2 of its range) of the
    FP32 ONNX's, and not bit-equal (it really computes in float16)."""
    from lite_deploy.runtime.compare import TOLERANCES, compare_outputs

    fp32, fp16 = exported["yolov5n"]["onnx"], exported["yolov5n"][key]
    with Detector.load(fp32) as reference, Detector.load(fp16) as half:
        assert half.spec.precision == "fp16"
        for image in sample_images(2, seed=4):
            blob = reference.preprocess([image])[0]
            diffs = compare_outputs(reference.runtime.infer(blob), half.runtime.infer(blob), TOLERANCES["fp16"])
            assert [d.name for d in diffs] == ["boxes", "scores"] and all(d.ok for d in diffs), diffs
            assert all(d.max_abs > 0 for d in diffs), diffs


def test_fp16_artifacts_are_smaller(exported):
    v5 = exported["yolov5n"]
    bin16, bin32 = (v5[key].with_suffix(".bin").stat().st_size for key in ("openvino_fp16", "openvino"))
    assert bin16 < 0.6 * bin32
    assert v5["onnx_fp16"].stat().st_size < 0.6 * v5["onnx"].stat().st_size
    gs = exported["gsconv"]
    assert gs["tflite_fp16"].stat().st_size < 0.7 * gs["tflite"].stat().st_size
    assert json.loads(sidecar_path(v5["onnx_fp16"]).read_text())["precision"] == "fp16"


@pytest.mark.parametrize("key", ["openvino", "openvino_fp16"])
def test_openvino_takes_the_channels_last_decode(exported, key):
    """yolov5n's 80 classes: the IR is converted with the head's convolution split in two (channels-last decode),
    the ONNX artifact keeps one per level; both were verified against PyTorch by the exporter."""
    import openvino as ov

    onnx_convs = sum(node.op_type == "Conv" for node in onnx.load(str(exported["yolov5n"]["onnx"])).graph.node)
    model = ov.Core().read_model(str(exported["yolov5n"][key]))
    ir_convs = sum(op.get_type_name() == "Convolution" for op in model.get_ops())
    assert ir_convs == onnx_convs + 3


def test_channel_gathers_fold_into_convolutions_exactly() -> None:
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from lite_deploy.export.onnx import fold_channel_gathers

    rng = np.random.default_rng(0)
    perm = rng.permutation(8).astype(np.int64)
    weight = rng.standard_normal((4, 8, 3, 3)).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Concat", ["a", "b"], ["cat"], axis=1),
         helper.make_node("Gather", ["cat", "perm"], ["shuffled"], axis=1),
         helper.make_node("Conv", ["shuffled", "w"], ["y"], pads=[1, 1, 1, 1])],
        "g", [helper.make_tensor_value_info(n, TensorProto.FLOAT, [1, 4, 5, 5]) for n in ("a", "b")],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 5, 5])],
        [numpy_helper.from_array(perm, "perm"), numpy_helper.from_array(weight, "w")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {n: rng.standard_normal((1, 4, 5, 5)).astype(np.float32) for n in ("a", "b")}
    before = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    assert fold_channel_gathers(model) == 1
    onnx.checker.check_model(model)
    assert [n.op_type for n in model.graph.node] == ["Concat", "Conv"]
    assert [t.name for t in model.graph.initializer] == ["w"]
    after = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5)
