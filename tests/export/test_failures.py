"""Failure paths: every one ends in one clear sentence and leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lite_deploy.cli import main
from lite_deploy.errors import CheckpointError, ExportError, VerificationError
from lite_deploy.export.exporter import export, parse_targets, resolve_imgsz


class SvdHead(nn.Module):
    """A detector-shaped model whose last step calls an operator ONNX opset 17 cannot express."""

    task = "classify"
    names = {0: "a", 1: "b"}

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, 2, 1)
        self.odd = SvdBlock()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.conv(x))


class SvdBlock(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.svdvals(x.flatten(2))[..., :2].flatten(1)


def _left_over(out: Path) -> list:
    siblings = [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    return siblings + (list(out.iterdir()) if out.exists() else [])


def test_unknown_target():
    with pytest.raises(ValueError, match=r"unknown export target 'coreml': choose from onnx, openvino, tflite, trt or all"):
        parse_targets("onnx,coreml")
    assert parse_targets("all") == ["onnx", "openvino", "tflite", "trt"]
    assert parse_targets("tensorrt,onnx") == ["onnx", "trt"]


def test_unknown_target_cli(capsys):
    assert main(["export", "yolov5n", "--target", "coreml"]) == 2
    assert "unknown export target 'coreml'" in capsys.readouterr().err


def test_missing_weights(tmp_path):
    with pytest.raises(CheckpointError, match="weights file .*missing.pt' does not exist"):
        export(tmp_path / "missing.pt", "onnx", out=tmp_path / "out")
    with pytest.raises(CheckpointError, match="'no_such_model' is neither a weights file nor a bundled config"):
        export("no_such_model", "onnx", out=tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_weights_file(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        export(bad, "onnx", out=tmp_path / "out")


def test_imgsz_not_multiple_of_stride():
    with pytest.raises(ValueError, match="image size 100 is not a multiple of the model stride 32: use 96 or 128"):
        resolve_imgsz(100, 32)


def test_unconvertible_operator_names_op_and_module_and_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(ExportError) as info:
        export(SvdHead(), "onnx", imgsz=32, out=out, verify=False)
    message = str(info.value)
    assert "operator aten::linalg_svd" in message and "odd (SvdBlock)" in message and "opset 17" in message
    assert _left_over(out) == []


def test_failed_second_target_keeps_only_complete_first(tmp_path, tiny_detector):
    out = tmp_path / "out"
    with pytest.raises(ExportError, match="TFLite needs a fixed batch size"):
        export(tiny_detector(), "onnx,tflite", imgsz=64, dynamic=True, out=out)
    assert sorted(p.name for p in out.iterdir()) == ["tinydetector.onnx", "tinydetector.onnx.json"]
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


def test_verification_error_beyond_tolerance(tmp_path, tiny_detector):
    from lite_deploy.export.describe import describe
    from lite_deploy.export.onnx import save, torch_to_onnx
    from lite_deploy.export.verify import verify_artifact

    torch.manual_seed(0)
    model = tiny_detector().eval()
    spec = describe(model, imgsz=(64, 64), target="onnx")
    path = save(torch_to_onnx(model, torch.rand(1, 3, 64, 64), output_names=spec.output_names), tmp_path / "m.onnx", spec)
    with torch.no_grad():
        model.head.bias += 0.05  # the artifact now disagrees with "PyTorch"
    report = verify_artifact(path, model, spec)
    assert not report.ok and "scores differs" in " ".join(report.problems)
    with pytest.raises(VerificationError, match="disagrees with PyTorch beyond the fp32 tolerance"):
        report.raise_for_failure()


def test_opset_mismatch_is_refused(tiny_detector):
    from lite_deploy.export.onnx import check_opset, torch_to_onnx

    proto = torch_to_onnx(tiny_detector().eval(), torch.rand(1, 3, 32, 32), output_names=("boxes", "scores"), opset=16)
    check_opset(proto, 16)
    with pytest.raises(ExportError, match=r"wrote ONNX opset \[16\] instead of the requested 17"):
        check_opset(proto, 17)


def test_build_engine_without_tensorrt(tmp_path, capsys):
    onnx_file = tmp_path / "m.onnx"
    onnx_file.write_bytes(b"")
    assert main(["build-engine", str(onnx_file)]) == 2
    err = capsys.readouterr().err
    assert "TensorRT is not installed here: it comes with JetPack" in err and "build-engine" in err
    assert not np.any([p.suffix == ".engine" for p in tmp_path.iterdir()])


def test_public_api_is_callable_after_submodule_import(tmp_path, tiny_detector):
    import lite_deploy
    import lite_deploy.export.onnx  # noqa: F401  (binds the package as lite_deploy.export)

    paths = lite_deploy.export(tiny_detector(), target="onnx", imgsz=32, out=tmp_path, name="t", verify=False)
    assert paths == {"onnx": tmp_path / "t.onnx"} and (tmp_path / "t.onnx.json").is_file()
