"""INT8 TFLite: convolutions really run on int8 tensors, int8 or float32 input, float boxes and scores."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from lite_deploy.export.tflite import torch_to_tflite_int8
from lite_deploy.quantize.tflite_int8 import conv_input_types, module_of_node
from lite_deploy.runtime import load_spec
from lite_deploy.runtime.calibration import CalibrationSet

IMGSZ = 96


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, gsconv_pt: Path, calib_images: list):
    from lite_deploy.export.describe import describe
    from lite_deploy.export.exporter import load_weights
    from lite_deploy.models.deploy import prepare_for_export

    model, source = load_weights(gsconv_pt)
    export_model = prepare_for_export(model)
    out = tmp_path_factory.mktemp("tflite")
    spec = describe(model, imgsz=(IMGSZ, IMGSZ), target="tflite", precision="int8", layout="NHWC", source=source)
    paths = {}
    for io in ("int8", "float32"):
        s = spec.replace(input_dtype=io)
        paths[io] = torch_to_tflite_int8(export_model, out / f"gs_{io}.tflite", s, CalibrationSet(calib_images, s))
    return paths, export_model


def test_tensors_are_int8(models) -> None:
    from ai_edge_litert.interpreter import Interpreter

    paths, _ = models
    interpreter = Interpreter(model_path=str(paths["int8"]))
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    assert [(d["name"], d["dtype"]) for d in inputs] == [("images", np.int8)]
    scale, zero_point = inputs[0]["quantization"]
    assert 0.0039 < scale < 0.0040 and zero_point == -128  # [0, 1] images over the full int8 range
    assert sorted(d["name"] for d in outputs) == ["boxes", "scores"] and all(d["dtype"] == np.float32 for d in outputs)
    types = conv_input_types(paths["int8"].read_bytes())
    assert types.count("float32") == 3 and types.count("int8") == len(types) - 3 > 40  # only the head's 3 are float
    tensors = interpreter.get_tensor_details()
    int8_activations = [d for d in tensors if d["dtype"] == np.int8 and len(d["shape"]) == 4 and d["shape"][0] == 1
                        and d["quantization"][0] > 0]
    assert len(int8_activations) > 60
    assert load_spec(paths["int8"]).precision == "int8"


def _ops(path: Path) -> list:
    """``(operator name, type of its first input)`` of every op of a TFLite model, in order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_path=str(path),
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    return [(op["op_name"], dtypes[op["inputs"][0]]) for op in interpreter._get_ops_details()]


def test_shuffles_are_int8_transposes(models) -> None:
    """GSConv's channel shuffles are computed channels-last: one int8 TRANSPOSE each, no GATHER_ND (which XNNPACK
    lacks, so each one split the delegated graph)."""
    paths, _ = models
    ops = _ops(paths["int8"])
    assert not any(name == "GATHER_ND" for name, _ in ops)
    assert ops.count(("TRANSPOSE", "int8")) == 4  # the fixture's four GSConv


def test_silu_is_an_int8_sigmoid_and_product(tiny_detector, calib_images: list, tmp_path: Path) -> None:
    from lite_deploy.export.describe import describe

    model = tiny_detector().eval()
    spec = describe(model, imgsz=(64, 64), target="tflite", precision="int8", layout="NHWC")
    path = torch_to_tflite_int8(model, tmp_path / "tiny.tflite", spec, CalibrationSet(calib_images[:8], spec))
    ops = _ops(path)
    assert ops.count(("LOGISTIC", "int8")) == 3 and ops.count(("LOGISTIC", "float32")) == 1  # the decode's
    assert ops.count(("MUL", "int8")) == 3


def test_float_io_variant(models) -> None:
    from ai_edge_litert.interpreter import Interpreter

    paths, _ = models
    interpreter = Interpreter(model_path=str(paths["float32"]))
    assert [d["dtype"] for d in interpreter.get_input_details()] == [np.float32]
    assert conv_input_types(paths["float32"].read_bytes()) == conv_input_types(paths["int8"].read_bytes())


def test_runtime_runs_it_close_to_torch(models, calib_images: list) -> None:
    import torch

    from lite_deploy.runtime import load_runtime

    paths, export_model = models
    spec = load_spec(paths["int8"])
    blobs = list(CalibrationSet(calib_images[:4], spec).batches(1))
    for path in paths.values():
        with load_runtime(path) as rt:
            for blob in blobs:
                got = rt.infer(blob)
                with torch.no_grad():
                    boxes, scores = export_model(torch.from_numpy(blob).permute(0, 3, 1, 2))
                assert np.abs(got["scores"] - scores.numpy()).max() < 0.05
                assert np.abs(got["boxes"] - boxes.numpy()).mean() < 1.5


def test_module_of_onnx_node() -> None:
    assert module_of_node("/model.7/gsb/gsb.0/cv1/conv/Conv") == "model.7.gsb.0.cv1.conv"
    assert module_of_node("/model.0/conv1/conv1.0/Conv") == "model.0.conv1.0"


def test_activation_ranges_are_the_mean_of_the_batches_ranges() -> None:
    """As ONNX Runtime's averaged calibration: one extreme batch moves the range by its share only, in any order."""
    import torch

    from lite_deploy.quantize.tflite_int8 import _mean_minmax_observer

    ranges = []
    for order in ((1.0, 1.0, 1.0, 97.0), (97.0, 1.0, 1.0, 1.0)):
        observer = _mean_minmax_observer()(dtype=torch.int8, qscheme=torch.per_tensor_symmetric)
        for peak in order:
            observer(torch.tensor([-peak / 2, 0.0, peak]))
        ranges.append((observer.min_val.item(), observer.max_val.item()))
    assert ranges == [(-12.5, 25.0), (-12.5, 25.0)]


def test_shufflenet_stages_convert(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """The demo detector's stage inputs (channel shuffles feeding a padded stride-2 depthwise convolution and a neck
    Concat) convert: calibrated on the demo's shapes images, their ``tfl.pad`` once sat between two ranges. Every
    backbone and neck convolution runs in int8. The converted graph is in eval mode (litert-torch warned "converted
    in training mode" for the pt2e graph module)."""
    from lite_deploy.assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ, demo_weights
    from lite_deploy.data.shapes import generate_shapes
    from lite_deploy.export.describe import describe
    from lite_deploy.export.exporter import load_weights
    from lite_deploy.models.deploy import prepare_for_export

    model, source = load_weights(demo_weights())
    spec = describe(model, imgsz=(DEMO_IMGSZ, DEMO_IMGSZ), target="tflite", precision="int8", layout="NHWC",
                    source=source)
    data = generate_shapes(tmp_path / "shapes", train=40, val=1, seed=0, imgsz=DEMO_DATA_IMGSZ, progress=False)
    calib = CalibrationSet(sorted((data.parent / "images" / "train").iterdir()), spec)
    with caplog.at_level(logging.WARNING):
        path = torch_to_tflite_int8(prepare_for_export(model), tmp_path / "demo.tflite", spec, calib)
    assert "training mode" not in caplog.text
    types = conv_input_types(path.read_bytes())
    assert types.count("float32") == 3 and types.count("int8") == len(types) - 3
