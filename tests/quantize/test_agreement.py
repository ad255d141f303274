"""INT8 calibrated from an image folder, without labels, is judged by agreement with the FP32 model."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from lite_deploy.assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ, demo_weights
from lite_deploy.errors import VerificationError
from lite_deploy.quantize.agreement import held_out_images
from lite_deploy.quantize.gate import Limits, enforce

CALIB = 24  # calibration images (of 40 in the folder): 16 are held out for the agreement


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of 40 unlabelled shapes images at the demo's data size."""
    from lite_deploy.data.shapes import generate_shapes

    data = generate_shapes(tmp_path_factory.mktemp("agree"), train=40, val=1, seed=11, imgsz=DEMO_DATA_IMGSZ,
                           progress=False)
    return data.parent / "images" / "train"


def test_held_out_images_are_the_ones_calibration_did_not_use(folder: Path, tmp_path: Path) -> None:
    images = sorted(folder.iterdir())
    used = images[:CALIB]
    held = held_out_images(folder, used, size=10)
    assert len(held) == 10 and not set(held) & set(used) and set(held) <= set(images)
    assert held == held_out_images(folder, used, size=10)  # the same sample every time
    assert held_out_images(folder, images) == images  # all used: judged on them (with a warning)


def test_folder_int8_is_judged_by_agreement_and_its_verdict_enforced(folder: Path, tmp_path: Path) -> None:
    from lite_deploy.export.exporter import export_targets

    common = dict(imgsz=DEMO_IMGSZ, precision="int8", calib=str(folder), calib_size=CALIB)
    result, = export_targets(demo_weights(), "onnx", out=tmp_path / "ok", **common)
    gate = result.gate
    assert result.ok and gate is not None and gate.basis == "agreement with FP32"
    assert 0.5 < gate.reference.map50 <= 1.0  # FP32 against its own confident detections: high, not exactly 1
    assert 0.0 <= gate.drop50 < 5.0, gate.line()  # the bundled demo's INT8 agrees with its FP32 model
    # its verdict is enforced like a labelled one: a limit just under the measured drop trips, just over passes
    with pytest.raises(VerificationError, match="agreement with FP32"):
        enforce(dataclasses.replace(gate, limits=Limits(map50_95=gate.drop - 0.01)))
    enforce(dataclasses.replace(gate, limits=Limits(map50_95=gate.drop + 0.01)))
    assert "agreement with FP32" in gate.line() and result.files[0].is_file()
