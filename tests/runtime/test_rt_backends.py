"""Backends for real: ONNX Runtime, OpenVINO and TFLite on the same tiny detector, the YOLOv5 export, the registry."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from lite_deploy.errors import BackendUnavailableError, CheckpointError
from lite_deploy.runtime import Detector, load_runtime, load_spec, registered_suffixes, registry
from lite_deploy.runtime.backends.tensorrt.api import TENSORRT_INSTALL
from lite_deploy.runtime.registry import register_backend, runtime_class
from lite_deploy.spec import ModelSpec, sidecar_path

BACKENDS = ("onnx", "openvino", "tflite")


def _frame(h: int = 96, w: int = 128, seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU; boxes clipped to zero area count as matching when their corners agree to 1e-3 px."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    iou = inter / np.maximum(area(a)[:, None] + area(b)[None, :] - inter, 1e-9)
    same = np.abs(a[:, None, :] - b[None, :, :]).max(axis=2) < 1e-3
    return np.where(same, 1.0, iou)


@pytest.mark.parametrize("backend", BACKENDS)
def test_raw_outputs_match_torch(tiny_artifacts, backend):
    ref = np.load(tiny_artifacts["reference"])
    with load_runtime(tiny_artifacts[backend], threads=1) as runtime:
        assert runtime.inputs[0].shape == (1, 3, 64, 64) and runtime.inputs[0].dtype == np.float32
        boxes, scores = runtime.infer(ref["x"]).values()  # outputs in the source model's order
    np.testing.assert_allclose(boxes, ref["boxes"], atol=1e-3)
    np.testing.assert_allclose(scores, ref["scores"], atol=1e-4)


def test_detections_agree_across_backends(tiny_artifacts):
    frames = [_frame(96, 128, 1), _frame(70, 50, 2)]
    results = {}
    for backend in BACKENDS:
        with Detector.load(tiny_artifacts[backend], conf=0.25, iou=0.45, threads=1) as det:
            results[backend] = det(frames)
            assert set(det.timings) == {"pre", "infer", "post"}
    for i in range(len(frames)):
        ref = results["onnx"][i]
        assert 3 <= len(ref) < 64  # candidates above conf, and NMS removed some
        assert ref.boxes[:, 2].max() <= frames[i].shape[1] and ref.boxes[:, 3].max() <= frames[i].shape[0]
        for backend in ("openvino", "tflite"):
            other = results[backend][i]
            assert len(other) == len(ref), backend
            iou = _box_iou(ref.boxes, other.boxes)
            best = iou.argmax(axis=1)
            assert np.all(iou.max(axis=1) >= 0.99), backend
            assert np.array_equal(ref.class_ids, other.class_ids[best]), backend
            np.testing.assert_allclose(ref.scores, other.scores[best], atol=1e-3)


def test_openvino_runs_fp32_artifacts_in_f32(tiny_artifacts):
    import openvino as ov

    ref = np.load(tiny_artifacts["reference"])
    with load_runtime(tiny_artifacts["openvino"]) as runtime:
        assert runtime.precision_hint == "f32"
        f32_error = np.abs(runtime.infer(ref["x"])["boxes"] - ref["boxes"]).max()
    assert f32_error < 1e-3
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        pytest.skip("this CPU has no bf16: the default cannot differ")
    with load_runtime(tiny_artifacts["openvino"], precision="bf16") as runtime:
        assert runtime.precision_hint == "bf16"
        bf16_error = np.abs(runtime.infer(ref["x"])["boxes"] - ref["boxes"]).max()
    assert bf16_error > 10 * f32_error  # the hint really changes what runs


@pytest.mark.parametrize("free", [1, 2])
def test_threads_follow_the_free_cores(tiny_artifacts, monkeypatch, free):
    """Without threads=, ONNX Runtime and OpenVINO take the cores free now; ONNX Runtime spins only when all are, and
    only during a run."""
    from lite_deploy.runtime.backends.onnxruntime import runtime as ort_runtime
    from lite_deploy.runtime.backends.openvino import runtime as ov_runtime

    for module in (ort_runtime, ov_runtime):
        monkeypatch.setattr(module, "free_cores", lambda: free)
    monkeypatch.setattr(ort_runtime, "compute_cores", lambda: 2)
    options = ort_runtime.session_options()
    assert options.intra_op_num_threads == free
    if free == 1:
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    else:  # unset: ONNX Runtime's default, spinning
        with pytest.raises(RuntimeError, match="does not have configuration"):
            options.get_session_config_entry("session.intra_op.allow_spinning")
    assert ort_runtime.session_options(threads=3).intra_op_num_threads == 3
    with load_runtime(tiny_artifacts["onnx"]) as runtime:  # workers stop spinning when a run ends, whatever the load
        used = runtime.session.get_session_options()
        assert used.intra_op_num_threads == free
        assert used.get_session_config_entry("session.force_spinning_stop") == "1"
    with load_runtime(tiny_artifacts["openvino"]) as runtime:
        assert runtime.compiled.get_property("INFERENCE_NUM_THREADS") == free
    with load_runtime(tiny_artifacts["openvino"], threads=2) as runtime:
        assert runtime.compiled.get_property("INFERENCE_NUM_THREADS") == 2


def test_infer_validates_feeds(tiny_artifacts):
    with load_runtime(tiny_artifacts["onnx"]) as runtime:
        with pytest.raises(ValueError, match=r"got dtype float64, expected float32"):
            runtime.infer(np.zeros((1, 3, 64, 64)))
        with pytest.raises(ValueError, match=r"got shape \(1, 3, 32, 32\), expected \(1, 3, 64, 64\)"):
            runtime.infer(np.zeros((1, 3, 32, 32), np.float32))
        with pytest.raises(ValueError, match=r"missing \['images'\], unknown \['x'\]"):
            runtime.infer({"x": np.zeros((1, 3, 64, 64), np.float32)})


def test_onnxruntime_refuses_missing_provider(tiny_artifacts):
    with pytest.raises(BackendUnavailableError, match="CUDAExecutionProvider.*onnxruntime-gpu"):
        load_runtime(tiny_artifacts["onnx"], providers=["CUDAExecutionProvider", "CPUExecutionProvider"])


def test_openvino_refuses_missing_device(tiny_artifacts):
    with pytest.raises(BackendUnavailableError, match="device 'NPU' is not present"):
        load_runtime(tiny_artifacts["openvino"], device="NPU")


def test_registry_errors(tmp_path, monkeypatch):
    assert {".onnx", ".xml", ".tflite", ".engine", ".plan", ".pt"} <= set(registered_suffixes())
    model = tmp_path / "m.pb"
    model.write_bytes(b"")
    with pytest.raises(ValueError, match=r"must end in one of .*\.onnx"):
        load_runtime(model)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_runtime(tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="registered already"):
        register_backend(".onnx", target="x:Y", module="x", extra="x")
    # TensorRT is not installed here: no pip extra installs it, the error says where it comes from (the message
    # build-engine gives), and nothing was imported to find out
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="module, which is not installed: it comes with JetPack") as err:
        runtime_class(tmp_path / "model.engine")
    assert TENSORRT_INSTALL in str(err.value) and "pip install" not in str(err.value)
    # a backend that pip installs: the error names the extra
    monkeypatch.setitem(registry._BACKENDS, ".fake", registry._BACKENDS[".onnx"]._replace(module="absent_module"))
    hint = r"'absent_module' module.*pip install 'lite-deploy\[onnxruntime\]'"
    with pytest.raises(BackendUnavailableError, match=hint):
        runtime_class(tmp_path / "model.fake")


def test_yolov5_export_without_spec(yolov5_onnx):
    spec = load_spec(yolov5_onnx)
    assert not sidecar_path(yolov5_onnx).exists()
    assert spec.output_layout == "yolov5" and spec.nc == 80 and spec.names[3] == "class3"
    assert spec.imgsz == (640, 640) and spec.stride == 32 and spec.output_names == ("output0",) and spec.batch == 1


def test_spec_discovery_order_and_error(tiny_artifacts, tmp_path):
    import onnx

    from lite_deploy.spec import SPEC_KEY

    proto = onnx.load(str(tiny_artifacts["onnx"]))
    bare = tmp_path / "bare.onnx"
    onnx.save(proto, str(bare))
    with pytest.raises(ValueError, match=r"write its ModelSpec to bare\.onnx\.json"):
        load_spec(bare)
    embedded = ModelSpec.load(sidecar_path(tiny_artifacts["onnx"])).replace(names=("a", "b", "c"))
    proto.metadata_props.add(key=SPEC_KEY, value=embedded.to_json())
    onnx.save(proto, str(bare))
    assert load_spec(bare).names == ("a", "b", "c")  # embedded
    embedded.replace(names=("x", "y", "z")).save(sidecar_path(bare))
    assert load_spec(bare).names == ("x", "y", "z")  # the sidecar wins


def test_wrong_output_names_are_reported(tiny_artifacts, tmp_path):
    import shutil

    path = tmp_path / "renamed.onnx"
    shutil.copy(tiny_artifacts["onnx"], path)
    ModelSpec.load(sidecar_path(tiny_artifacts["onnx"])).replace(output_names=("b", "s")).save(sidecar_path(path))
    mismatch = r"names outputs \['b', 's'\].*has \['boxes', 'scores'\]"
    with Detector.load(path) as det, pytest.raises(ValueError, match=mismatch):
        det(_frame())


def _reference_yolov5(prediction: np.ndarray, conf: float, iou: float, max_det: int) -> tuple:
    """YOLOv5's non_max_suppression for one image, written from its documented steps with torch/torchvision."""
    import torch
    import torchvision

    x = torch.from_numpy(prediction)
    x = x[x[:, 4] > conf]
    x[:, 5:] *= x[:, 4:5]
    box = torch.cat((x[:, :2] - x[:, 2:4] / 2, x[:, :2] + x[:, 2:4] / 2), 1)
    score, cls = x[:, 5:].max(1)
    keep = score > conf
    box, score, cls = box[keep], score[keep], cls[keep]
    order = score.argsort(descending=True)[:30000]
    box, score, cls = box[order], score[order], cls[order]
    kept = torchvision.ops.nms(box + cls[:, None].float() * 7680, score, iou)[:max_det]
    return box[kept].numpy(), score[kept].numpy(), cls[kept].numpy()


def test_yolov5_fixture_through_detector(yolov5_onnx):
    """The real YOLOv5 export: same boxes as YOLOv5's own pipeline on the same letterboxed input.

    Its random head scores at most ~1e-3 (obj x cls), so the threshold is 2e-4 to get real detections.
    """
    import cv2

    frame = _frame(360, 480, 7)
    conf, iou = 2e-4, 0.45
    with Detector.load(yolov5_onnx, conf=conf, iou=iou, max_det=300, threads=1) as det:
        got = det(frame)
        raw = det.runtime.infer(det.preprocess([frame])[0].copy())["output0"][0]
    assert 10 < len(got) <= 300
    # reference: YOLOv5's letterbox of 480x360 into 640: gain 4/3, 640x480, 80 px bars top and bottom
    padded = cv2.copyMakeBorder(cv2.resize(frame, (640, 480), interpolation=cv2.INTER_LINEAR), 80, 80, 0, 0,
                                cv2.BORDER_CONSTANT, value=(114, 114, 114))
    blob = np.ascontiguousarray(padded[:, :, ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
    with load_runtime(yolov5_onnx, threads=1) as runtime:
        np.testing.assert_array_equal(runtime.infer(blob)["output0"][0], raw)
    boxes, scores, classes = _reference_yolov5(raw, conf, iou, 300)
    boxes = (boxes - np.array([0, 80, 0, 80], np.float32)) / np.float32(4 / 3)
    boxes = np.clip(boxes, 0, [480, 360, 480, 360])
    np.testing.assert_array_equal(got.class_ids, classes)
    np.testing.assert_allclose(got.scores, scores, rtol=0, atol=0)
    np.testing.assert_allclose(got.boxes, boxes, atol=1e-3)


def test_missing_backend_module_names_extra(tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    model = tmp_path / "m.xml"
    model.write_text("<net/>")
    with pytest.raises(BackendUnavailableError, match=r"pip install 'lite-deploy\[openvino\]'"):
        load_runtime(model)


def test_pt_reference_backend_agrees_with_yolov5_export(yolov5_fixtures, yolov5_onnx):
    """The host-side ``.pt`` backend (this project's loader + export head, boxes/scores layout) against YOLOv5's own
    ONNX export (xywh/obj/cls layout) of the same checkpoint."""
    pytest.importorskip("torch")
    frame = _frame(360, 480, 7)
    with Detector.load(yolov5_fixtures / "yolov5n-v7-nc80.pt", conf=2e-4) as det_pt:
        assert det_pt.spec.output_layout == "boxes_scores"
        from_pt = det_pt(frame)
    with Detector.load(yolov5_onnx, conf=2e-4) as det_onnx:
        from_onnx = det_onnx(frame)
    assert len(from_pt) == len(from_onnx) > 10
    top = from_onnx[:100]
    iou = _box_iou(top.boxes, from_pt.boxes)
    best = iou.argmax(axis=1)
    assert np.all(iou.max(axis=1) >= 0.99)
    np.testing.assert_array_equal(top.class_ids, from_pt.class_ids[best])
    np.testing.assert_allclose(top.scores, from_pt.scores[best], atol=1e-6)


def test_tflite_spec_embedded_in_the_flatbuffer_is_read_without_a_sidecar(tiny_artifacts, tmp_path):
    import shutil

    from lite_deploy.errors import SpecError
    from lite_deploy.export.tflite import embed_metadata
    from lite_deploy.spec import SPEC_KEY

    spec = ModelSpec.load(sidecar_path(tiny_artifacts["tflite"])).replace(precision="fp32")
    path = tmp_path / "embedded.tflite"
    path.write_bytes(embed_metadata(tiny_artifacts["tflite"].read_bytes(), {SPEC_KEY: spec.to_json().encode()}))
    assert load_spec(path) == spec
    with load_runtime(path) as runtime:
        assert ModelSpec.from_json(runtime.embedded_metadata()[SPEC_KEY]) == spec
    plain = tmp_path / "plain.tflite"
    shutil.copy(tiny_artifacts["tflite"], plain)
    with pytest.raises(SpecError, match="does not say what model it is"):
        load_spec(plain)


@pytest.mark.parametrize("dtype, zero_point", [(np.int8, -128), (np.int8, 3), (np.uint8, 0), (np.uint8, 131),
                                               (np.int16, -7)])
def test_tflite_input_quantization_is_round_then_zero_point_then_saturate(dtype, zero_point):
    """``q = clip(round_half_even(x / scale) + zero_point)``; an odd zero point shows whether the rounding came first
    (rounding x / scale + zero_point instead moves the halves)."""
    from lite_deploy.runtime.backends.tflite.runtime import quantize

    scale = np.float32(0.05)
    x = np.random.default_rng(0).normal(0, 4, (1, 8, 6, 3)).astype(np.float32)
    x[0, 0, 0] = np.array([0.5, 1.5, -2.5], np.float32) * scale  # exact halves after the division
    x[0, 1, 0] = [1e6, -1e6, 0]  # beyond every type's range
    info = np.iinfo(dtype)
    expected = np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(dtype)
    q = quantize(x, {"dtype": dtype, "quantization": (float(scale), zero_point)})
    assert q.dtype == dtype and q.shape == x.shape
    np.testing.assert_array_equal(q, expected)
    assert np.array_equal(x[0, 0, 0] / scale, [0.5, 1.5, -2.5])  # the halves really are halves
