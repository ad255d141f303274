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


def test_the_ir_is_nncf_s_with_the_tail_in_float(nncf_ir: Path) -> None:
    import openvino as ov

    from lite_deploy.quantize.openvino_int8 import fake_quantize_count

    model = ov.Core().read_model(str(nncf_ir))
    assert fake_quantize_count(model) > 20
    assert model.has_rt_info(["nncf"])  # NNCF records its quantization parameters in rt_info
    convs = [op for op in model.get_ops() if op.get_type_name() == "Convolution"]
    fed_by_fq = [op for op in convs
                 if op.input_value(0).get_node().get_type_name() == "FakeQuantize"]
    assert len(convs) - len(fed_by_fq) >= 3  # the head's three output convolutions take float input


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
