"""TensorRT export logic against small fakes of the TensorRT 8.5 / 10 / 11 Python API (TensorRT is not installable
here); the engine build itself needs a GPU and is not run."""

from __future__ import annotations

import json
from types import SimpleNamespace

import onnx
import pytest

from lite_deploy.errors import BackendUnavailableError, ExportError
from lite_deploy.export import tensorrt as trt_export
from lite_deploy.export.exporter import export_targets
from lite_deploy.spec import ModelSpec, sidecar_path


def fake_trt(*, explicit_batch: bool, fp16_flag: bool) -> SimpleNamespace:
    """The parts of the ``tensorrt`` module the builder uses, with or without the attributes versions dropped."""
    flags = SimpleNamespace(EXPLICIT_BATCH=0) if explicit_batch else SimpleNamespace(STRONGLY_TYPED=1)
    builder_flag = SimpleNamespace(FP16="FP16", TF32="TF32") if fp16_flag else SimpleNamespace(TF32="TF32")
    return SimpleNamespace(NetworkDefinitionCreationFlag=flags, BuilderFlag=builder_flag,
                           MemoryPoolType=SimpleNamespace(WORKSPACE="WORKSPACE"))


TRT85 = fake_trt(explicit_batch=True, fp16_flag=True)
TRT10 = fake_trt(explicit_batch=True, fp16_flag=True)
TRT11 = fake_trt(explicit_batch=False, fp16_flag=False)


class FakeConfig:
    def __init__(self) -> None:
        self.calls = []

    def set_memory_pool_limit(self, pool, size):
        self.calls.append(("pool", pool, size))

    def set_flag(self, flag):
        self.calls.append(("flag", flag))

    def add_optimization_profile(self, profile):
        self.calls.append(("profile", profile.shapes))

    def create_timing_cache(self, data):
        self.calls.append(("cache", data))
        return "cache"

    def set_timing_cache(self, cache, ignore_mismatch):
        self.calls.append(("set_cache", cache, ignore_mismatch))


class FakeProfile:
    def set_shape(self, name, lo, opt, hi):
        self.shapes = (name, lo, opt, hi)


class FakeBuilder:
    def __init__(self) -> None:
        self.config = FakeConfig()

    def create_builder_config(self):
        return self.config

    def create_optimization_profile(self):
        return FakeProfile()


def test_network_flags_by_feature():
    assert trt_export.network_flags(TRT85) == 1
    assert trt_export.network_flags(TRT11) == 0


def test_fp16_plan_per_version():
    assert trt_export.fp16_plan(TRT85, half=True, onnx_fp16=False) == (True, "fp16")
    assert trt_export.fp16_plan(TRT10, half=False, onnx_fp16=False) == (False, "fp32")
    assert trt_export.fp16_plan(TRT11, half=False, onnx_fp16=True) == (False, "fp16")
    assert trt_export.fp16_plan(TRT10, half=False, onnx_fp16=True) == (True, "fp16")
    with pytest.raises(ExportError, match="no FP16 builder flag .*--target trt --half"):
        trt_export.fp16_plan(TRT11, half=True, onnx_fp16=False)


def test_profile_shapes():
    assert trt_export.profile_shapes((1, 3, 320, 320)) is None
    assert trt_export.profile_shapes((-1, 3, 320, 320), min_batch=1, opt_batch=2, max_batch=8) == (
        (1, 3, 320, 320), (2, 3, 320, 320), (8, 3, 320, 320))
    assert trt_export.profile_shapes((-1, 3, 64, 64), max_batch=4)[1] == (4, 3, 64, 64)
    with pytest.raises(ValueError, match="min-batch <= opt-batch <= max-batch"):
        trt_export.profile_shapes((-1, 3, 64, 64), min_batch=4, max_batch=2)
    with pytest.raises(ValueError, match="only the batch axis may be dynamic"):
        trt_export.profile_shapes((-1, 3, -1, 64))


@pytest.mark.parametrize("trt,flags", [(TRT85, [("flag", "FP16")]), (TRT11, [])])
def test_configure(trt, flags):
    builder = FakeBuilder()
    profile = trt_export.profile_shapes((-1, 3, 64, 64), max_batch=4)
    config, precision = trt_export.configure(
        trt, builder, None, half=trt is TRT85, onnx_fp16=trt is TRT11, workspace_gb=2, profile=profile,
        input_name="images", timing_cache=b"old")
    assert precision == "fp16"
    assert config.calls[0] == ("pool", "WORKSPACE", 2 << 30)
    assert [c for c in config.calls if c[0] == "flag"] == flags
    assert ("profile", ("images", (1, 3, 64, 64), (4, 3, 64, 64), (4, 3, 64, 64))) in config.calls
    assert ("cache", b"old") in config.calls and ("set_cache", "cache", False) in config.calls


def test_engine_spec_records_version_gpu_profile():
    spec = ModelSpec(task="detect", names=("a",), imgsz=(64, 64), output_layout="boxes_scores",
                     output_names=("boxes", "scores"), target="onnx", batch=None)
    profile = ((1, 3, 64, 64), (2, 3, 64, 64), (4, 3, 64, 64))
    out = trt_export.engine_spec(spec, precision="fp16", trt_version="8.5.2.2", gpu="Orin", profile=profile)
    assert out.target == "tensorrt" and out.precision == "fp16"
    assert out.extra["tensorrt"] == "8.5.2.2" and out.extra["gpu"] == "Orin"
    assert out.extra["profile"]["max"] == [4, 3, 64, 64]


def test_build_engine_without_tensorrt(tmp_path):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"x")
    with pytest.raises(BackendUnavailableError, match="comes with JetPack"):
        trt_export.build_engine(onnx_file)


def test_trt_target_writes_ready_onnx_and_command(tmp_path, tiny_detector):
    results = export_targets(tiny_detector(), "trt", imgsz=64, dynamic=True, out=tmp_path, name="tiny")
    path = results[0].files[0]
    assert path.name == "tiny_trt.onnx" and sidecar_path(path).is_file()
    assert "lite-deploy build-engine tiny_trt.onnx --workspace 4 --min-batch 1 --opt-batch 4 --max-batch 4" in results[0].note
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain == ""] == [17]
    assert json.loads(sidecar_path(path).read_text())["batch"] is None


def test_trt_nms_uses_efficient_nms_plugin(tmp_path, tiny_detector):
    results = export_targets(tiny_detector(), "trt", imgsz=64, nms=True, max_det=50, conf=0.3, iou=0.5,
                             out=tmp_path, name="tiny")
    proto = onnx.load(str(results[0].files[0]))
    node = next(n for n in proto.graph.node if n.op_type == "EfficientNMS_TRT")
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    assert attrs == {"background_class": -1, "box_coding": 0, "iou_threshold": pytest.approx(0.5),
                     "max_output_boxes": 50, "plugin_version": b"1", "score_activation": 0,
                     "score_threshold": pytest.approx(0.3)}
    assert [o.name for o in proto.graph.output] == ["num_dets", "det_boxes", "det_scores", "det_classes"]
    assert ModelSpec.load(sidecar_path(results[0].files[0])).output_layout == "nms"
