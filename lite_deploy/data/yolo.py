"""YOLO-format detection datasets: ``data.yaml``, ``images/`` and ``labels/`` with one ``cls cx cy w h`` row per object.

Layout (the one YOLOv5 reads)::

    data.yaml                 path: <root>, train: images/train, val: images/val, names: [a, b, ...] or {0: a, ...}
    images/train/0001.jpg
    labels/train/0001.txt     "0 0.5 0.5 0.25 0.1" per object, normalised to the image size

A split (``train``, ``val``, ``test``) is a folder of images, a ``.txt`` file listing images (relative entries are
taken from the list's folder), or a list of those. The label of ``.../images/.../x.jpg`` is the
``.../labels/.../x.txt`` reached by replacing the last ``images`` folder of the path. A missing label file means an
image without objects. Rows with more than five columns are polygons (``cls x1 y1 x2 y2 ...``) and are read as their
bounding box, as YOLOv5 does for detection.

Every malformed row is reported, not only the first: :func:`scan_labels` returns all problems as
:class:`DatasetIssue` objects (file and line), and :class:`YoloDataset` raises one :class:`DatasetError` that lists
them. An image listed twice is read once, with a warning. This module needs numpy, OpenCV and PyYAML only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ..boxes import xywhn_to_xyxy
from ..errors import DatasetError
from ..io import IMAGE_SUFFIXES, atomic_write_bytes, read_image
from ..spec import class_names
from .dataset import DetectionDataset, Targets

LOGGER = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
# At most this many problems are spelled out in one DatasetError; the rest are counted.
MAX_LISTED_ISSUES = 20

PathLike = Union[str, Path]


@dataclass(frozen=True)
class DatasetIssue:
    """One problem found in a dataset.

    Attributes:
        file: the file at fault (label file, image, list or yaml).
        line: 1-based line number in ``file``, or ``None`` when the problem is the whole file.
        message: what is wrong, in one sentence.
        warning: the dataset is usable as it is (e.g. a duplicate entry, read once); otherwise it is an error.
    """

    file: Path
    line: Optional[int]
    message: str
    warning: bool = False

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line is not None else str(self.file)
        return f"{where}: {'warning: ' if self.warning else ''}{self.message}"


def raise_issues(issues: Sequence[DatasetIssue], what: str) -> None:
    """Raise one :class:`DatasetError` listing the errors among ``issues`` (the first :data:`MAX_LISTED_ISSUES`);
    warnings are logged.

    Args:
        issues: problems found.
        what: the dataset or split they belong to, for the first line of the message.

    Raises:
        DatasetError: when ``issues`` holds an error.
    """
    for issue in issues:
        if issue.warning:
            LOGGER.warning("%s", issue)
    issues = [issue for issue in issues if not issue.warning]
    if not issues:
        return
    lines = [str(issue) for issue in issues[:MAX_LISTED_ISSUES]]
    if len(issues) > MAX_LISTED_ISSUES:
        lines.append(f"... and {len(issues) - MAX_LISTED_ISSUES} more")
    raise DatasetError(
        f"{what} has {len(issues)} problem(s); fix these files (or run `lite-deploy dataset check`):\n"
        + "\n".join(lines)
    )


@dataclass(frozen=True)
class DataConfig:
    """A parsed ``data.yaml``.

    Attributes:
        yaml_path: the yaml file.
        root: the resolved dataset root (``path:``).
        splits: split name -> resolved sources (folders or list files); ``test`` may be absent.
        names: class names, index = class id.
    """

    yaml_path: Path
    root: Path
    splits: Dict[str, Tuple[Path, ...]]
    names: Tuple[str, ...]

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)


def parse_names(names: object, source: Path) -> Tuple[str, ...]:
    """Class names from a yaml ``names`` entry (see :func:`lite_deploy.spec.class_names`).

    Raises:
        DatasetError: when the entry is neither a list nor a dict, or the dict's keys are not exactly 0..nc-1.
    """
    try:
        return class_names(names)
    except ValueError as exc:
        raise DatasetError(f"{source}: {exc}") from None


def load_data_config(path: PathLike) -> DataConfig:
    """Read a YOLO ``data.yaml``.

    Paths are resolved as YOLOv5's ``check_dataset`` does, with one difference: a relative ``path:`` (or a missing
    one) is taken from the yaml's folder rather than from the training program's folder. Each split is joined to
    ``path``; a split starting with ``../`` that does not exist there is retried without it (YOLOv5's fallback).

    Args:
        path: the yaml file.

    Returns:
        The parsed config.

    Raises:
        DatasetError: the file is missing or not a mapping, ``names`` is missing or malformed, ``nc`` disagrees
            with ``names``, or ``train``/``val`` is missing.
    """
    import yaml

    yaml_path = Path(path).resolve()
    if not yaml_path.is_file():
        raise DatasetError(f"{path}: dataset yaml not found; pass the data.yaml of a YOLO-format dataset.")
    try:
        data = yaml.safe_load(yaml_path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise DatasetError(f"{yaml_path}: not valid YAML ({exc}).") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_path}: expected a mapping with 'train', 'val' and 'names'.")
    if "names" not in data:
        raise DatasetError(f"{yaml_path}: 'names' is missing; list the class names (index = class id).")
    names = parse_names(data["names"], yaml_path)
    if "nc" in data and (not isinstance(data["nc"], int) or isinstance(data["nc"], bool)):
        raise DatasetError(f"{yaml_path}: nc must be a whole number (the number of classes), got {data['nc']!r}")
    if "nc" in data and data["nc"] != len(names):
        raise DatasetError(f"{yaml_path}: nc is {data['nc']} but 'names' has {len(names)} entries; make them agree.")
    root = Path(data.get("path") or "")
    if not root.is_absolute():
        root = (yaml_path.parent / root).resolve()
    splits: Dict[str, Tuple[Path, ...]] = {}
    for split in SPLITS:
        value = data.get(split)
        if not value:
            if split != "test":
                raise DatasetError(f"{yaml_path}: '{split}' is missing; give the {split} images folder or list.")
            continue
        entries = value if isinstance(value, (list, tuple)) else [value]
        splits[split] = tuple(_resolve_split_entry(root, str(e)) for e in entries)
    return DataConfig(yaml_path=yaml_path, root=root, splits=splits, names=names)


def write_data_config(root: PathLike, names: Sequence[str], *, train: str = "images/train",
                      val: str = "images/val") -> Path:
    """Write ``root/data.yaml`` (``path`` absolute, splits relative to it), atomically; returns its path."""
    import yaml

    root = Path(root).resolve()
    config = {"path": str(root), "train": train, "val": val, "names": [str(n) for n in names]}
    path = root / "data.yaml"
    atomic_write_bytes(path, yaml.safe_dump(config, sort_keys=False).encode("utf-8"))
    return path


def _resolve_split_entry(root: Path, entry: str) -> Path:
    resolved = (root / entry).resolve()
    if not resolved.exists() and entry.startswith("../"):
        resolved = (root / entry[3:]).resolve()
    return resolved


def label_path(image: Path) -> Path:
    """The label file of an image: the last ``images`` folder of the path replaced by ``labels``, suffix ``.txt``."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def list_images(sources: Sequence[Path]) -> Tuple[List[Path], List[DatasetIssue]]:
    """Image files of a split, sorted, with the problems found (missing folder or list, missing listed image).

    An image named twice (in one list, or by two sources) is kept once, at its first place; each repetition is a
    warning.

    Args:
        sources: folders (searched recursively) or ``.txt`` files listing images.

    Returns:
        ``(images, issues)``.
    """
    images: List[Path] = []
    issues: List[DatasetIssue] = []
    seen: Dict[Path, str] = {}  # image -> where it was first named

    def add(image: Path, where: str, source: Path, line: Optional[int]) -> None:
        if image in seen:
            issues.append(DatasetIssue(source, line, f"image {image} is named again (first by {seen[image]}); "
                                       "it is counted once", warning=True))
            return
        seen[image] = where
        images.append(image)

    for source in sources:
        if source.is_dir():
            found = sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            if not found:
                listed = ", ".join(IMAGE_SUFFIXES)
                issues.append(DatasetIssue(source, None, f"folder contains no images ({listed})"))
            for image in found:
                add(image, str(source), source, None)
        elif source.is_file() and source.suffix == ".txt":
            for lineno, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
                entry = line.strip()
                if not entry:
                    continue
                image = Path(entry)
                if not image.is_absolute():
                    image = (source.parent / image).resolve()
                if not image.is_file():
                    issues.append(DatasetIssue(source, lineno, f"image {entry} does not exist"))
                elif image.suffix.lower() not in IMAGE_SUFFIXES:
                    issues.append(DatasetIssue(source, lineno, f"{entry} is not an image ({image.suffix})"))
                else:
                    add(image, f"{source}:{lineno}", source, lineno)
        elif source.is_file() and source.suffix.lower() in IMAGE_SUFFIXES:
            add(source, str(source), source, None)
        else:
            issues.append(DatasetIssue(source, None, "does not exist (expected an images folder or a .txt list)"))
    if not images and not issues:
        issues.append(DatasetIssue(sources[0] if sources else Path("."), None, "no images found"))
    return images, issues


def label_text(class_ids: Sequence[int], xywhn: np.ndarray) -> str:
    """A YOLO label file's text: one ``class cx cy w h`` row per object (normalised, 6 decimals)."""
    return "".join(f"{int(c)} {x:.6f} {y:.6f} {w:.6f} {h:.6f}\n" for c, (x, y, w, h) in zip(class_ids, xywhn))


def parse_label_file(path: Path, nc: int) -> Tuple[np.ndarray, List[DatasetIssue]]:
    """Read one label file.

    Args:
        path: the ``.txt`` file; a missing file means no objects.
        nc: number of classes; class ids must be integers in ``[0, nc)``.

    Returns:
        ``(labels, issues)``: labels (n, 5) float32 rows ``cls cx cy w h`` normalised to [0, 1] from the valid
        lines (exact duplicate rows removed), and one issue per malformed line.
    """
    if not path.is_file():
        return np.zeros((0, 5), np.float32), []
    rows: List[List[float]] = []
    issues: List[DatasetIssue] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        row, problem = _parse_row(fields, nc)
        if problem:
            issues.append(DatasetIssue(path, lineno, problem))
        else:
            rows.append(row)
    labels = np.array(rows, np.float32).reshape(-1, 5)
    if len(labels):
        unique, first = np.unique(labels, axis=0, return_index=True)
        if len(unique) < len(labels):
            LOGGER.warning("%s: removed %d duplicate label rows", path, len(labels) - len(unique))
            labels = labels[np.sort(first)]
    return labels, issues


def _parse_row(fields: List[str], nc: int) -> Tuple[List[float], Optional[str]]:
    """One label row -> (cls cx cy w h, None) or ([], problem)."""
    n = len(fields)
    if n != 5 and (n < 7 or n % 2 == 0):
        return [], f"expected 5 columns 'cls cx cy w h' (or a polygon 'cls x1 y1 x2 y2 x3 y3 ...'), got {n}"
    try:
        values = [float(f) for f in fields]
    except ValueError:
        bad = next(f for f in fields if not _is_float(f))
        return [], f"non-numeric value {bad!r}"
    if not all(np.isfinite(values)):
        return [], "non-finite value (nan or inf)"
    cls = values[0]
    if cls != int(cls) or not 0 <= cls < nc:
        return [], f"unknown class id {fields[0]} (the dataset has {nc} classes, ids 0..{nc - 1})"
    coords = values[1:]
    if min(coords) < 0.0 or max(coords) > 1.0:
        return [], "coordinates must be normalised to [0, 1] (divide pixels by the image width and height)"
    if n == 5:
        cx, cy, w, h = coords
    else:
        xs, ys = coords[0::2], coords[1::2]
        cx, cy, w, h = (min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)
    if w <= 0.0 or h <= 0.0:
        return [], f"box width and height must be > 0, got w={w:g} h={h:g}"
    return [cls, cx, cy, w, h], None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def scan_labels(images: Sequence[Path], nc: int) -> Tuple[List[np.ndarray], List[DatasetIssue]]:
    """Read the labels of every image and collect every problem.

    Args:
        images: image files.
        nc: number of classes.

    Returns:
        ``(labels, issues)``: one (n, 5) float32 array per image (see :func:`parse_label_file`) and all problems.
    """
    labels: List[np.ndarray] = []
    issues: List[DatasetIssue] = []
    for image in images:
        lab, found = parse_label_file(label_path(image), nc)
        labels.append(lab)
        issues.extend(found)
    return labels, issues


class YoloDataset(DetectionDataset):
    """A split of a YOLO-format dataset.

    COCO ids (for :mod:`lite_deploy.data.coco`): image id = index + 1, category id = class id + 1.

    Attributes:
        names: class names.
        images: image files, sorted.
        labels: per image, (n, 5) float32 ``cls cx cy w h`` normalised (what training consumes).
    """

    def __init__(self, sources: Sequence[PathLike], names: Sequence[str], *, what: Optional[str] = None) -> None:
        """Scan a split.

        Args:
            sources: image folders, ``.txt`` image lists, or image files.
            names: class names.
            what: how to name the split in error messages.

        Raises:
            DatasetError: listing every missing image, empty folder and malformed label line.
        """
        self.names = tuple(names)
        paths = [Path(s).resolve() for s in sources]
        self.images, issues = list_images(paths)
        self.labels, label_issues = scan_labels(self.images, len(self.names))
        raise_issues(issues + label_issues, what or ", ".join(str(p) for p in paths))
        super().__init__(tuple(range(1, len(self.names) + 1)))

    @classmethod
    def from_yaml(cls, data: PathLike, split: str = "val") -> "YoloDataset":
        """Open one split of the dataset described by ``data.yaml``.

        Raises:
            DatasetError: the yaml or the split is malformed (see :func:`load_data_config`), or ``split`` is absent.
        """
        config = load_data_config(data)
        if split not in config.splits:
            raise DatasetError(f"{config.yaml_path}: has no '{split}' split (it has {', '.join(config.splits)}).")
        return cls(config.splits[split], config.names, what=f"{config.yaml_path} [{split}]")

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        """COCO image id of an image: its index + 1."""
        return index + 1

    def targets(self, index: int, size: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
        """Ground truth of one image in pixels.

        Args:
            index: image index.
            size: (width, height) of the image.

        Returns:
            Class ids, boxes (xyxy pixels clipped to the image) and crowd flags (all false).
        """
        lab = self.labels[index]
        return Targets(lab[:, 0].astype(np.int64), xywhn_to_xyxy(lab[:, 1:], size), np.zeros(len(lab), bool))


def check_dataset(data: PathLike, *, decode_images: bool = True) -> List[DatasetIssue]:
    """Every problem of every split of a dataset, without raising.

    Args:
        data: the ``data.yaml``.
        decode_images: also decode every image to find corrupt files and images with a side of 1 pixel (slower).

    Returns:
        All problems found; empty when the dataset is sound.

    Raises:
        DatasetError: the yaml itself is unusable (see :func:`load_data_config`).
    """
    config = load_data_config(data)
    issues: List[DatasetIssue] = []
    for split, sources in config.splits.items():
        images, found = list_images(sources)
        issues.extend(found)
        issues.extend(scan_labels(images, config.nc)[1])
        if decode_images:
            for image in images:
                try:
                    height, width = read_image(image).shape[:2]
                except DatasetError as exc:
                    issues.append(DatasetIssue(image, None, str(exc).split(": ", 1)[1]))
                    continue
                if min(height, width) == 1:
                    issues.append(DatasetIssue(image, None, f"the image is {width}x{height} pixels: a side of one "
                                               "pixel holds no object; check how it was made", warning=True))
    return issues
