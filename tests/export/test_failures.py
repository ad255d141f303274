"""Failure paths: every one ends in one clear sentence and leaves no file behind."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from lite_deploy.cli import main
from lite_deploy.errors import CheckpointError, ExportError, VerificationError
from lite_deploy.export.exporter import export
from lite_deploy.export.options import ExportOptions
from lite_deploy.export.prepare import resolve_options
from lite_deploy.export.targets import resolve_targets


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
    with pytest.raises(ValueError,
                       match=r"unknown export target 'coreml': choose from onnx, openvino, tflite, trt or all"):
        resolve_targets("onnx,coreml")
    assert resolve_targets("all") == ["onnx", "openvino", "tflite", "trt"]
    assert resolve_targets("tensorrt,onnx") == ["onnx", "trt"]


def test_unknown_target_cli_is_refused_before_the_model_loads(capsys, monkeypatch):
    from lite_deploy.export import exporter

    def no_model(weights):
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(exporter, "load_weights", no_model)
    assert main(["export", "yolov5n", "--target", "coreml"]) == 2
    assert "unknown export target 'coreml'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown export target"):
        export("yolov5n", "onnx,coreml")


def test_options_are_declared_once():
    with pytest.raises(TypeError, match="unknown export option.*half"):
        export("yolov5n", "onnx", half=True)
    with pytest.raises(ValueError, match="precision must be one of fp32, fp16, int8, got 'int4'"):
        export("yolov5n", "onnx", precision="int4")
    base = ExportOptions(imgsz=320, precision="fp16")
    assert ExportOptions.build(base, nms=True) == ExportOptions(imgsz=320, precision="fp16", nms=True)
    assert base.tag == "_fp16" and ExportOptions(precision="int8", nms=True).tag == "_int8_nms"
    assert ExportOptions(dynamic=True, batch=4).input_batch is None


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


def test_imgsz_not_multiple_of_stride(tiny_detector):
    model = tiny_detector()
    model.stride = torch.tensor([32.0])
    with pytest.raises(ValueError, match="image size 100 is not a multiple of the model stride 32: use 96 or 128"):
        resolve_options(ExportOptions(imgsz=100), model)
    assert resolve_options(ExportOptions(imgsz=(96, 128)), model).imgsz == (96, 128)


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
    proto = torch_to_onnx(model, torch.rand(1, 3, 64, 64), output_names=spec.output_names)
    path = save(proto, tmp_path / "m.onnx", spec)
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


# ---------------------------------------------------------------- atomic multi-file commits, stale staging folders
def _fail_renames_into(monkeypatch, folder: Path, after: int) -> None:
    """Make ``os.replace`` into ``folder`` fail (as a crash would stop it) after ``after`` renames."""
    import os

    real, done = os.replace, []

    def replace(src, dst, *args, **kwargs):
        if Path(dst).parent == folder:
            if len(done) >= after:
                raise OSError("simulated crash")
            done.append(dst)
        return real(src, dst, *args, **kwargs)

    monkeypatch.setattr(os, "replace", replace)


@pytest.mark.parametrize("after", [1, 2])
def test_interrupted_openvino_reexport_is_refused_on_load(tmp_path, tiny_detector, monkeypatch, after):
    from lite_deploy.errors import ArtifactMismatchError
    from lite_deploy.runtime import load_runtime

    out = tmp_path / "out"
    torch.manual_seed(0)
    first = export(tiny_detector(), "openvino", imgsz=64, out=out, name="m")["openvino"]
    with load_runtime(first):
        pass
    torch.manual_seed(1)  # the same architecture, other weights: .bin of the same size, another hash
    with monkeypatch.context() as m:
        _fail_renames_into(m, out, after)
        with pytest.raises(OSError, match="simulated crash"):
            export(tiny_detector(), "openvino", imgsz=64, out=out, name="m")
    with pytest.raises(ArtifactMismatchError, match=r"m\.(xml|bin) has another SHA-256 than m\.xml\.json records.*"
                                                    r"export it again"):
        load_runtime(first)
    assert main(["predict", str(first), "--source", str(tmp_path)]) == 2  # one error: line, no traceback


def test_size_mismatch_and_older_sidecars(tmp_path, tiny_detector):
    import json

    from lite_deploy.errors import ArtifactMismatchError
    from lite_deploy.runtime import load_runtime

    path = export(tiny_detector(nc=3), "onnx", imgsz=32, out=tmp_path, name="m", verify=False)["onnx"]
    sidecar = json.loads((tmp_path / "m.onnx.json").read_text())
    assert set(sidecar["files"]) == {".onnx"} and sidecar["files"][".onnx"]["size"] == path.stat().st_size
    other = export(tiny_detector(nc=5), "onnx", imgsz=32, out=tmp_path / "b", name="m", verify=False)["onnx"]
    other.replace(path)  # another model under this sidecar
    with pytest.raises(ArtifactMismatchError, match=r"m\.onnx has \d+ bytes where m\.onnx\.json records \d+"):
        load_runtime(path)
    del sidecar["files"]  # an export from before the record, or a hand-written sidecar: loads as before
    (tmp_path / "m.onnx.json").write_text(json.dumps(sidecar))
    with load_runtime(path) as rt:
        assert rt.spec.nc == 3


def _export_killed_while_verifying(out: Path, sig: int) -> int:
    """Run an export into ``out`` in a child process, send it ``sig`` once its unverified ONNX is staged, and
    return its exit status."""
    import subprocess
    import sys
    import time

    script = (
        "import sys, time, torch; sys.path.insert(0, sys.argv[2]); from conftest import tiny_detector_class\n"
        "from lite_deploy.export import exporter\n"
        "exporter.Job.verify = lambda *a: time.sleep(120)  # stopped while verifying\n"
        "exporter.export(tiny_detector_class()(), 'trt', imgsz=32, out=sys.argv[1], name='m')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script, str(out), str(Path(__file__).parents[1])])
    try:
        deadline = time.monotonic() + 120
        while not list(out.parent.glob(f".{out.name}.staging.*/m_trt.onnx")) and time.monotonic() < deadline:
            assert proc.poll() is None, "the export ended before it was stopped"
            time.sleep(0.2)
    finally:
        proc.send_signal(sig)
        code = proc.wait()
    return code


def test_killed_export_leaves_staging_that_the_next_export_removes(tmp_path, tiny_detector):
    import os
    import signal

    out = tmp_path / "out"
    assert _export_killed_while_verifying(out, signal.SIGKILL) == -signal.SIGKILL
    left = list(tmp_path.glob(".out.staging.*/m_trt.onnx"))
    assert len(left) == 1 and not out.exists()  # an unverified artifact, hidden beside the output folder
    running = tmp_path / f".out.staging.{os.getppid()}.abcd1234"  # a live process's: not touched
    running.mkdir()
    export(tiny_detector(), "onnx", imgsz=32, out=out, name="m", verify=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == [running.name, "out"]
    assert sorted(p.name for p in out.iterdir()) == ["m.onnx", "m.onnx.json"]


def test_terminated_export_removes_its_staging(tmp_path):
    import signal

    out = tmp_path / "out"
    assert _export_killed_while_verifying(out, signal.SIGTERM) == 128 + signal.SIGTERM
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- each target on its own
def test_one_failing_target_does_not_stop_the_others(tmp_path, tiny_detector, monkeypatch, capsys):
    from lite_deploy.export import exporter
    from lite_deploy.export.targets.openvino import OpenVINO
    from lite_deploy.runtime import load_runtime

    def broken(self, job):
        raise ExportError("OpenVINO cannot convert m.onnx: simulated")

    torch.manual_seed(0)
    monkeypatch.setattr(exporter, "load_weights", lambda weights: (tiny_detector(), None))
    monkeypatch.setattr(OpenVINO, "build", broken)
    out = tmp_path / "out"
    code = main(["export", "tiny", "--target", "onnx,openvino,tflite", "--imgsz", "64", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 2
    assert "error: openvino: OpenVINO cannot convert m.onnx: simulated" in captured.err
    rows = {line.split()[0]: line for line in captured.out.splitlines()[1:] if line.strip()}
    assert "FAILED" in rows["openvino"] and rows["tflite"].endswith("tiny.tflite")
    assert sorted(p.name for p in out.iterdir()) == ["tiny.onnx", "tiny.onnx.json", "tiny.tflite", "tiny.tflite.json"]
    for name in ("tiny.onnx", "tiny.tflite"):
        with load_runtime(out / name) as rt:
            assert rt.spec.output_names == ("boxes", "scores")
    assert [p for p in tmp_path.iterdir() if p.name.startswith(".out.")] == []


# ---------------------------------------------------------------- verification: near-ties pass, real errors fail
class FixedOutputs(nn.Module):
    """A detector whose outputs are given: boxes (1, N, 4) xyxy px and scores (1, N, 2), whatever the image."""

    task = "detect"
    names = {0: "star", 1: "ring"}

    def __init__(self, boxes: list, scores: list) -> None:
        super().__init__()
        self.stride = torch.tensor([8.0])
        self.register_buffer("boxes", torch.tensor([boxes], dtype=torch.float32))
        self.register_buffer("scores", torch.tensor([scores], dtype=torch.float32))

    def forward(self, x: torch.Tensor):
        zero = x.mean() * 0
        return self.boxes + zero, self.scores + zero


def test_fp16_near_tie_passes_verification(tmp_path):
    """Issue 17's case: a star/ring near-tie flips in FP16, and as a ring the box is suppressed by a ring above it."""
    from lite_deploy.export.describe import describe
    from lite_deploy.export.onnx import save, torch_to_onnx
    from lite_deploy.export.verify import verify_artifact

    boxes = [[10, 10, 50, 50], [10, 20, 50, 60], [80, 80, 120, 120], [0, 100, 20, 120]]  # 0 and 1: IoU 0.6
    torch_scores = [[0.08482, 0.08475], [0.0, 0.5], [0.3, 0.0], [0.01, 0.0]]
    fp16_scores = [[0.08487, 0.08488], [0.0, 0.5], [0.3, 0.0], [0.01, 0.0]]
    artifact_model = FixedOutputs(boxes, fp16_scores)
    spec = describe(artifact_model, imgsz=(128, 128), target="onnx")
    path = save(torch_to_onnx(artifact_model, torch.rand(1, 3, 128, 128), output_names=spec.output_names),
                tmp_path / "m.onnx", spec)
    report = verify_artifact(path, FixedOutputs(boxes, torch_scores).eval(), spec.replace(precision="fp16"))
    assert report.ok, report.table()
    assert [(m.reference, m.artifact) for m in report.detections] == [(4, 3), (4, 3)]  # the box really went missing


def test_near_tie_excuse_needs_the_candidate_within_tolerance():
    from lite_deploy.runtime.compare import pair_detections

    box = np.array([[10.0, 10, 50, 50]])
    reference = (box, np.array([0.08482]), np.array([0]))
    nothing = (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int))
    close = (box, np.array([[0.08487, 0.08488]]))
    far = (box, np.array([[0.05, 0.08488]]))  # the artifact scores that star far lower: a real difference
    kwargs = dict(iou=0.9, conf=0.01, margin=0.005)
    assert pair_detections(reference, nothing, artifact_candidates=close, **kwargs).missing == 0
    assert pair_detections(reference, nothing, artifact_candidates=far, **kwargs).missing == 1
    assert pair_detections(reference, nothing, **kwargs).missing == 1


def test_planted_wrong_weight_fails_fp16_verification(tmp_path, yolov5n_pt):
    from lite_deploy.export.exporter import load_weights
    from lite_deploy.export.verify import verify_artifact
    from lite_deploy.models.deploy import prepare_for_export
    from lite_deploy.spec import ModelSpec, sidecar_path

    path = export(yolov5n_pt, "onnx", imgsz=64, precision="fp16", out=tmp_path, name="m")["onnx"]  # passes as exported
    spec = ModelSpec.load(sidecar_path(path))
    model = prepare_for_export(load_weights(yolov5n_pt)[0])
    assert spec.precision == "fp16" and verify_artifact(path, model, spec).ok
    conv = [m for m in model.modules() if isinstance(m, nn.Conv2d)][10]
    with torch.no_grad():
        conv.weight.mul_(-1)  # one wrong convolution in the middle of the network
    report = verify_artifact(path, model, spec)
    assert not report.ok
    assert any("PyTorch detections unmatched" in p for p in report.problems)  # the near-tie excuse does not hide it
    with pytest.raises(VerificationError, match="beyond the fp16 tolerance"):
        report.raise_for_failure()


# ---------------------------------------------------------------- targets declared once
def test_a_new_target_is_one_class_and_one_registry_line(tmp_path, tiny_detector, monkeypatch):
    """A target states its constraints as data and builds through the job; registering it is all export needs."""
    from lite_deploy.export import targets
    from lite_deploy.export.targets.base import Built, Target

    class PlainONNX(Target):
        name, spec_target, suffix = "plain", "onnx", ".plain.onnx"
        precisions, nms = ("fp32",), False

        def build(self, job):
            spec = job.spec(self.spec_target, tools=job.onnx_tools())
            path = job.write_onnx(job.staged(self.filename(job.stem, job.options)), spec, nms=False, half=False)
            path, seconds, gate = job.judged(path, spec)
            return Built([([path], spec)], seconds, "", gate)

    monkeypatch.setitem(targets.REGISTRY, "plain", PlainONNX)
    monkeypatch.setattr(targets, "TARGET_NAMES", (*targets.TARGET_NAMES, "plain"))
    torch.manual_seed(0)
    assert export(tiny_detector(), "plain", imgsz=32, out=tmp_path, name="t") == {"plain": tmp_path / "t.plain.onnx"}
    assert (tmp_path / "t.plain.onnx.json").is_file()
    with pytest.raises(ExportError, match="plain exports fp32, not fp16"):
        export(tiny_detector(), "plain", imgsz=32, out=tmp_path / "b", precision="fp16")
    with pytest.raises(ExportError, match="in-graph NMS is not available for PlainONNX"):
        export(tiny_detector(), "plain", imgsz=32, out=tmp_path / "b", nms=True)


def test_target_constraints_are_data():
    from lite_deploy.export.targets import REGISTRY

    assert {name: (t.fixed_batch, t.nms, t.int8_nms, t.max_opset) for name, t in REGISTRY.items()} == {
        "onnx": (False, True, False, None), "openvino": (False, True, False, None),
        "tflite": (True, False, False, None), "trt": (False, True, True, 17)}
    assert {t.spec_target for t in REGISTRY.values()} == {"onnx", "openvino", "tflite", "tensorrt"}
    with pytest.raises(ExportError, match="TFLite needs a fixed batch size"):
        REGISTRY["tflite"].check(ExportOptions(dynamic=True))
    with pytest.raises(ExportError, match="--int8 with --nms is TensorRT-only"):
        REGISTRY["openvino"].check(ExportOptions(precision="int8", nms=True))
    REGISTRY["trt"].check(ExportOptions(precision="int8", nms=True))
