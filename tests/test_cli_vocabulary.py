"""One CLI vocabulary: the command list, plain-text help, one --imgsz form, runs/<task>/exp<N> outputs, the
checkpoint's serving size as the default, and arguments refused before any model loads."""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, Tuple

import pytest

from lite_deploy.assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ, demo_weights
from lite_deploy.cli import COMMANDS, UsageError, build_parser, main
from lite_deploy.commands.outputs import run_dir

REPO = Path(__file__).resolve().parents[1]
RST = ("``", ":class:", ":func:", ":mod:", ":data:", ":meth:", ":attr:")


def _subparsers(parser: argparse.ArgumentParser, prefix: str = "") -> Iterator[Tuple[str, argparse.ArgumentParser]]:
    """``(name, parser)`` of every command and sub-command (``dataset shapes`` ...)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield f"{prefix}{name}", sub
                yield from _subparsers(sub, f"{prefix}{name} ")


def test_alone_it_lists_every_command(capsys) -> None:
    assert main([]) == 0
    printed = capsys.readouterr().out
    assert "usage: lite-deploy" in printed
    assert all(f"    {command} " in printed or f"    {command}\n" in printed for command in COMMANDS), printed
    assert "run" not in COMMANDS  # one command for every source: predict


def test_help_is_plain_text() -> None:
    parser = build_parser()
    helps = {"lite-deploy": parser.format_help()}
    helps.update((name, sub.format_help()) for name, sub in _subparsers(parser))
    assert len(helps) >= len(COMMANDS) + 4  # dataset's three actions too
    marked = {name: [m for m in RST if m in text] for name, text in helps.items() if any(m in text for m in RST)}
    assert not marked, marked


def test_every_imgsz_is_one_form() -> None:
    """Every --imgsz takes N or H W and gives (h, w); square-only commands refuse two different values."""
    parser = build_parser()
    with_imgsz = sorted(name for name, sub in _subparsers(parser)
                        if any("--imgsz" in a.option_strings for a in sub._actions))
    assert {"info", "val", "train", "predict", "profile", "dataset shapes", "dataset shapes-cls"} <= set(with_imgsz)
    for name, sub in _subparsers(parser):
        action = next((a for a in sub._actions if "--imgsz" in a.option_strings), None)
        if action is None:
            continue
        assert type(action).__name__ == "_ImgszAction" and action.type.__name__ == "imgsz", name
        parsed = argparse.Namespace()
        action(sub, parsed, [64], "--imgsz")
        assert parsed.imgsz == (64, 64), name
        with pytest.raises(UsageError, match="one size"):
            action(sub, parsed, [64, 64, 64], "--imgsz")
    predict = ["predict", str(demo_weights()), "--source", "0", "--imgsz", "384", "640"]
    assert parser.parse_args(predict).imgsz == (384, 640)
    with pytest.raises(UsageError, match="works on squares"):
        parser.parse_args(["dataset", "shapes", "out", "--imgsz", "64", "96"])


def test_defaults_agree_with_the_bundled_demo() -> None:
    """dataset shapes writes the demo's 224-px data; the demo checkpoint serves at 320."""
    from lite_deploy.models.checkpoint import serving_imgsz

    assert build_parser().parse_args(["dataset", "shapes", "out"]).imgsz == (DEMO_DATA_IMGSZ, DEMO_DATA_IMGSZ)
    assert serving_imgsz(demo_weights()) == (DEMO_IMGSZ, DEMO_IMGSZ)


def test_serving_size_is_saved_and_falls_back_to_the_training_size(tmp_path: Path) -> None:
    import torch

    from lite_deploy.models import build_model, load_model
    from lite_deploy.models.checkpoint import save_checkpoint, serving_imgsz

    model = build_model("yolov5n")
    path = save_checkpoint(model, tmp_path / "m.pt", imgsz=224, serve_imgsz=[256, 320])
    assert serving_imgsz(path) == (256, 320)
    ckpt = torch.load(path, weights_only=True)
    del ckpt["serve_imgsz"]  # a checkpoint written before the field: serves at its training size
    torch.save(ckpt, tmp_path / "old.pt")
    assert serving_imgsz(tmp_path / "old.pt") == (224, 224)
    load_model(tmp_path / "old.pt")


def test_val_of_a_checkpoint_defaults_to_its_serving_size(tmp_path: Path, caplog) -> None:
    data = tmp_path / "shapes"
    assert main(["dataset", "shapes", str(data), "--train", "1", "--val", "2"]) == 0
    caplog.set_level(logging.INFO)
    assert main(["val", str(demo_weights()), "--data", str(data / "data.yaml")]) == 0
    assert f"{DEMO_IMGSZ}x{DEMO_IMGSZ} letterbox" in caplog.text


def test_train_passes_imgsz_on_to_its_processes() -> None:
    from lite_deploy.commands.train import _argv

    args = build_parser().parse_args(["train", "--data", "d.yaml", "--imgsz", "224", "--device", "0,1"])
    assert _argv(args) == ["--data", "d.yaml", "--imgsz", "224", "224"]
    assert build_parser().parse_args(["train", *_argv(args)]).imgsz == (224, 224)


def test_run_dir_numbers_runs(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert run_dir("export") == Path("runs/export/exp")
    (tmp_path / "runs" / "export" / "exp").mkdir(parents=True)
    assert run_dir("export") == Path("runs/export/exp2")
    (tmp_path / "runs" / "export" / "exp2").mkdir()
    assert run_dir("export") == Path("runs/export/exp3")
    assert run_dir("export", "mine") == Path("mine")


@pytest.mark.parametrize("argv, says", [
    (["export", "{demo}", "--target", "coreml"], "coreml"),
    (["benchmark", "{demo}", "--target", "onnx,coreml"], "coreml"),
    (["check", "{demo}", "--target", "coreml"], "coreml"),
    (["val", "{demo}", "--data", "absent.yaml"], "absent.yaml"),
    (["train", "--data", "absent.yaml", "--epochs", "1"], "absent.yaml"),
    (["predict", "{demo}", "--source", "absent.jpg", "--save"], "absent.jpg"),
    (["predict", "{demo}", "--source", "0", "--imgsz", "320", "320", "320"], "--imgsz"),
])
def test_bad_arguments_are_refused_at_once_without_torch(argv, says: str, tmp_path: Path) -> None:
    """Refused before any model loads: no torch imported, under a second, nothing written."""
    argv = [a.format(demo=demo_weights()) for a in argv]
    code = ("import sys, time\n"
            "from lite_deploy.cli import main\n"
            "start = time.perf_counter()\n"
            f"code = main({argv!r})\n"
            "print(code, round(time.perf_counter() - start, 3), 'torch' in sys.modules)\n")
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    status, seconds, torch_imported = result.stdout.split()
    assert status == "2" and torch_imported == "False", (result.stdout, result.stderr)
    assert float(seconds) < 1.0 and time.perf_counter() - start < 30
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and says in errors[0], result.stderr
    assert not (tmp_path / "runs").exists()
