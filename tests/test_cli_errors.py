"""Every CLI command on a corpus of bad inputs: exit status 2, one ``error:`` line, no traceback, nothing written.

The corpus (missing, empty, truncated and wrong-type files, sidecars of the wrong JSON types, bad numbers, bad
targets) is made once per session, torch-free and small: a real ONNX model and a real OpenVINO IR are built from
their own APIs (so the truncated/corrupt copies fail inside the backends), and the one real checkpoint is the
shared YOLOv5n fixture. Commands run in-process through :func:`lite_deploy.cli.main`; two run through the real
``python -m lite_deploy.cli`` entry point.

Cases marked ``held`` already gave one ``error:`` line before the validated argparse types, the backend load errors
and the spec field checks; every other case gave a traceback, argparse's usage text or exit status 0/1 before them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, NamedTuple, Optional

import numpy as np
import pytest

from lite_deploy.cli import main
from lite_deploy.spec import SPEC_KEY, ModelSpec, sidecar_path

REPO = Path(__file__).resolve().parents[1]


class Case(NamedTuple):
    """One bad invocation: ``argv`` with ``{name}`` placeholders filled from the corpus, and its output path."""

    argv: str
    out: Optional[str] = None  # corpus-relative path the command would write; it must not exist afterwards
    held: bool = False  # already one error line before the validated arguments and backend errors: a regression guard


def _spec() -> ModelSpec:
    return ModelSpec(task="detect", names=("a", "b"), imgsz=(32, 32), output_layout="boxes_scores",
                     output_names=("boxes", "scores"))


def _onnx_model(path: Path, metadata: Optional[Dict[str, str]] = None) -> None:
    """A real one-node ONNX model (images (1, 3, 32, 32) -> its negation), written with onnx's own helpers."""
    from onnx import TensorProto, helper, save

    graph = helper.make_graph(
        [helper.make_node("Neg", ["images"], ["out"])], "g",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 3, 32, 32])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, metadata or {})
    save(model, str(path))


def _openvino_pair(xml: Path) -> None:
    """A real OpenVINO IR (``.xml`` + ``.bin``) with 4 KB of weights, so a cut ``.bin`` is shorter than declared."""
    import openvino as ov
    import openvino.opset8 as ops

    images = ops.parameter([1, 3, 32, 32], np.float32, name="images")
    weights = ops.constant(np.ones((1, 3, 32, 32), np.float32))
    ov.save_model(ov.Model([ops.multiply(images, weights)], [images], "m"), str(xml), compress_to_fp16=False)


@pytest.fixture(scope="session")
def corpus(tmp_path_factory, yolov5_fixtures: Path) -> Dict[str, str]:
    """Name -> path of every bad (and the few good) input files."""
    root = tmp_path_factory.mktemp("bad_inputs")
    files: Dict[str, Path] = {"root": root, "missing_pt": root / "absent.pt", "missing_onnx": root / "absent.onnx",
                              "missing_yaml": root / "absent.yaml"}
    pt = yolov5_fixtures / "yolov5n-v7-nc80.pt"
    files["pt"] = pt
    (root / "text.pt").write_text("these are not weights\n")
    files["text_pt"] = root / "text.pt"
    (root / "half.pt").write_bytes(pt.read_bytes()[: pt.stat().st_size // 2])
    files["truncated_pt"] = root / "half.pt"
    (root / "empty.onnx").write_bytes(b"")
    files["empty_onnx"] = root / "empty.onnx"
    (root / "random.onnx").write_bytes(np.random.default_rng(0).bytes(4096))
    files["random_onnx"] = root / "random.onnx"
    good = root / "good.onnx"
    _onnx_model(good)
    _spec().save(sidecar_path(good))
    files["good_onnx"] = good
    _onnx_model(root / "bare.onnx")  # a valid model that says nothing of what it is (no sidecar, no metadata)
    files["bare_onnx"] = root / "bare.onnx"
    _onnx_model(root / "embedded.onnx", {SPEC_KEY: json.dumps(dict(_spec().to_dict(), names="ab"))})
    files["embedded_bad_spec"] = root / "embedded.onnx"
    (root / "cut.onnx").write_bytes(good.read_bytes()[:40])
    files["truncated_onnx"] = root / "cut.onnx"
    # a valid model whose sidecar is valid JSON of the wrong types, and one whose sidecar is not JSON
    for name, text in (("wrongtypes", json.dumps(dict(_spec().to_dict(), imgsz="32x32", stride="32"))),
                       ("notjson", '{"task": "detect", "names": [')):
        model = root / f"{name}.onnx"
        model.write_bytes(good.read_bytes())
        sidecar_path(model).write_text(text)
        files[f"{name}_sidecar"] = model
    # a TFLite FlatBuffer cut after its header (root offset + "TFL3" identifier)
    (root / "cut.tflite").write_bytes(b"\x1c\x00\x00\x00TFL3" + bytes(24))
    files["truncated_tflite"] = root / "cut.tflite"
    xml = root / "ov" / "m.xml"
    _openvino_pair(xml)
    bin_path = xml.with_suffix(".bin")
    bin_path.write_bytes(bin_path.read_bytes()[:100])
    files["truncated_bin"] = xml
    (root / "img").mkdir()
    import cv2

    cv2.imwrite(str(root / "img" / "a.jpg"), np.full((32, 32, 3), 128, np.uint8))
    files["image"] = root / "img" / "a.jpg"
    (root / "nc_six.yaml").write_text(f"path: {root}\ntrain: img\nval: img\nnc: six\nnames: [a, b, c, d, e, f]\n")
    files["nc_six_yaml"] = root / "nc_six.yaml"
    files["not_dir"] = root / "text.pt" / "out"  # an output path under a file: the system refuses to create it
    return {k: str(v) for k, v in files.items()}


# (command, argv template, output that must not appear): every command, each on files and numbers it must refuse
CASES: List[Case] = [
    # info
    Case("info {missing_pt}", held=True),
    Case("info {text_pt}", held=True),
    Case("info {truncated_pt}", held=True),
    Case("info {random_onnx}"),
    Case("info {empty_onnx}"),
    Case("info {missing_onnx}"),
    Case("info {truncated_onnx}"),
    Case("info {truncated_tflite}"),
    Case("info {truncated_bin}"),
    Case("info {wrongtypes_sidecar}"),
    Case("info {notjson_sidecar}"),
    Case("info {bare_onnx}"),
    Case("info {embedded_bad_spec}"),
    Case("info yolov5n --imgsz 0"),
    Case("info yolov5n --imgsz 320 -1"),
    # dataset
    Case("dataset check {nc_six_yaml}"),
    Case("dataset check {missing_yaml}", held=True),
    Case("dataset shapes {root}/shapes_out --imgsz 0", "shapes_out"),
    Case("dataset shapes {root}/shapes_out --train 0", "shapes_out"),
    Case("dataset shapes {root}/shapes_out --imgsz 64 96", "shapes_out"),
    Case("dataset shapes-cls {root}/shapes_out --val -3", "shapes_out"),
    Case("dataset shapes {not_dir} --train 2 --val 1 --imgsz 64"),
    # val
    Case("val {missing_onnx} --data {nc_six_yaml}"),
    Case("val {random_onnx} --data {nc_six_yaml}"),
    Case("val {pt} --data {nc_six_yaml}"),
    Case("val {pt} --data {missing_yaml}", held=True),
    Case("val {pt} --data {nc_six_yaml} --conf 1.5"),
    Case("val {pt} --data {nc_six_yaml} --iou -1"),
    Case("val {pt} --data {nc_six_yaml} --imgsz 0"),
    Case("val {pt} --data {nc_six_yaml} --batch 0"),
    Case("val {pt} --data {nc_six_yaml} --json --out {root}/val_out", "val_out"),
    # train
    Case("train --cfg yolov5n --data {nc_six_yaml} --epochs 1 --project {root}/train_out", "train_out"),
    Case("train --cfg yolov5n --data {missing_yaml} --project {root}/train_out", "train_out", held=True),
    Case("train --cfg yolov5n --data {nc_six_yaml} --epochs 0 --project {root}/train_out", "train_out"),
    Case("train --cfg yolov5n --data {nc_six_yaml} --imgsz 0 --project {root}/train_out", "train_out"),
    Case("train --cfg yolov5n --data {nc_six_yaml} --batch 0 --project {root}/train_out", "train_out"),
    Case("train --weights {text_pt} --data {nc_six_yaml} --project {root}/train_out", "train_out", held=True),
    # export
    Case("export {missing_pt} --out {root}/export_out", "export_out", held=True),
    Case("export {text_pt} --out {root}/export_out", "export_out", held=True),
    Case("export {truncated_pt} --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --target coreml --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --imgsz 0 --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --nms --conf 1.5 --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --nms --iou -1 --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --batch 0 --out {root}/export_out", "export_out", held=True),
    Case("export {pt} --int8 --calib {root}/absent_images --out {root}/export_out", "export_out", held=True),
    # check
    Case("check {missing_onnx} --target trt10", held=True),
    Case("check {good_onnx} --target coreml"),
    # build-engine
    Case("build-engine {missing_onnx} --out {root}/engine_out", "engine_out", held=True),
    Case("build-engine {good_onnx} --min-batch 0 --out {root}/engine_out", "engine_out", held=True),
    Case("build-engine {good_onnx} --workspace -1 --out {root}/engine_out", "engine_out", held=True),
    # predict
    Case("predict {missing_onnx} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {random_onnx} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {empty_onnx} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {truncated_onnx} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {truncated_tflite} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {truncated_bin} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {wrongtypes_sidecar} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {notjson_sidecar} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {bare_onnx} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {embedded_bad_spec} --source {image} --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {root}/absent.jpg --json --out {root}/pred_out", "pred_out", held=True),
    Case("predict {good_onnx} --source {image} --conf 1.5 --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {image} --iou -1 --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {image} --imgsz 0 --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {image} --max-det 0 --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {image} --imgsz 32 32 32 --json --out {root}/pred_out", "pred_out"),
    Case("predict {good_onnx} --source {root}/absent_folder/*.jpg --json --out {root}/pred_out", "pred_out"),
    # profile
    Case("profile {missing_onnx} --json --out {root}/prof_out", "prof_out", held=True),
    Case("profile {random_onnx} --json --out {root}/prof_out", "prof_out"),
    Case("profile {truncated_tflite} --json --out {root}/prof_out", "prof_out"),
    Case("profile {truncated_bin} --json --out {root}/prof_out", "prof_out"),
    Case("profile {wrongtypes_sidecar} --json --out {root}/prof_out", "prof_out"),
    Case("profile {bare_onnx} --json --out {root}/prof_out", "prof_out"),
    Case("profile {embedded_bad_spec} --json --out {root}/prof_out", "prof_out"),
    Case("profile {text_pt} --json --out {root}/prof_out", "prof_out", held=True),
    Case("profile {good_onnx} --runs 0 --json --out {root}/prof_out", "prof_out", held=True),
    Case("profile {good_onnx} --warmup -1 --json --out {root}/prof_out", "prof_out", held=True),
    Case("profile {good_onnx} --imgsz 0 --json --out {root}/prof_out", "prof_out"),
    Case("profile {good_onnx} --threads 0 --json --out {root}/prof_out", "prof_out"),
    # benchmark
    Case("benchmark {missing_pt} --out {root}/bench_out", "bench_out", held=True),
    Case("benchmark {text_pt} --target onnx --precision fp32 --out {root}/bench_out", "bench_out", held=True),
    Case("benchmark {pt} --imgsz 0 --out {root}/bench_out", "bench_out"),
    Case("benchmark {pt} --calib-size 0 --out {root}/bench_out", "bench_out"),
    Case("benchmark {pt} --threads -2 --out {root}/bench_out", "bench_out"),
    # demo
    Case("demo --weights {missing_pt} --out {root}/demo_out", "demo_out"),
    Case("demo --weights {text_pt} --out {root}/demo_out", "demo_out"),
    # predict: the stream loop's options and outputs (the former run command)
    Case("predict {good_onnx} --source {image} --max-frames 0 --json --out {root}/run_out", "run_out", held=True),
]


def _assert_one_error(code: object, out: str, err: str) -> str:
    """Exit status 2, exactly one ``error:`` line on stderr, no traceback; returns the error line."""
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert "Traceback" not in out + err, err
    assert code == 2, (code, out, err)
    assert len(errors) == 1, err
    assert len(errors[0]) > len("error: ") + 10, errors
    return errors[0]


@pytest.mark.parametrize("case", CASES, ids=[c.argv.replace("{", "").replace("}", "") for c in CASES])
def test_bad_input_is_one_error_line(case: Case, corpus: Dict[str, str], capsys, monkeypatch):
    monkeypatch.delenv("LITE_DEPLOY_TRACEBACK", raising=False)
    argv = case.argv.format(**corpus).split()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own exit, with its usage text: not one error line
        code = exc.code
    captured = capsys.readouterr()
    _assert_one_error(code, captured.out, captured.err)
    if case.out:
        assert not (Path(corpus["root"]) / case.out).exists(), f"{case.out} was written"


def test_corpus_covers_every_command():
    from lite_deploy.cli import COMMANDS

    assert {c.argv.split()[0] for c in CASES} == set(COMMANDS)


def test_messages_say_what_and_where(corpus: Dict[str, str], capsys):
    """The converted errors name the file (and field) and say what to do."""
    expected = {
        "info {random_onnx}": "random.onnx is not a valid ONNX model",
        "info {truncated_bin}": "m.xml is not a valid OpenVINO model (Incorrect weights in bin file!): re-export it",
        "info {truncated_tflite}": "cut.tflite is not a valid TFLite model",
        "info {wrongtypes_sidecar}": "'imgsz' must be [height, width]",
        "info {notjson_sidecar}": "not valid JSON",
        "info {bare_onnx}": "bare.onnx does not say what model it is",
        "info {embedded_bad_spec}": "embedded.onnx: embedded model spec field 'names' must be a list of class names",
        "info {missing_onnx}": "does not exist",
        "dataset check {nc_six_yaml}": "nc must be a whole number",
        "predict {good_onnx} --source {image} --conf 1.5": "argument --conf: must be a number in [0, 1], got 1.5",
        "dataset shapes {not_dir} --train 2 --val 1 --imgsz 64": "text.pt",
    }
    for argv, text in expected.items():
        assert main(argv.format(**corpus).split()) == 2
        line = _assert_one_error(2, *capsys.readouterr())
        assert text in line, line


def test_verbose_and_env_show_the_traceback(corpus: Dict[str, str], capsys, monkeypatch):
    argv = ["info", corpus["random_onnx"]]
    assert main(["--verbose"] + argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.rstrip().splitlines()[-1].startswith("error:")
    monkeypatch.setenv("LITE_DEPLOY_TRACEBACK", "1")
    assert main(argv) == 2
    assert "Traceback" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [
    "export {pt} --target coreml --out {root}/sub_export",
    "predict {truncated_bin} --source {image}",
])
def test_real_entry_point(argv: str, corpus: Dict[str, str]):
    """The installed entry point behaves the same in a fresh process (exit status 2, one line, no traceback)."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    env.pop("LITE_DEPLOY_TRACEBACK", None)
    result = subprocess.run([sys.executable, "-m", "lite_deploy.cli"] + argv.format(**corpus).split(),
                            capture_output=True, text=True, env=env, timeout=120)
    _assert_one_error(result.returncode, result.stdout, result.stderr)
    assert not (Path(corpus["root"]) / "sub_export").exists()


def test_bad_target_is_refused_before_the_model_loads(corpus: Dict[str, str], capsys, monkeypatch):
    """`export --target coreml` never reaches the weights (the load would take seconds)."""
    import lite_deploy.export.exporter as exporter

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded before the target was checked")

    monkeypatch.setattr(exporter, "load_weights", refuse)
    assert main(["export", corpus["pt"], "--target", "coreml"]) == 2
    assert "unknown export target 'coreml'" in capsys.readouterr().err

