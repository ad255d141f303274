"""COCO JSON: read a COCO ``instances`` file as a dataset, and write ground truth and predictions for third-party tools.

The written files are what ``pycocotools`` reads::

    gt = COCO("gt.json"); dt = gt.loadRes("predictions.json")
    ev = COCOeval(gt, dt, "bbox"); ev.evaluate(); ev.accumulate(); ev.summarize()

Boxes are written as ``[x, y, w, h]`` in image pixels with ``w = x2 - x1`` at full float precision, so such a
recomputation gives the numbers of :mod:`lite_deploy.eval.metrics` exactly. Needs numpy and OpenCV only.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Protocol, Sequence, Tuple, Union

import numpy as np

from ..boxes import xyxy_to_xywh
from ..errors import DatasetError
from ..io import atomic_write_bytes
from .dataset import DetectionDataset, Targets
from .yolo import DatasetIssue, raise_issues


class DetectionsLike(Protocol):
    """Anything with the fields of ``lite_deploy.runtime.Detections``."""

    boxes: np.ndarray  # (N, 4) xyxy pixels
    scores: np.ndarray  # (N,)
    class_ids: np.ndarray  # (N,) int


class CocoDataset(DetectionDataset):
    """Images and ``bbox`` annotations of a COCO ``instances`` JSON file.

    Class ids are the positions of the categories sorted by COCO id; the COCO ids are kept in ``category_ids``
    and the images keep their COCO ids, so predictions written by :func:`to_coco_predictions` can be scored
    against the original file. Crowd annotations are kept as crowd regions.
    """

    def __init__(self, annotations: Union[str, Path], images_dir: Optional[Union[str, Path]] = None) -> None:
        """Read the file.

        Args:
            annotations: the JSON file.
            images_dir: folder the ``file_name`` entries are relative to (default: the JSON file's folder).

        Raises:
            DatasetError: the file is not COCO JSON, or lists every malformed annotation and missing image.
        """
        path = Path(annotations).resolve()
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise DatasetError(f"{annotations}: cannot read COCO JSON ({exc}).") from exc
        if not isinstance(data, dict) or not {"images", "annotations", "categories"} <= set(data):
            raise DatasetError(f"{path}: not a COCO instances file (needs 'images', 'annotations', 'categories').")
        root = Path(images_dir).resolve() if images_dir is not None else path.parent
        categories = sorted(data["categories"], key=lambda c: c["id"])
        super().__init__([c["id"] for c in categories])
        self.names = tuple(str(c["name"]) for c in categories)
        class_of = {cid: i for i, cid in enumerate(self.category_ids)}
        issues: List[DatasetIssue] = []
        self.images = []
        self._ids: List[int] = []
        position: Dict[int, int] = {}
        for entry in data["images"]:
            image = root / entry["file_name"]
            if not image.is_file():
                issues.append(DatasetIssue(path, None, f"image id {entry['id']}: file {image} does not exist"))
            position[entry["id"]] = len(self.images)
            self.images.append(image)
            self._ids.append(int(entry["id"]))
            if "width" in entry and "height" in entry:
                self._sizes[len(self.images) - 1] = (int(entry["width"]), int(entry["height"]))
        rows: List[List[Tuple[int, List[float], bool]]] = [[] for _ in self.images]
        for k, ann in enumerate(data["annotations"]):
            where = f"annotation #{k} (id {ann.get('id')})"
            bbox = ann.get("bbox")
            if ann.get("image_id") not in position:
                issues.append(DatasetIssue(path, None, f"{where}: unknown image_id {ann.get('image_id')}"))
            elif ann.get("category_id") not in class_of:
                issues.append(DatasetIssue(path, None, f"{where}: unknown category_id {ann.get('category_id')}"))
            elif not isinstance(bbox, list) or len(bbox) != 4 or not all(isinstance(v, (int, float)) for v in bbox):
                issues.append(DatasetIssue(path, None, f"{where}: bbox must be 4 numbers [x, y, w, h], got {bbox}"))
            elif bbox[2] < 0 or bbox[3] < 0:
                issues.append(DatasetIssue(path, None, f"{where}: bbox width and height must be >= 0, got {bbox}"))
            else:
                rows[position[ann["image_id"]]].append(
                    (class_of[ann["category_id"]], [float(v) for v in bbox], bool(ann.get("iscrowd", 0)))
                )
        raise_issues(issues, str(path))
        self._targets = [_rows_to_targets(r) for r in rows]

    def __len__(self) -> int:
        return len(self.images)

    def image_id(self, index: int) -> int:
        """The image's COCO id."""
        return self._ids[index]

    def targets(self, index: int, size: Tuple[int, int]) -> Targets:
        """Ground truth of the image at ``index`` (``size`` is not needed: COCO boxes are in pixels)."""
        return self._targets[index]


def _rows_to_targets(rows: List[Tuple[int, List[float], bool]]) -> Targets:
    xywh = np.array([r[1] for r in rows], np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1).astype(np.float32)
    return Targets(np.array([r[0] for r in rows], np.int64), boxes, np.array([r[2] for r in rows], bool))


def to_coco_gt(dataset: DetectionDataset) -> Dict[str, Any]:
    """The ground truth of a dataset as a COCO ``instances`` dict.

    Image sizes come from :meth:`DetectionDataset.image_size` (images are decoded once if they were never loaded).
    Annotation ids start at 1 (pycocotools treats id 0 as "no match"); ``area`` is the box area.

    Args:
        dataset: a YOLO or COCO dataset.

    Returns:
        ``{"images": [...], "annotations": [...], "categories": [...]}``.
    """
    images, annotations = [], []
    for i in range(len(dataset)):
        width, height = dataset.image_size(i)
        image_id = dataset.image_id(i)
        images.append({"id": image_id, "file_name": str(dataset.images[i]), "width": width, "height": height})
        targets = dataset.targets(i, (width, height))
        for cls, (x, y, w, h), crowd in zip(targets.class_ids, xyxy_to_xywh(targets.boxes).tolist(), targets.crowd):
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": dataset.category_ids[int(cls)],
                    "bbox": [x, y, w, h],
                    "area": w * h,
                    "iscrowd": int(crowd),
                }
            )
    categories = [{"id": cid, "name": name} for cid, name in zip(dataset.category_ids, dataset.names)]
    return {"images": images, "annotations": annotations, "categories": categories}


def to_coco_predictions(
    predictions: Sequence[DetectionsLike], image_ids: Sequence[int], category_ids: Sequence[int]
) -> List[Dict[str, Any]]:
    """Detections as a COCO results list (what ``COCO.loadRes`` reads).

    Args:
        predictions: per image, an object with ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,) and ``class_ids`` (N,).
        image_ids: COCO image id of each entry of ``predictions``.
        category_ids: COCO category id of each class id (``dataset.category_ids``).

    Returns:
        ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]`` in input order.

    Raises:
        ValueError: ``predictions`` and ``image_ids`` differ in length, or a class id has no category.
    """
    if len(predictions) != len(image_ids):
        raise ValueError(f"got {len(predictions)} predictions for {len(image_ids)} image ids")
    records = []
    for det, image_id in zip(predictions, image_ids):
        classes = np.asarray(det.class_ids).reshape(-1)
        if len(classes) and (classes.min() < 0 or classes.max() >= len(category_ids)):
            raise ValueError(f"class ids {sorted(set(classes.tolist()))} outside the {len(category_ids)} categories")
        for cls, box, score in zip(classes, xyxy_to_xywh(det.boxes).tolist(), np.asarray(det.scores).reshape(-1)):
            records.append(
                {"image_id": image_id, "category_id": category_ids[int(cls)], "bbox": box, "score": float(score)}
            )
    return records


def write_json(obj: Any, path: Union[str, Path]) -> Path:
    """Write ``obj`` as JSON atomically; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, json.dumps(obj).encode("utf-8"))
    return path
