"""Validate a detector (any checkpoint or exported artifact the runtime loads) on a dataset: COCO mAP, P, R.

Every model goes through the same path, ``lite_deploy.runtime.Detector``, so a ``.pt`` checkpoint and its ONNX,
OpenVINO or TFLite exports are scored with identical pre-processing, decoding and NMS, and their numbers can be
compared directly. With ``save_json`` the ground truth and predictions are written as COCO JSON, so pycocotools (or
any COCO evaluator) can recompute the same mAP.

The default protocol is YOLOv5 ``val.py``'s: multi-label NMS (every class whose score exceeds ``conf`` gets its own
candidate box) at conf 0.001, IoU 0.6, at most 300 detections per image, with at most 30000 candidates entering NMS
and classes kept apart by a 7680-pixel offset. ``multi_label=False`` keeps only each box's best class (what
``predict`` reports). Inputs are the ``imgsz`` square letterbox by default; ``rect=True`` gives each
image ``val.py``'s rectangular input instead (see :func:`rect_shape`).

Boxes are mapped back to the image by subtracting the integer padding the letterbox really added and dividing by
the resize gain. YOLOv5's ``scale_boxes`` subtracts half the total padding, which is 0.5 px off the image for odd
paddings; lite-deploy keeps the exact placement, a difference of at most 0.5 px in the input.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..data.coco import CocoDataset, to_coco_gt, to_coco_predictions, write_json
from ..data.dataset import DetectionDataset
from ..data.yolo import YoloDataset
from .metrics import DetectionEvaluator

LOGGER = logging.getLogger(__name__)

PathLike = Union[str, Path]
# A detector: one BGR frame -> Detections, or a list of frames -> list of Detections.
DetectorLike = Callable[[Any], Any]

RECT_PAD = 0.5  # val.py's padding of rectangular inputs, in strides


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
    multi_label: bool = True,
    rect: bool = False,
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
        multi_label: NMS candidates for every class above ``conf`` (YOLOv5 ``val.py``), or the best class only.
        rect: give each image ``val.py``'s rectangular input (:func:`rect_shape`, resized as :func:`rect_input`
            says) instead of the ``imgsz`` square; needs a model path with a dynamic height and width (a ``.pt``).
        imgsz: network input size, for models that accept one (checkpoints); artifacts have theirs fixed.
        batch: frames per detector call.
        save_json: folder for ``gt.json``, ``predictions.json`` (COCO) and ``results.json``.
        plots: folder for ``pr_curve.png``.
        progress: show a progress bar.
        verbose: log the results table.

    Returns:
        ``images``, ``instances``, ``precision``, ``recall``, ``map50``, ``map50_95``, ``f1_conf``, ``per_class``
        (name -> the same keys), ``ms_per_image`` (detector time per image, pre-processing to NMS, with ``rect``
        also its resize), ``protocol`` (one line: NMS mode, thresholds, inputs) and ``files`` (what was written).

    Raises:
        DatasetError: the dataset is malformed.
        LiteDeployError: ``rect`` with a model of fixed input height and width.
        ValueError: ``batch`` < 1, or ``rect`` with a ready detector instead of a path.
    """
    from tqdm import tqdm

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    if rect and callable(model):
        raise ValueError("rect needs a model path (a .pt checkpoint), not a ready detector")
    dataset = open_dataset(data, split, images)
    detector = _load_detector(model, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label, imgsz=imgsz)
    if rect:
        detector = RectDetector(detector)
    _check_names(detector, dataset)
    protocol = describe_protocol(detector, conf=conf, iou=iou, max_det=max_det, multi_label=multi_label)
    if verbose:
        LOGGER.info("protocol: %s", protocol)
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
    results: Dict[str, Any] = dict(metrics.to_dict(), ms_per_image=1000 * seconds / max(len(order), 1),
                                   protocol=protocol, files={})
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


def describe_protocol(detector: DetectorLike, *, conf: float, iou: float, max_det: int, multi_label: bool) -> str:
    """One line saying how the detections were made, e.g. ``multi-label NMS (YOLOv5 val.py), conf 0.001, ...``."""
    nms = "multi-label NMS (YOLOv5 val.py)" if multi_label else "single-label NMS (best class per box)"
    if isinstance(detector, RectDetector):
        inputs = f"rectangular inputs (val.py --rect: long side {detector.imgsz}, pad {RECT_PAD} stride)"
    else:
        spec = getattr(detector, "spec", None)
        inputs = f"{spec.imgsz[0]}x{spec.imgsz[1]} letterbox" if spec is not None else "inputs of the given detector"
    return f"{nms}, conf {conf:g}, IoU {iou:g}, max_det {max_det}, {inputs}"


def rect_shape(shape: Tuple[int, int], imgsz: int, stride: int, pad: float = RECT_PAD) -> Tuple[int, int]:
    """YOLOv5 ``val.py``'s rectangular network input (height, width) for one image, as its dataloader computes
    the shape of a batch (here a batch of one image).

    The image's aspect ratio ``ar = h / w`` gives the relative shape ``(ar, 1)`` for a wide image, ``(1, 1 / ar)``
    for a tall one and ``(1, 1)`` for a square one; each side is ``ceil(rel * imgsz / stride + pad) * stride``. With
    ``pad`` 0.5 every side gets at least half a stride of padding, so a square image at 224 gets a 256x256 input.

    Args:
        shape: image (height, width) in pixels.
        imgsz: long side of the resized image in pixels.
        stride: the model's largest stride in pixels.
        pad: padding in strides.

    Returns:
        (height, width) in pixels, multiples of ``stride``.
    """
    ar = shape[0] / shape[1]
    rel = (ar, 1.0) if ar < 1 else (1.0, 1 / ar) if ar > 1 else (1.0, 1.0)
    height, width = (int(math.ceil(s * imgsz / stride + pad)) * stride for s in rel)
    return height, width


def rect_input(
    frame: np.ndarray, imgsz: int, stride: int, pad: float = RECT_PAD
) -> Tuple[np.ndarray, Tuple[float, float], Tuple[int, int]]:
    """An image as YOLOv5 ``val.py`` feeds it with ``--rect``: resized, then padded to :func:`rect_shape`.

    The resize makes the long side ``imgsz`` (size ``ceil(w * r), ceil(h * r)`` with ``r = imgsz / max(h, w)``,
    ``INTER_AREA`` when shrinking, ``INTER_LINEAR`` when enlarging); the letterbox then only pads (no second
    resize), centred, with 114.

    Args:
        frame: (H, W, 3) uint8 BGR image.
        imgsz: long side after the resize, pixels.
        stride: the model's largest stride in pixels.
        pad: padding in strides.

    Returns:
        ``(canvas, (gain_x, gain_y), (left, top))``: the (h, w, 3) input, the resize gain along each axis (resized
        over original pixels) and the padding left of and above the image, in pixels.
    """
    from ..runtime.pipeline.preprocess import letterbox, plan_letterbox

    h0, w0 = frame.shape[:2]
    r = imgsz / max(h0, w0)
    if r != 1:
        size = (int(math.ceil(w0 * r)), int(math.ceil(h0 * r)))
        frame = cv2.resize(frame, size, interpolation=cv2.INTER_LINEAR if r > 1 else cv2.INTER_AREA)
    shape = rect_shape((h0, w0), imgsz, stride, pad)
    plan = plan_letterbox(frame.shape[:2], shape, stride, auto=False, scaleup=False)
    canvas, _, _ = letterbox(frame, shape, stride, auto=False, scaleup=False)
    return canvas, (frame.shape[1] / w0, frame.shape[0] / h0), (plan.left, plan.top)


class RectDetector:
    """A :class:`~lite_deploy.runtime.Detector` run on ``val.py``'s rectangular inputs (:func:`rect_input`).

    One detector per input shape shares the loaded runtime and its thresholds; detections come back in the
    original images' pixels.

    Args:
        detector: a detector whose model takes any height and width; its ``imgsz`` long side is the resize target.

    Raises:
        LiteDeployError: the model's input height and width are fixed.
    """

    def __init__(self, detector: Any) -> None:
        from ..errors import LiteDeployError

        info = detector.runtime.inputs[0]
        fixed = info.shape[2:4] if detector.spec.layout == "NCHW" else info.shape[1:3]
        if any(f is not None for f in fixed):
            raise LiteDeployError(
                f"{detector.runtime.path.name} takes fixed {fixed[0]}x{fixed[1]} inputs, so it cannot take val.py's "
                "rectangular ones: drop --rect, or validate the .pt checkpoint"
            )
        self.base = detector
        self.names = detector.names
        self.imgsz = max(detector.spec.imgsz)
        self.stride = detector.spec.stride
        self._by_shape: Dict[Tuple[int, int], Any] = {}

    def __call__(self, frames: Any) -> Any:
        """Detections of one frame, or a list of them for a list of frames (one model call per input shape)."""
        from ..runtime.pipeline.detections import Detections

        single = not isinstance(frames, (list, tuple))
        frames = [frames] if single else list(frames)
        inputs = [rect_input(f, self.imgsz, self.stride) for f in frames]
        groups: Dict[Tuple[int, int], List[int]] = {}
        for i, (canvas, _, _) in enumerate(inputs):
            groups.setdefault(canvas.shape[:2], []).append(i)
        results: List[Any] = [None] * len(frames)
        for shape, members in groups.items():
            outputs = self._detector(shape)([inputs[i][0] for i in members])
            for i, det in zip(members, outputs):
                (gain_x, gain_y), (left, top) = inputs[i][1], inputs[i][2]
                boxes = (det.boxes - np.array([left, top, left, top], np.float32)) / np.array(
                    [gain_x, gain_y, gain_x, gain_y], np.float32)
                height, width = frames[i].shape[:2]
                np.clip(boxes[:, 0::2], 0, width, out=boxes[:, 0::2])
                np.clip(boxes[:, 1::2], 0, height, out=boxes[:, 1::2])
                results[i] = Detections(boxes.astype(np.float32), det.scores, det.class_ids, det.names)
        return results[0] if single else results

    def _detector(self, shape: Tuple[int, int]) -> Any:
        """The detector for inputs of ``shape`` (height, width), made on first use."""
        if shape not in self._by_shape:
            from ..runtime import Detector

            base = self.base
            self._by_shape[shape] = Detector(base.runtime, base.conf, base.iou, base.max_det, base.classes,
                                             base.agnostic, base.multi_label, imgsz=shape, max_nms=base.max_nms)
        return self._by_shape[shape]


def _load_detector(
    model: Union[PathLike, DetectorLike], *, conf: float, iou: float, max_det: int, multi_label: bool,
    imgsz: Optional[int],
) -> DetectorLike:
    if callable(model):
        return model
    from ..runtime import Detector

    options: Dict[str, Any] = {"conf": conf, "iou": iou, "max_det": max_det, "multi_label": multi_label}
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
