"""The build route per TensorRT version, run against stand-ins generated from each version's API table (a name
the version lacks raises AttributeError, as the real module would). No GPU: the engine bytes are not real."""

from __future__ import annotations

from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from lite_deploy.errors import BackendUnavailableError, ExportError
from lite_deploy.runtime.backends.tensorrt import build as trt_build
from lite_deploy.spec import ModelSpec, sidecar_path

NMS_LAYERS = [("CONVOLUTION", ["FLOAT"]), ("PLUGIN_V2", ["INT32", "FLOAT", "FLOAT", "INT32"])]
DYNAMIC = (-1, 3, 64, 64)


def write_onnx(tmp_path: Path, precision: str = "fp32", nms: bool = False) -> Path:
    """Stand-in ONNX bytes with the spec export writes beside them (the fake parser does not read the bytes)."""
    path = tmp_path / "m_trt.onnx"
    path.write_bytes(b"onnx")
    layout = dict(output_layout="nms", output_names=("num_dets", "det_boxes", "det_scores", "det_classes")) if nms \
        else dict(output_layout="boxes_scores", output_names=("boxes", "scores"))
    ModelSpec(task="detect", names=("a",), imgsz=(64, 64), target="tensorrt", precision=precision, batch=None,
              **layout).save(sidecar_path(path))
    return path


def calls(trt, name):
    return [args for n, args in trt.calls if n == name]


def flags_set(trt):
    return sorted(a[0].name for a in calls(trt, "IBuilderConfig.set_flag"))


# version -> (network creation flags, FP16 route, INT8 routes)
@pytest.mark.parametrize("version, network_flags", [("8.5", 1), ("8.6", 1), ("10.3", 0), ("10.16", 0), ("11.1", 0),
                                                     ("11.4", 0)])
def test_fp32_route_initialises_plugins_before_parsing(tmp_path, use_trt, version, network_flags):
    trt = use_trt(version, input_shape=DYNAMIC, needs_plugins=True)
    engine, report = trt_build.build_engine(write_onnx(tmp_path), verify=False, max_batch=4)
    assert report is None and engine.read_bytes() == b"engine-bytes"
    names = [n for n, _ in trt.calls]
    assert names.index("init_libnvinfer_plugins") < names.index("OnnxParser.parse")
    assert calls(trt, "Builder.create_network") == [(network_flags,)]
    assert flags_set(trt) == []
    assert calls(trt, "IOptimizationProfile.set_shape") == [("images", (1, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64))]
    spec = ModelSpec.load(sidecar_path(engine))
    assert spec.precision == "fp32" and spec.extra["tensorrt"] == trt.__version__
    assert spec.extra["compute_capability"] == "8.7" and spec.extra["gpu"] == "Orin"
    assert spec.files[".engine"]["size"] == len(b"engine-bytes")
    assert not list(tmp_path.glob(".*"))  # no staging folder left


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.3", "10.16"])
@pytest.mark.parametrize("onnx_precision, half", [("fp32", True), ("fp16", False)])
def test_fp16_with_nms_pins_the_plugin_to_float(tmp_path, use_trt, version, onnx_precision, half):
    trt = use_trt(version, layers=NMS_LAYERS, needs_plugins=True)
    engine, _ = trt_build.build_engine(write_onnx(tmp_path, onnx_precision, nms=True), half=half, verify=False)
    assert flags_set(trt) == ["FP16", "PREFER_PRECISION_CONSTRAINTS"]
    assert calls(trt, "ILayer.precision=") == [(trt.dtype("FLOAT"),)]  # only the plugin layer
    assert calls(trt, "ILayer.set_output_type") == [(1, trt.dtype("FLOAT")), (2, trt.dtype("FLOAT"))]
    assert ModelSpec.load(sidecar_path(engine)).precision == "fp16"


@pytest.mark.parametrize("version", ["11.1", "11.4"])
def test_tensorrt_11_takes_precision_from_the_onnx(tmp_path, use_trt, version):
    trt = use_trt(version, layers=NMS_LAYERS)
    with pytest.raises(ExportError, match="export WEIGHTS --target trt --half"):
        trt_build.build_engine(write_onnx(tmp_path, "fp32"), half=True, verify=False)
    for precision in ("fp16", "int8"):
        engine, _ = trt_build.build_engine(write_onnx(tmp_path, precision, nms=True), verify=False)
        assert ModelSpec.load(sidecar_path(engine)).precision == precision
    assert flags_set(trt) == [] and not calls(trt, "ILayer.precision=")
    with pytest.raises(ExportError, match="no INT8 calibrator .*--int8 --calib"):
        trt_build.build_engine(write_onnx(tmp_path, "fp32"), calib=[tmp_path / "0.png"], verify=False)


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.3", "10.16"])
def test_qdq_onnx_builds_with_the_int8_flag(tmp_path, use_trt, version):
    trt = use_trt(version)
    engine, _ = trt_build.build_engine(write_onnx(tmp_path, "int8"), verify=False)
    assert flags_set(trt) == ["INT8"] and ModelSpec.load(sidecar_path(engine)).precision == "int8"
    assert not calls(trt, "IBuilderConfig.int8_calibrator=")
    with pytest.raises(ExportError, match="already quantized"):
        trt_build.build_engine(write_onnx(tmp_path, "int8"), calib=[tmp_path / "0.png"], verify=False)


def calibration_images(folder: Path, n: int = 3) -> List[Path]:
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i}.png"), np.full((40, 60, 3), 40 * i, np.uint8))
    return sorted(folder.iterdir())


@pytest.mark.parametrize("version", ["8.5", "8.6", "10.3", "10.16"])
def test_implicit_int8_attaches_the_calibrator_and_its_profile(tmp_path, use_trt, version):
    trt = use_trt(version, input_shape=DYNAMIC, layers=NMS_LAYERS)
    images = calibration_images(tmp_path / "calib")
    engine, _ = trt_build.build_engine(write_onnx(tmp_path, "fp32", nms=True), calib=images, max_batch=2, verify=False)
    calibrator = calls(trt, "IBuilderConfig.int8_calibrator=")[0][0]
    assert isinstance(calibrator, trt.IInt8EntropyCalibrator2) and calibrator.get_batch_size() == 2
    profile = calls(trt, "IBuilderConfig.add_optimization_profile")[0][0]
    assert calls(trt, "IBuilderConfig.set_calibration_profile") == [(profile,)]
    assert flags_set(trt) == ["INT8", "PREFER_PRECISION_CONSTRAINTS"]
    assert calibrator.get_batch(["images"]) is not None  # the images, letterboxed, fed as the runtime does
    assert ModelSpec.load(sidecar_path(engine)).precision == "int8"


def test_int8_and_calib_go_together_on_the_command_line(tmp_path, capsys):
    from lite_deploy.cli import main

    assert main(["build-engine", str(write_onnx(tmp_path)), "--int8"]) == 2
    assert "--int8 and --calib go together" in capsys.readouterr().err


def test_build_engine_without_tensorrt(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BackendUnavailableError, match="comes with JetPack"):
        trt_build.build_engine(write_onnx(tmp_path))


def test_profile_shapes():
    assert trt_build.profile_shapes((1, 3, 320, 320)) is None
    assert trt_build.profile_shapes((-1, 3, 320, 320), min_batch=1, opt_batch=2, max_batch=8) == (
        (1, 3, 320, 320), (2, 3, 320, 320), (8, 3, 320, 320))
    with pytest.raises(ValueError, match="min-batch <= opt-batch <= max-batch"):
        trt_build.profile_shapes((-1, 3, 64, 64), min_batch=4, max_batch=2)
    with pytest.raises(ValueError, match="only the batch axis may be dynamic"):
        trt_build.profile_shapes((-1, 3, -1, 64))


def test_engine_sidecar_records_the_engine_alone_and_load_checks_it(tmp_path, use_trt):
    from lite_deploy.errors import ArtifactMismatchError
    from lite_deploy.runtime import load_runtime
    from lite_deploy.spec import file_records

    onnx_path = write_onnx(tmp_path)
    onnx_spec = ModelSpec.load(sidecar_path(onnx_path))
    onnx_spec.replace(files=file_records(onnx_path)).save(sidecar_path(onnx_path))  # as export commits it
    use_trt("10.3", needs_plugins=True)
    engine, _ = trt_build.build_engine(onnx_path, verify=False)
    assert ModelSpec.load(sidecar_path(engine)).files == file_records(engine)  # the engine's record, not the ONNX's
    engine.write_bytes(b"engine-byteZ")  # same size, another engine
    with pytest.raises(ArtifactMismatchError, match=r"m_trt\.engine has another SHA-256 than m_trt\.engine\.json"):
        load_runtime(engine)
