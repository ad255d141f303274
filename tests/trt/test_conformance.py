"""Every TensorRT name lite-deploy uses exists in each TensorRT version whose code path uses it.

Two halves:

1. the build and run paths of every route (FP32, FP16, INT8 from Q/DQ, INT8 by calibration, with the
   EfficientNMS plugin, a failed parse, the layer profiler) run against each version's stand-in, generated from
   that version's API table: a name the version lacks raises AttributeError there, exactly as in TensorRT;
   every name used is recorded, and checked again against the table here;
2. an AST walk over ``lite_deploy/runtime/backends/tensorrt`` collects every ``trt.X.Y`` chain and every attribute
   accessed on any object that is a TensorRT class member name: each must have been exercised on some version
   in (1), so no TensorRT call in the package escapes the tables.

Deprecated names are allowed only where listed below (the calibrator and the precision flags of 10.x, which are
the only routes 10.x has for them).
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, Set

import numpy as np
import pytest
from fake_trt import VERSIONS, api_table

PACKAGE = Path(__file__).resolve().parents[2] / "lite_deploy" / "runtime" / "backends" / "tensorrt"
NMS_LAYERS = [("CONVOLUTION", ["FLOAT"]), ("PLUGIN_V2", ["INT32", "FLOAT", "FLOAT", "INT32"])]
IO = [("images", "INPUT", (-1, 3, 64, 64), "FLOAT"), ("boxes", "OUTPUT", (-1, 84, 4), "FLOAT"),
      ("scores", "OUTPUT", (-1, 84, 2), "HALF")]
# deprecated names each version's routes may use (10.x: implicit INT8 and the precision flags are deprecated but
# are its only way to reduce the precision of a weakly typed network)
ALLOWED_DEPRECATED = {
    "10.3": {"IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile",
             "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator2.__init__"},
    "10.16": {"IBuilderConfig.int8_calibrator", "IBuilderConfig.set_calibration_profile",
              "IInt8EntropyCalibrator2", "IInt8EntropyCalibrator2.__init__", "BuilderFlag.FP16", "BuilderFlag.INT8",
              "BuilderFlag.PREFER_PRECISION_CONSTRAINTS", "ILayer.precision", "ILayer.set_output_type"},
}


def run_every_route(version: str, use_trt, tmp_path: Path) -> Set[str]:
    """Run all routes this version has on its stand-in; the names they used."""
    from test_build import calibration_images, write_onnx
    from test_engine import write_engine

    from lite_deploy.errors import ExportError
    from lite_deploy.runtime.backends.tensorrt.build import build_engine, strongly_typed_only
    from lite_deploy.runtime.backends.tensorrt.engine import TensorRTRuntime

    used: Set[str] = set()
    strong = version.startswith("11.")
    for i, (precision, half, calib) in enumerate([("fp32", False, False), ("fp32", True, False),
                                                  ("fp16", False, False), ("int8", False, False),
                                                  ("fp32", False, True)]):
        if strong and (half or calib):
            continue
        trt = use_trt(version, input_shape=(-1, 3, 64, 64), layers=NMS_LAYERS, needs_plugins=True)
        folder = tmp_path / f"{version}-{i}"
        folder.mkdir()
        images = calibration_images(folder / "calib") if calib else None
        build_engine(write_onnx(folder, precision, nms=True), half=half, calib=images, max_batch=2, verify=False)
        assert strongly_typed_only(trt) == strong
        used |= trt.used
    trt = use_trt(version, parse_ok=False)
    with pytest.raises(ExportError, match="cannot parse"):
        build_engine(write_onnx(tmp_path), verify=False)
    used |= trt.used
    trt = use_trt(version, io=IO, needs_plugins=True)
    with TensorRTRuntime(write_engine(tmp_path, trt), profile=1, profiling=True) as rt:
        rt.infer(np.zeros((2, 3, 64, 64), np.float32))
    used |= trt.used
    return used


@pytest.fixture(scope="module")
def used_per_version(tmp_path_factory) -> Dict[str, Set[str]]:
    return {}


@pytest.mark.parametrize("version", VERSIONS)
def test_every_route_uses_only_names_the_version_has(version, use_trt, tmp_path, used_per_version):
    used = run_every_route(version, use_trt, tmp_path)
    used_per_version[version] = used
    table = api_table(version)
    deprecated = set()
    for name in used:
        parts = name.split(".")
        if parts[0] in table["classes"]:
            cls = table["classes"][parts[0]]
            assert len(parts) == 1 or parts[1] in cls["members"], name
            if cls.get("class_deprecated"):
                deprecated.add(parts[0] if len(parts) == 1 else name)
            if len(parts) == 2 and parts[1] in cls["deprecated"]:
                deprecated.add(name)
        elif parts[0] in table["enums"]:
            assert len(parts) == 1 or parts[1] in table["enums"][parts[0]], name
            if len(parts) == 2 and parts[1] in table["enum_deprecated"].get(parts[0], []):
                deprecated.add(name)
        else:
            assert parts[0] in table["functions"] or parts[0] in table["module_attributes"], name
    assert deprecated <= ALLOWED_DEPRECATED.get(version, set()), sorted(deprecated)


def package_names() -> Dict[str, Set[str]]:
    """``trt.*`` chains and the attribute names the package accesses on any object, per module."""
    chains: Set[str] = set()
    attributes: Set[str] = set()
    for path in PACKAGE.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute):
                parts, base = [node.attr], node.value
                while isinstance(base, ast.Attribute):
                    parts.insert(0, base.attr)
                    base = base.value
                if isinstance(base, ast.Name) and base.id == "trt":
                    chains.add(".".join(parts))
                attributes.add(node.attr)
    return {"chains": chains, "attributes": attributes}


def test_every_tensorrt_name_in_the_package_was_exercised(used_per_version):
    if len(used_per_version) < len(VERSIONS):
        pytest.skip("needs the per-version route runs above (run the whole module)")
    used = set().union(*used_per_version.values())
    names = package_names()
    assert len(names["chains"]) > 20, f"no trt names found under {PACKAGE}"
    used_chains = {".".join(name.split(".")[:k]) for name in used for k in range(1, len(name.split(".")) + 1)}
    unexercised = {c for c in names["chains"] if c not in used_chains and not c.startswith("__")}
    assert not unexercised, f"trt names never run against any version's table: {sorted(unexercised)}"
    members = {m for v in VERSIONS for c in api_table(v)["classes"].values() for m in c["members"]}
    used_members = {name.split(".")[-1] for name in used}
    # attributes of the package's own objects that happen to share a TensorRT member's name
    own = {"name", "shape", "dtype", "free", "close", "reset", "log", "get_batch", "get_batch_size",
           "read_calibration_cache", "write_calibration_cache", "report_layer_time", "images", "precision", "flags",
           "profile", "runs", "end_run", "stream_handle", "synchronize", "device_name", "compute_capability",
           "location", "metadata", "builder", "engine", "append", "clear", "pop", "remove", "data", "nbytes", "node",
           "major", "minor"}
    missing = {a for a in names["attributes"] & members if a not in used_members and a not in own}
    assert not missing, f"TensorRT members used in the package but never exercised: {sorted(missing)}"
