"""Validate a detector (any checkpoint or exported artifact the runtime loads) on a dataset: COCO mAP, P, R.

Every model goes through the same path, ``lite_deploy.runtime.Detector``, so a ``.pt`` checkpoint and its ONNX,
OpenVINO or TFLite exports are scored with identical pre-processing, decoding and NMS, and their numbers can be
compared directly. With ``save_json`` the ground truth and predictions are written as COCO JSON, so pycocotools (or
any COCO evaluator) can recompute the same mAP.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

from ..data.coco import CocoDataset, to_coco_gt, to_coco_predictions, write_json
from ..data.dataset import DetectionDataset
from ..data.yolo import YoloDataset
from .metrics import DetectionEvaluator

LOGGER = logging.getLogger(__name__)

PathLike = Union[str, Path]
# A detector: one BGR frame -> Detections, or a list of frames -> list of Detections.
DetectorLike = Callable[[Any], Any]


def open_dataset(
    data: Union[PathLike, DetectionDataset], split: str = "val", images: Optional[PathLike] = None
) -> DetectionDataset:
    """A dataset from a YOLO ``data.yaml``, a COCO ``instances`` JSON file, or an already open dataset.

    Args:
        data: ``.yaml``/``.yml`` (YOLO), ``.json`` (COCO) or a :class:`DetectionDataset`.
        split: split of a YOLO dataset.
        images: folder of a COCO file's images (default: the JSON file's folder).

    Returns:
        The dataset.

    Raises:
        DatasetError: the dataset is malformed.
        ValueError: the file type is not recognised.
    """
    if isinstance(data, DetectionDataset):
        return data
    path = Path(data)
    if path.suffix.lower() in (".yaml", ".yml"):
        return YoloDataset.from_yaml(path, split)
    if path.suffix.lower() == ".json":
        return CocoDataset(path, images)
    raise ValueError(f"{data}: expected a YOLO data.yaml or a COCO instances .json file")


def validate(
    model: Union[PathLike, DetectorLike],
    data: Union[PathLike, DetectionDataset],
    *,
    split: str = "val",
    images: Optional[PathLike] = None,
    conf: float = 0.001,
    iou: float = 0.6,
    max_det: int = 300,
    imgsz: Optional[int] = None,
    batch: int = 1,
    save_json: Optional[PathLike] = None,
    plots: Optional[PathLike] = None,
    progress: bool = True,
    verbose: bool = True,
) -> Dict[str, Any]:
    """Run a detector over a dataset and score it.

    Args:
        model: a checkpoint or artifact path (loaded with ``Detector.load(path, conf=, iou=, max_det=)``), or a
            ready detector: a callable taking one (H, W, 3) uint8 BGR frame (or, when ``batch`` > 1, a list of
            them) and returning objects with ``boxes`` (N, 4) xyxy pixels, ``scores`` (N,) and ``class_ids`` (N,).
        data: YOLO ``data.yaml``, COCO ``instances`` JSON, or an open dataset.
        split: split of a YOLO dataset.
        images: folder of a COCO file's images.
        conf: confidence threshold (low, so that the whole precision-recall curve is measured).
        iou: NMS IoU threshold.
        max_det: detections kept per image by the detector (the COCO metric then uses 100 per image and class).
        imgsz: network input size, for models that accept one (checkpoints); artifacts have theirs fixed.
        batch: frames per detector call.
        save_json: folder for ``gt.json``, ``predictions.json`` (COCO) and ``results.json``.
        plots: folder for ``pr_curve.png``.
        progress: show a progress bar.
        verbose: log the results table.

    Returns:
        ``images``, ``instances``, ``precision``, ``recall``, ``map50``, ``map50_95``, ``f1_conf``, ``per_class``
        (name -> the same keys), ``ms_per_image`` (detector time per image, pre-processing to NMS) and ``files``
        (what was written).

    Raises:
        DatasetError: the dataset is malformed.
        ValueError: ``batch`` < 1.
    """
    from tqdm import tqdm

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    dataset = open_dataset(data, split, images)
    detector = _load_detector(model, conf=conf, iou=iou, max_det=max_det, imgsz=imgsz)
    _check_names(detector, dataset)
    order = sorted(range(len(dataset)), key=dataset.image_id)  # COCO evaluators break score ties by image id
    evaluator = DetectionEvaluator(dataset.nc)
    predictions: List[Any] = []
    seconds = 0.0
    with tqdm(total=len(order), desc="val", unit="img", disable=not progress) as bar:
        for start in range(0, len(order), batch):
            chunk = order[start : start + batch]
            frames = [dataset.load_image(i) for i in chunk]
            tic = time.perf_counter()
            dets = detector(frames) if batch > 1 else [detector(frames[0])]
            seconds += time.perf_counter() - tic
            for i, frame, det in zip(chunk, frames, dets):
                gt = dataset.targets(i, (frame.shape[1], frame.shape[0]))
                evaluator.update(det.boxes, det.scores, det.class_ids, gt.boxes, gt.class_ids, gt.crowd)
                predictions.append(det)
            bar.update(len(chunk))
    metrics = evaluator.compute(dataset.names)
    results: Dict[str, Any] = dict(metrics.to_dict(), ms_per_image=1000 * seconds / max(len(order), 1), files={})
    if save_json is not None:
        out = Path(save_json)
        results["files"]["gt"] = str(write_json(to_coco_gt(dataset), out / "gt.json"))
        image_ids = [dataset.image_id(i) for i in order]
        preds = to_coco_predictions(predictions, image_ids, dataset.category_ids)
        results["files"]["predictions"] = str(write_json(preds, out / "predictions.json"))
    if plots is not None:
        from .plots import plot_pr_curve

        results["files"]["pr_curve"] = str(plot_pr_curve(metrics, Path(plots) / "pr_curve.png"))
    if save_json is not None:
        results["files"]["results"] = str(Path(save_json) / "results.json")
        write_json(results, Path(save_json) / "results.json")
    if verbose:
        LOGGER.info("%s", metrics.table())
        LOGGER.info("%.1f ms per image (pre-processing, inference, NMS)", results["ms_per_image"])
    return results


def _load_detector(
    model: Union[PathLike, DetectorLike], *, conf: float, iou: float, max_det: int, imgsz: Optional[int]
) -> DetectorLike:
    if callable(model):
        return model
    from ..runtime import Detector

    options: Dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det}
    if imgsz is not None:
        options["imgsz"] = imgsz
    return Detector.load(model, **options)


def _check_names(detector: DetectorLike, dataset: DetectionDataset) -> None:
    """Warn when the model's classes are not the dataset's (predictions of unknown class ids are not scored)."""
    names: Optional[Sequence[str]] = getattr(detector, "names", None)
    if names is not None and tuple(names) != tuple(dataset.names):
        LOGGER.warning(
            "the model's %d classes %s differ from the dataset's %d %s; class ids are compared as they are",
            len(names), list(names)[:6], dataset.nc, list(dataset.names)[:6],
        )
