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


def test_check_lists_duplicates_and_thin_images(tmp_path: Path, capsys) -> None:
    import cv2
    import numpy as np

    out = tmp_path / "shapes"
    assert main(["dataset", "shapes", str(out), "--train", "2", "--val", "2", "--imgsz", "64"]) == 0
    cv2.imwrite(str(out / "images" / "val" / "thin.png"), np.zeros((3000, 1, 3), np.uint8))
    (out / "val.txt").write_text("images/val/000000.jpg\nimages/val/000001.jpg\nimages/val/000000.jpg\n")
    yaml_text = (out / "data.yaml").read_text()
    (out / "data.yaml").write_text(yaml_text.replace("val: images/val", "val: [val.txt, images/val]"))
    capsys.readouterr()
    assert main(["dataset", "check", str(out / "data.yaml")]) == 1
    printed = capsys.readouterr().out
    assert "val.txt:3: warning: image" in printed and "thin.png: warning: the image is 1x3000 pixels" in printed
    assert "4 problem(s)" in printed  # the repeated line, the folder's two images named again, the thin image
