"""`lite-deploy dataset shapes` and `lite-deploy dataset check` from the command line."""

from __future__ import annotations

from pathlib import Path

from lite_deploy.cli import main


def test_shapes_then_check(tmp_path: Path, capsys) -> None:
    out = tmp_path / "shapes"
    assert main(["dataset", "shapes", str(out), "--train", "2", "--val", "1", "--imgsz", "64"]) == 0
    assert len(list((out / "images" / "train").iterdir())) == 2 and (out / "data.yaml").is_file()
    assert main(["dataset", "check", str(out / "data.yaml")]) == 0
    assert "0 problem(s)" in capsys.readouterr().out
    (out / "labels" / "val" / "000000.txt").write_text("7 0.5 0.5 0.1 0.1\n")
    assert main(["dataset", "check", str(out / "data.yaml")]) == 1
    assert "labels/val/000000.txt:1: unknown class id 7" in capsys.readouterr().out


def test_bad_yaml_is_a_one_line_error(tmp_path: Path, capsys) -> None:
    assert main(["dataset", "check", str(tmp_path / "missing.yaml")]) == 2
    assert "dataset yaml not found" in capsys.readouterr().err
