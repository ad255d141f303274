"""YOLO dataset reading: paths from data.yaml, labels, and one clear error per malformed line."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from lite_deploy.data.yolo import YoloDataset, check_dataset, label_path, load_data_config
from lite_deploy.errors import DatasetError


def make_dataset(root: Path, labels: dict, names=("a", "b", "c"), yaml_text: str = None) -> Path:
    """Images of 40x30 pixels under root/images/val with the given label texts; returns the data.yaml."""
    for stem, text in labels.items():
        img = root / "images" / "val" / f"{stem}.png"
        img.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(img), np.full((30, 40, 3), 127, np.uint8))
        if text is not None:
            lab = root / "labels" / "val" / f"{stem}.txt"
            lab.parent.mkdir(parents=True, exist_ok=True)
            lab.write_text(text)
    (root / "images" / "train").mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(root / "images" / "train" / "t.png"), np.zeros((8, 8, 3), np.uint8))
    data = root / "data.yaml"
    data.write_text(yaml_text or f"path: .\ntrain: images/train\nval: images/val\nnames: {list(names)}\n")
    return data


def test_reads_labels_and_pixels(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, {"x": "1 0.5 0.5 0.5 0.2\n\n0 0.25 0.5 0.1 0.1\n1 0.5 0.5 0.5 0.2\n", "empty": "",
                                   "nolabel": None, "poly": "2 0.1 0.1 0.3 0.1 0.3 0.5\n"})
    ds = YoloDataset.from_yaml(data, "val")
    assert [p.name for p in ds.images] == ["empty.png", "nolabel.png", "poly.png", "x.png"]
    assert ds.names == ("a", "b", "c") and sum(map(len, ds.labels)) == 3  # the duplicate row of x is dropped
    sample = ds[3]
    assert sample.image.shape == (30, 40, 3) and sample.image.dtype == np.uint8
    np.testing.assert_array_equal(sample.targets.class_ids, [1, 0])
    np.testing.assert_allclose(sample.targets.boxes[0], [10, 12, 30, 18], atol=1e-5)
    np.testing.assert_allclose(ds[2].targets.boxes, [[4, 3, 12, 15]], atol=1e-5)  # polygon -> its box
    assert ds.image_size(3) == (40, 30) and ds.image_id(0) == 1 and ds.category_ids == (1, 2, 3)


@pytest.mark.parametrize(
    "text,line,message",
    [
        ("0 0.5 0.5 0.2 0.2\n0 0.5 1.2 0.2 0.2\n", 2, "coordinates must be normalised to \\[0, 1\\]"),
        ("0 0.5 0.5 0.2 0.2\n\n3 0.5 0.5 0.2 0.2\n", 3, "unknown class id 3 \\(the dataset has 3 classes"),
        ("1.5 0.5 0.5 0.2 0.2\n", 1, "unknown class id 1.5"),
        ("0 0.5 0.5 0.2\n", 1, "expected 5 columns 'cls cx cy w h'.*got 4"),
        ("0 0.5 0.5 0.2 0.2 0.1\n", 1, "expected 5 columns.*got 6"),
        ("0 0.5 abc 0.2 0.2\n", 1, "non-numeric value 'abc'"),
        ("0 0.5 nan 0.2 0.2\n", 1, "non-finite value"),
        ("0 0.5 0.5 0.0 0.2\n", 1, "box width and height must be > 0"),
    ],
)
def test_malformed_label_reports_file_and_line(tmp_path: Path, text: str, line: int, message: str) -> None:
    data = make_dataset(tmp_path, {"good": "0 0.5 0.5 0.1 0.1\n", "bad": text})
    with pytest.raises(DatasetError, match=f"labels/val/bad.txt:{line}: {message}"):
        YoloDataset.from_yaml(data, "val")


def test_all_problems_are_collected(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, {"a": "9 0.5 0.5 0.1 0.1\n0 x 0.5 0.1 0.1\n", "b": "0 0.5 0.5 0.1\n"})
    with pytest.raises(DatasetError, match="has 3 problem") as info:
        YoloDataset.from_yaml(data, "val")
    assert "a.txt:1: unknown class id 9" in str(info.value) and "a.txt:2: non-numeric" in str(info.value)
    assert "b.txt:1: expected 5 columns" in str(info.value)
    (tmp_path / "images" / "val" / "broken.png").write_bytes(b"not an image")
    issues = check_dataset(data)
    assert len(issues) == 4 and any("broken.png" in str(i) and "cannot read" in str(i) for i in issues)


def test_missing_image_in_list_and_empty_folder(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, {"a": ""})
    (tmp_path / "val.txt").write_text("./images/val/a.png\n\n./images/val/gone.jpg\n")
    (tmp_path / "empty").mkdir()
    data.write_text("train: empty\nval: val.txt\nnames: {0: a, 1: b}\n")
    with pytest.raises(DatasetError, match="val.txt:3: image ./images/val/gone.jpg does not exist"):
        YoloDataset.from_yaml(data, "val")
    with pytest.raises(DatasetError, match="empty: folder contains no images"):
        YoloDataset.from_yaml(data, "train")


def test_yaml_paths_and_names(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make_dataset(root, {"a": ""})
    sub = tmp_path / "cfg"
    sub.mkdir()
    yaml_file = sub / "d.yaml"
    yaml_file.write_text("path: ../ds\ntrain: images/train\nval: ../images/val\nnames: {0: x, 1: y}\n")
    config = load_data_config(yaml_file)
    assert config.root == root.resolve() and config.names == ("x", "y")
    assert config.splits["val"] == ((root / "images" / "val").resolve(),)  # YOLOv5's '../' fallback
    yaml_file.write_text("train: a\nval: b\nnames: {0: x, 2: y}\n")
    with pytest.raises(DatasetError, match="'names' keys must be the class ids 0..1"):
        load_data_config(yaml_file)
    yaml_file.write_text("train: a\nval: b\nnc: 3\nnames: [x, y]\n")
    with pytest.raises(DatasetError, match="nc is 3 but 'names' has 2 entries"):
        load_data_config(yaml_file)
    yaml_file.write_text("train: a\nnames: [x]\n")
    with pytest.raises(DatasetError, match="'val' is missing"):
        load_data_config(yaml_file)
    with pytest.raises(DatasetError, match="dataset yaml not found"):
        load_data_config(tmp_path / "nope.yaml")


def test_label_path_replaces_last_images_folder() -> None:
    assert label_path(Path("/d/images/x/images/train/1.jpg")) == Path("/d/images/x/labels/train/1.txt")


def test_duplicate_entries_are_counted_once_with_a_warning(tmp_path: Path, caplog) -> None:
    data = make_dataset(tmp_path, {"a": "0 0.5 0.5 0.2 0.2\n", "b": "1 0.5 0.5 0.2 0.2\n"})
    (tmp_path / "val.txt").write_text("./images/val/a.png\nimages/val/b.png\n./images/val/a.png\n")
    data.write_text("train: images/train\nval: [val.txt, images/val/b.png]\nnames: [a, b, c]\n")
    with caplog.at_level("WARNING"):
        dataset = YoloDataset.from_yaml(data, "val")
    assert [p.name for p in dataset.images] == ["a.png", "b.png"] and len(dataset) == 2
    assert sum(len(lab) for lab in dataset.labels) == 2  # each object once in validation
    assert "val.txt:3: warning: image" in caplog.text and "is named again" in caplog.text
    issues = check_dataset(data)
    assert [(i.file.name, i.line, i.warning) for i in issues] == [("val.txt", 3, True), ("b.png", None, True)]


def test_check_flags_one_pixel_and_unreadable_images(tmp_path: Path) -> None:
    data = make_dataset(tmp_path, {"ok": ""})
    val = tmp_path / "images" / "val"
    cv2.imwrite(str(val / "row.png"), np.full((1, 5000, 3), 9, np.uint8))
    cv2.imwrite(str(val / "column.png"), np.full((5000, 2, 3), 9, np.uint8))  # 2 pixels wide: fine
    cv2.imwrite(str(val / "dot.png"), np.full((1, 1, 3), 9, np.uint8))
    (val / "text.jpg").write_text("not a picture")
    (val / "empty.png").write_bytes(b"")
    issues = {i.file.name: i for i in check_dataset(data)}
    assert sorted(issues) == ["dot.png", "empty.png", "row.png", "text.jpg"]
    assert issues["row.png"].warning and "5000x1 pixels" in str(issues["row.png"])
    assert issues["dot.png"].warning and "1x1 pixels" in str(issues["dot.png"])
    assert not issues["text.jpg"].warning and "cannot read the image" in str(issues["text.jpg"])
    assert "cannot read the image" in str(issues["empty.png"])
