"""The Q/DQ ONNX: only int8 Q/DQ with zero point 0, decode in float, close to FP32 in ONNX Runtime; its uint8
activation variant (OpenVINO's source) close to FP32 in OpenVINO."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from lite_deploy.export.onnx import save
from lite_deploy.quantize.calibration import find_images
from lite_deploy.quantize.qdq_onnx import check_qdq, decode_nodes, quantize_qdq
from lite_deploy.runtime import load_spec
from lite_deploy.runtime.calibration import CalibrationSet
from lite_deploy.spec import ModelSpec, sidecar_path


@pytest.fixture(scope="module")
def qdq(tmp_path_factory: pytest.TempPathFactory, gsconv_fp32: Path, calib_images: list) -> Path:
    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    calib = CalibrationSet(calib_images, spec)
    int8 = spec.replace(precision="int8")
    return save(quantize_qdq(gsconv_fp32, calib, int8), tmp_path_factory.mktemp("int8") / "gs_int8.onnx", int8)


def test_only_symmetric_int8_qdq_nodes(qdq: Path) -> None:
    model = onnx.load(str(qdq))
    assert check_qdq(model) == []
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    quantize = [n for n in model.graph.node if n.op_type == "QuantizeLinear"]
    dequantize = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert len(quantize) > 20 and len(dequantize) > len(quantize)
    for node in quantize + dequantize:
        zero = constants[node.input[2]]
        assert not zero.any(), node.name
        assert zero.dtype == np.int8 or (node.op_type == "DequantizeLinear" and zero.dtype == np.int32), node.name
    weights = [constants[n.input[0]] for n in dequantize if n.input[0] in constants and constants[n.input[0]].ndim == 4]
    assert weights and all(w.dtype == np.int8 for w in weights)
    per_channel = [constants[n.input[1]] for n in dequantize
                   if n.input[0] in constants and constants[n.input[0]].ndim == 4]
    assert all(s.ndim == 1 and s.size > 1 for s in per_channel)  # one scale per output channel
    assert load_spec(qdq).precision == "int8"


def test_decode_and_head_convolutions_stay_float(qdq: Path, gsconv_fp32: Path) -> None:
    decode, heads = decode_nodes(onnx.load(str(gsconv_fp32)))
    assert len(heads) == 3 and any("Sigmoid" in n for n in decode)
    model = onnx.load(str(qdq))
    quantized_inputs = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    float_nodes = [n for n in model.graph.node if n.name in set(decode) | set(heads)]
    assert len(float_nodes) == len(decode) + len(heads)
    for node in float_nodes:
        if node.op_type != "Conv":
            assert not quantized_inputs & set(node.input), node.name
    assert all(n.input[1] in {t.name for t in model.graph.initializer} for n in float_nodes if n.op_type == "Conv")


@pytest.fixture(scope="module")
def qdq_uint8(tmp_path_factory: pytest.TempPathFactory, gsconv_fp32: Path, calib_images: list) -> Path:
    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    int8 = spec.replace(precision="int8")
    return save(quantize_qdq(gsconv_fp32, CalibrationSet(calib_images, spec), int8, symmetric=False),
                tmp_path_factory.mktemp("uint8") / "gs_u8.onnx", int8)


def test_symmetric_check_rejects_zero_points(qdq: Path) -> None:
    model = onnx.load(str(qdq))
    zero = next(t for t in model.graph.initializer
                if t.name.endswith("zero_point") and t.data_type == onnx.TensorProto.INT8
                and not t.dims)
    zero.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zero.name))
    assert any("is not 0" in p for p in check_qdq(model))


def pair_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` (N, 4) xyxy with the box at the same index in ``b``."""
    lt, rb = np.maximum(a[:, :2], b[:, :2]), np.minimum(a[:, 2:], b[:, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), 1)
    area = lambda x: np.prod(x[:, 2:] - x[:, :2], 1)  # noqa: E731
    return inter / (area(a) + area(b) - inter)


def test_runs_in_onnxruntime_and_openvino_close_to_fp32(qdq: Path, qdq_uint8: Path, gsconv_fp32: Path,
                                                        shapes_yaml: Path) -> None:
    from lite_deploy.runtime import load_runtime

    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    blobs = list(CalibrationSet(find_images(shapes_yaml.parent / "images" / "val", 8), spec).batches(1))
    outputs = {}
    for name, path in (("fp32", gsconv_fp32), ("ort", qdq), ("ov", qdq_uint8)):
        if name == "ov":
            import openvino as ov  # the runtime's OpenVINO backend loads IRs: compile the ONNX directly

            compiled = ov.Core().compile_model(str(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
            outputs[name] = [{o.get_any_name(): v for o, v in compiled(b).items()} for b in blobs]
        else:
            with load_runtime(path) as rt:
                outputs[name] = [rt.infer(b) for b in blobs]
    for name in ("ort", "ov"):
        for ref, got in zip(outputs["fp32"], outputs[name]):
            assert np.abs(got["scores"] - ref["scores"]).max() < 0.05, name
            top = np.argsort(-ref["scores"].max(-1)[0])[:10]  # the likeliest boxes (the rest are mostly background)
            iou = pair_iou(got["boxes"][0, top], ref["boxes"][0, top])  # an untrained-for-shapes model: loose
            assert iou.mean() > 0.8 and iou.min() > 0.6, name


def test_ranges_are_means_over_the_batches_and_the_input_range_is_pinned(
        tmp_path: Path, gsconv_fp32: Path, calib_images: list) -> None:
    """One white frame among dark ones moves a range by its share only; the input keeps its full [0, 1] range."""
    import json

    import cv2
    import onnxruntime as ort

    frames = []
    for i, path in enumerate(calib_images):
        dark = cv2.resize(cv2.imread(str(path)), (96, 96)) // 16  # square: no letterbox padding (grey 114)
        frames.append(tmp_path / f"{i:02d}.png")
        cv2.imwrite(str(frames[-1]), np.full((96, 96, 3), 255, np.uint8) if i == len(calib_images) // 2 else dark)
    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    calib = CalibrationSet(frames, spec)
    int8 = spec.replace(precision="int8")
    out = save(quantize_qdq(gsconv_fp32, calib, int8, cache=tmp_path / "ranges.json"), tmp_path / "dark_int8.onnx",
               int8)

    fp32 = onnx.load(str(gsconv_fp32))
    first_conv = next(n.output[0] for n in fp32.graph.node if n.op_type == "Conv")
    fp32.graph.output.append(onnx.helper.make_tensor_value_info(first_conv, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(fp32.SerializeToString())
    per_frame = np.array([(v.min(), v.max()) for b in calib.batches(1)
                          for v in session.run([first_conv], {fp32.graph.input[0].name: b})])
    expected = max(abs(per_frame[:, 0].mean()), abs(per_frame[:, 1].mean()))
    ranges = json.loads((tmp_path / "ranges.json").read_text())["data"]
    highest = ranges[first_conv]["highest"]["data"][0]
    assert highest == pytest.approx(expected, rel=1e-4)
    assert highest < 0.8 * np.abs(per_frame).max()  # min/max over the batches would be the white frame's

    model = onnx.load(str(out))
    constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    inputs = [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == model.graph.input[0].name]
    assert len(inputs) == 1 and float(constants[inputs[0].input[1]]) == pytest.approx(1 / 127)  # dark frames or not


def test_int32_bias_dequantize_is_a_problem_for_tensorrt() -> None:
    """ONNX Runtime's default INT32 bias DequantizeLinear: fine for ONNX Runtime, rejected by TensorRT 8.5/8.6."""
    from onnx import TensorProto, helper

    inits = [numpy_helper.from_array(np.ones(2, np.int32), "b_q"),
             numpy_helper.from_array(np.array(0.1, np.float32), "s"),
             numpy_helper.from_array(np.array(0, np.int32), "zb"), numpy_helper.from_array(np.array(0, np.int8), "z8")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z8"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["b_q", "s", "zb"], ["b"], name="dqb")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("b", TensorProto.FLOAT, [2])], inits)
    model = helper.make_model(graph)
    assert check_qdq(model) == []
    assert check_qdq(model, int32_bias=False) == ["dqb: zero point of type INT32, not int8"]


def test_calibration_gives_the_ranges_quantize_static_would(tmp_path: Path, gsconv_fp32: Path,
                                                             calib_images: list) -> None:
    """The calibration runs in a session of our own (threads sized to the free cores); its ranges are ONNX Runtime's."""
    import json

    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    from lite_deploy.quantize.qdq_onnx import QUANTIZED_OPS, _calibrate, _reader

    spec = ModelSpec.load(sidecar_path(gsconv_fp32))
    calib = CalibrationSet(calib_images[:6], spec)
    input_name = onnx.load(str(gsconv_fp32)).graph.input[0].name
    ours, theirs = tmp_path / "ours.json", tmp_path / "theirs.json"
    _calibrate(gsconv_fp32, QUANTIZED_OPS, _reader(calib, 1, input_name), ours, tmp_path)
    quantize_static(str(gsconv_fp32), str(tmp_path / "q.onnx"), _reader(calib, 1, input_name),
                    quant_format=QuantFormat.QDQ, op_types_to_quantize=list(QUANTIZED_OPS),
                    calibrate_method=CalibrationMethod.MinMax, extra_options={"CalibMovingAverage": True},
                    calibration_cache_path=str(theirs))
    ours, theirs = ({name: (r["lowest"]["data"][0], r["highest"]["data"][0])
                     for name, r in json.loads(path.read_text())["data"].items()} for path in (ours, theirs))
    assert len(ours) > 50 and ours.keys() == theirs.keys()
    for name, (low, high) in ours.items():  # equal up to the order of a convolution's float sums (thread count)
        assert (low, high) == pytest.approx(theirs[name], rel=1e-5, abs=1e-6), name
