"""ONNX Runtime's INT8 artifact runs in int8 kernels: no DequantizeLinear -> float op -> QuantizeLinear chains."""

from __future__ import annotations

import collections
import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from lite_deploy.quantize.qdq_onnx import decode_nodes


def _kernel_counts(path: Path) -> collections.Counter:
    """Operator type -> kernel executions in one ONNX Runtime run (its profiler's node events)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.enable_profiling = True
    options.profile_file_prefix = str(path.with_suffix(""))
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    info = session.get_inputs()[0]
    session.run(None, {info.name: np.random.default_rng(0).random(info.shape).astype(np.float32)})
    events = json.loads(Path(session.end_profiling()).read_text())
    return collections.Counter(e["args"]["op_name"] for e in events
                               if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"))


@pytest.fixture(scope="module")
def demo_int8(tmp_path_factory: pytest.TempPathFactory, shapes_yaml: Path) -> Path:
    from lite_deploy.assets import demo_weights
    from lite_deploy.export.exporter import export

    out = tmp_path_factory.mktemp("ort_int8")
    # --max-map-drop 100: no per-layer fallback (its trials are not what this tests)
    return export(demo_weights(), "onnx", imgsz=96, out=out, precision="int8", calib=shapes_yaml, calib_size=20,
                  max_map_drop=100)["onnx"]


def test_int8_kernels_between_the_convolutions(demo_int8: Path) -> None:
    """The demo detector (ShuffleNetV2: ReLU, channel shuffles, SiLU neck, concats): with Conv and Concat alone
    quantized, ORT ran 312 DequantizeLinear and 174 QuantizeLinear kernels and 51 float Conv per image, 2.2x
    slower than FP32. Now only the input's QuantizeLinear and the float tail's DequantizeLinear remain, and only
    the head's convolutions run in float."""
    counts = _kernel_counts(demo_int8)
    heads = decode_nodes(onnx.load(str(demo_int8)))[1]
    assert counts["QLinearConv"] > 40
    assert counts["DequantizeLinear"] + counts["QuantizeLinear"] <= 2 * len(heads) + 2, counts
    assert counts["Conv"] <= len(heads), counts


def test_activations_are_uint8_weights_int8_symmetric(demo_int8: Path) -> None:
    """ORT's x86 kernels want uint8 activations (U8S8); the weights stay symmetric int8 per output channel."""
    from onnx import numpy_helper

    model = onnx.load(str(demo_int8))
    constants = {t.name: t for t in model.graph.initializer}
    zero_types = collections.Counter()
    for node in model.graph.node:
        if node.op_type == "DequantizeLinear" and node.input[0] in constants and len(node.input) > 2:
            zero = constants[node.input[2]]
            if zero.data_type == onnx.TensorProto.INT8:
                assert not numpy_helper.to_array(zero).any()  # a symmetric weight
            zero_types[onnx.TensorProto.DataType.Name(zero.data_type)] += 1
        if node.op_type == "QuantizeLinear":
            zero_types["activation " + onnx.TensorProto.DataType.Name(constants[node.input[2]].data_type)] += 1
    assert zero_types["activation UINT8"] > 0 and zero_types["activation INT8"] == 0, zero_types
    assert zero_types["INT8"] > 40, zero_types
