"""OpenVINO INT8: NNCF's IR, checked in a child process before it is kept; the Q/DQ IR where it does not compile."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest

IMGSZ = 96


@pytest.fixture(scope="module")
def nncf_ir(tmp_path_factory: pytest.TempPathFactory, gsconv_pt: Path, shapes_yaml: Path) -> Path:
    from lite_deploy.export.exporter import export

    out = tmp_path_factory.mktemp("ov_int8")
    paths = export(gsconv_pt, "openvino", imgsz=IMGSZ, precision="int8", calib=shapes_yaml, calib_size=20, out=out)
    return paths["openvino"]


def _fed_by_fake_quantize(model, op_type: str) -> tuple:
    """(ops of ``op_type``, those whose first input comes from a FakeQuantize)."""
    ops = [op for op in model.get_ops() if op.get_type_name() == op_type]
    return ops, [op for op in ops if op.input_value(0).get_node().get_type_name() == "FakeQuantize"]


def _int8_heads(model, fp32_onnx: Path) -> tuple:
    """(the head's last convolutions in the IR, those with int8 input)."""
    import onnx

    from lite_deploy.quantize.qdq_onnx import decode_nodes

    names = {f"{name}/WithoutBiases" for name in decode_nodes(onnx.load(str(fp32_onnx)))[1]}
    convs, int8_convs = _fed_by_fake_quantize(model, "Convolution")
    return ([op for op in convs if op.get_friendly_name() in names],
            [op for op in int8_convs if op.get_friendly_name() in names])


def test_the_ir_is_nncf_s_with_the_decode_in_float(nncf_ir: Path, gsconv_fp32: Path) -> None:
    import openvino as ov

    from lite_deploy.quantize.openvino_int8 import fake_quantize_count

    model = ov.Core().read_model(str(nncf_ir))
    assert fake_quantize_count(model) > 20
    assert model.has_rt_info(["nncf"])  # NNCF records its quantization parameters in rt_info
    heads, int8_heads = _int8_heads(model, gsconv_fp32)
    assert len(heads) == 3 and len(int8_heads) == 3  # their outputs stay float
    sigmoids, int8_sigmoids = _fed_by_fake_quantize(model, "Sigmoid")
    assert sigmoids and not int8_sigmoids  # the decode


def test_the_fallback_puts_the_heads_in_float_first(tmp_path: Path, gsconv_fp32: Path, calib_images: list) -> None:
    import openvino as ov

    from lite_deploy.export.targets.openvino import _int8_ir
    from lite_deploy.runtime.calibration import CalibrationSet
    from lite_deploy.runtime.registry import load_spec

    spec = load_spec(gsconv_fp32)

    class Job:  # what _int8_ir asks of an export job
        stem = "gs"

        def reference(self):
            return gsconv_fp32, spec

        def calibration(self, reference_spec):
            return CalibrationSet(calib_images, reference_spec)

    int8 = spec.replace(target="openvino", precision="int8")
    first = ov.Core().read_model(str(_int8_ir(Job(), tmp_path / "first.xml", int8, [])))
    assert [len(ops) for ops in _int8_heads(first, gsconv_fp32)] == [3, 3]
    layer = "/model.0/conv/Conv"  # the layer a fallback keeps in float
    fallback = ov.Core().read_model(str(_int8_ir(Job(), tmp_path / "fallback.xml", int8, [layer])))
    assert [len(ops) for ops in _int8_heads(fallback, gsconv_fp32)] == [3, 0]
    first_int8, fallback_int8 = ({op.get_friendly_name() for op in _fed_by_fake_quantize(ir, "Convolution")[1]}
                                 for ir in (first, fallback))
    assert layer + "/WithoutBiases" in first_int8 and layer + "/WithoutBiases" not in fallback_int8


def test_compiles_is_false_for_an_ir_openvino_cannot_compile(nncf_ir: Path, tmp_path: Path) -> None:
    from lite_deploy.quantize.openvino_int8 import compiles

    assert compiles(nncf_ir)
    broken = tmp_path / "broken.xml"
    broken.write_text(nncf_ir.read_text()[:2000])
    assert not compiles(broken)


def test_an_ir_that_does_not_compile_is_replaced_by_the_qdq_one(tmp_path: Path, gsconv_pt: Path, shapes_yaml: Path,
                                                                 monkeypatch, caplog) -> None:
    import lite_deploy.quantize.openvino_int8 as openvino_int8
    from lite_deploy.export.exporter import export
    from lite_deploy.runtime import load_runtime

    monkeypatch.setattr(openvino_int8, "compiles", lambda xml_path: False)
    with caplog.at_level(logging.WARNING):
        xml = export(gsconv_pt, "openvino", imgsz=IMGSZ, precision="int8", calib=shapes_yaml, calib_size=20,
                     out=tmp_path)["openvino"]
    assert "does not compile NNCF's INT8 IR" in caplog.text
    import openvino as ov

    model = ov.Core().read_model(str(xml))
    assert not model.has_rt_info(["nncf"]) and openvino_int8.fake_quantize_count(model) > 20
    with load_runtime(xml) as runtime:
        blob = np.random.default_rng(0).random((1, 3, IMGSZ, IMGSZ), np.float32)
        assert np.isfinite(runtime.infer(blob)["scores"]).all()


def test_exports_send_no_telemetry(monkeypatch) -> None:
    """OpenVINO's converter and NNCF post usage events unless told not to; an OpenVINO export tells them."""
    from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker

    from lite_deploy.export.targets.openvino import offline

    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("NNCF_CI", raising=False)
    monkeypatch.setattr(OptInChecker, "check", OptInChecker.check)  # restored after the test
    offline()
    assert OptInChecker().check(enable_opt_in_dialog=False, disable_in_ci=True) == ConsentCheckResult.DECLINED
    assert os.environ["NNCF_CI"] == "1"
