"""``check``: static target reports on small hand-made graphs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper
from torch import nn

from lite_deploy.cli import main
from lite_deploy.runtime.check import check_model


class Shuffle3D(nn.Module):
    """The slim-neck GSConv 3-D channel shuffle: folds the batch into axis 0 and transposes across it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, h, w = x.shape
        y = x.reshape(b * n // 2, 2, h * w).permute(1, 0, 2).reshape(2, -1, n // 2, h, w)
        return torch.cat((y[0], y[1]), 1)


def _save(model: onnx.ModelProto, path) -> str:
    onnx.save(model, str(path))
    return str(path)


def _layernorm_model(opset: int) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8])
    scale = helper.make_tensor("s", TensorProto.FLOAT, [8], [1.0] * 8)
    nz = helper.make_tensor_value_info("nz", TensorProto.INT64, [3, None])
    graph = helper.make_graph(
        [helper.make_node("LayerNormalization", ["x", "s"], ["y"], name="ln", axis=-1),
         helper.make_node("NonZero", ["x"], ["nz"], name="nonzero")],
        "g", [x], [y, nz], [scale],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def test_trt85_unsupported_operator_and_opset(tmp_path):
    path = _save(_layernorm_model(18), tmp_path / "ln.onnx")
    report = check_model(path, "trt8.5")
    text = report.table()
    assert not report.ok
    assert "LayerNormalization (1x, e.g. ln) is not supported by TensorRT 8.5" in text
    assert "opset 18 > 17" in text and "NonZero nonzero has a data-dependent output shape" in text
    assert check_model(path, "trt10").ok  # LayerNormalization parses on TensorRT 10, opset 18 <= 20


def test_batch_folding_reshape_is_an_error(tmp_path):
    path = tmp_path / "shuffle.onnx"
    torch.onnx.export(Shuffle3D(), (torch.rand(2, 8, 4, 4),), str(path), dynamo=False, opset_version=17,
                      input_names=["images"])
    report = check_model(path, "trt8.5")
    text = report.table()
    assert not report.ok and "folds the batch axis" in text and "moves the batch axis" in text
    assert "rank > 4" in text


def test_openvino_real_converter(tmp_path):
    path = _save(_layernorm_model(17), tmp_path / "ln.onnx")
    assert check_model(path, "openvino").ok


def test_cli_exit_status(tmp_path, capsys):
    bad = _save(_layernorm_model(18), tmp_path / "ln.onnx")
    assert main(["check", bad, "--target", "trt8.5"]) == 1
    assert "will NOT run as is" in capsys.readouterr().out
    assert main(["check", bad, "--target", "trt10"]) == 0
    assert main(["check", bad, "--target", "coreml"]) == 2


def _qdq_model(tmp_path, bias_dtype):
    """A Conv whose bias comes through a DequantizeLinear of ``bias_dtype`` (ONNX Runtime's default: INT32)."""
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((2, 1, 1, 1), np.int8), "w_q")
    b = numpy_helper.from_array(np.ones(2, np.int32 if bias_dtype == "int32" else np.int8), "b_q")
    scale = numpy_helper.from_array(np.array(0.1, np.float32), "s")
    zero8 = numpy_helper.from_array(np.array(0, np.int8), "z8")
    zero_b = numpy_helper.from_array(np.array(0, np.int32 if bias_dtype == "int32" else np.int8), "zb")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z8"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "z8"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w_q", "s", "z8"], ["w"], name="dqw"),
             helper.make_node("DequantizeLinear", ["b_q", "s", "zb"], ["b"], name="dqb"),
             helper.make_node("Conv", ["xd", "w", "b"], ["y"], name="conv")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 4, 4])],
                              [w, b, scale, zero8, zero_b])
    path = tmp_path / f"qdq_{bias_dtype}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("target", ["trt8.5", "trt8.6", "trt10", "trt11"])
def test_int32_bias_dequantize_is_refused_for_tensorrt(tmp_path, target):
    report = check_model(_qdq_model(tmp_path, "int32"), target)
    assert not report.ok and "DequantizeLinear INT32" in report.table()
    assert check_model(_qdq_model(tmp_path, "int8"), target).ok


def test_trt10_is_the_10_3_table_and_trt86_exists():
    from lite_deploy.runtime.check import TARGETS

    assert "STFT" not in TARGETS["trt10"].ops and "HannWindow" not in TARGETS["trt10"].ops
    assert "LayerNormalization" in TARGETS["trt10"].ops and "STFT" in TARGETS["trt11"].ops
    assert TARGETS["trt8.6"].max_opset == 17


@pytest.mark.parametrize("content", [b"", b"not an onnx model at all \x00\xff", None])
def test_check_refuses_empty_or_non_model_files(tmp_path, capsys, content):
    from lite_deploy.cli import main

    path = tmp_path / "m.onnx"
    if content is None:  # a valid ONNX without a graph
        onnx.save(onnx.helper.make_model(onnx.helper.make_graph([], "g", [], [])), str(path))
    else:
        path.write_bytes(content)
    assert main(["check", str(path), "--target", "trt8.5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err and err.count("\n") == 1
