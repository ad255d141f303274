"""Judging INT8 without labels: the FP32 model's own detections on held-out images are the ground truth.

``export --int8 --calib FOLDER`` without ``--data`` has no labelled set to measure mAP on. The FP32 model is the
reference the INT8 artifact should reproduce, so its confident detections (:data:`AGREEMENT_CONF`, the threshold
``predict`` shows) on up to :data:`AGREEMENT_IMAGES` images of the calibration folder that calibration did not use
become YOLO labels; the accuracy gate then scores the FP32 model and the INT8 artifact on them exactly as it does on
a labelled set (mAP50 and mAP50-95, the same limits and per-layer fallback). The FP32 model does not score 1 on its
own detections (its low-confidence boxes and their ranking count too), so the drop, not the value, is the measure.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import List, Optional, Sequence, Union

import numpy as np

from ..boxes import xyxy_to_xywhn
from ..data.yolo import label_text, list_images, write_data_config
from ..io import read_image

LOGGER = logging.getLogger(__name__)

AGREEMENT_IMAGES = 100  # held-out images the FP32 detections are taken on
AGREEMENT_CONF = 0.25  # FP32 detections at or above this score become the labels (predict's default)
AGREEMENT_IOU = 0.45  # their NMS IoU (predict's default)

PathLike = Union[str, Path]


def held_out_images(folder: PathLike, used: Sequence[Path], size: int = AGREEMENT_IMAGES, *,
                    seed: int = 0) -> List[Path]:
    """Up to ``size`` images of ``folder`` that calibration did not use (a seeded sample, sorted).

    When calibration used every image of the folder, the calibration images themselves are returned (with a
    warning: agreement on seen images is a weaker test).
    """
    images, _ = list_images([Path(folder)])
    seen = {Path(p).resolve() for p in used}
    unseen = [p for p in images if p.resolve() not in seen]
    if not unseen:
        LOGGER.warning("every image of %s calibrated INT8: its agreement with FP32 is judged on those same images; "
                       "add images the calibration does not use (or pass --data) for an independent check", folder)
        unseen = sorted(Path(p) for p in used)
    if len(unseen) > size:
        pick = np.random.default_rng(seed).choice(len(unseen), size, replace=False)
        unseen = [unseen[i] for i in sorted(pick)]
    return unseen


def pseudo_labelled_set(reference: PathLike, images: Sequence[Path], work: PathLike) -> Optional[Path]:
    """A YOLO dataset in ``work`` whose labels are the FP32 ``reference`` model's detections on ``images``.

    Args:
        reference: the FP32 artifact (an ONNX with its spec), run through the device's own Detector.
        images: the images to label.
        work: an empty or missing folder; receives ``images/val``, ``labels/val`` and ``data.yaml``.

    Returns:
        The ``data.yaml`` (its train and val splits are both the labelled images); None when the FP32 model detects
        nothing on them (there is nothing to agree on).
    """
    from ..runtime import Detector

    root = Path(work)
    image_dir, label_dir = root / "images" / "val", root / "labels" / "val"
    image_dir.mkdir(parents=True, exist_ok=True)
    label_dir.mkdir(parents=True, exist_ok=True)
    boxes = 0
    with Detector.load(reference, conf=AGREEMENT_CONF, iou=AGREEMENT_IOU) as detector:
        for i, source in enumerate(images):
            frame = read_image(source)
            dets = detector(frame)
            target = image_dir / f"{i:05d}{source.suffix.lower()}"
            _link_or_copy(source, target)
            xywhn = xyxy_to_xywhn(dets.boxes, (frame.shape[1], frame.shape[0]))
            kept = (xywhn[:, 2] > 0) & (xywhn[:, 3] > 0)
            (label_dir / f"{i:05d}.txt").write_text(label_text(np.asarray(dets.class_ids)[kept], xywhn[kept]))
            boxes += int(kept.sum())
        names = list(detector.names)
    if not boxes:
        LOGGER.warning("INT8 is not judged: the FP32 model detects nothing (conf >= %g) on the %d calibration-folder "
                       "images; pass --data data.yaml to judge it by mAP", AGREEMENT_CONF, len(images))
        return None
    data = write_data_config(root, names, train="images/val", val="images/val")
    LOGGER.info("INT8 is judged by agreement with the FP32 model: its %d detections (conf >= %g) on %d held-out "
                "images are the labels", boxes, AGREEMENT_CONF, len(images))
    return data


def agreement_set(folder: PathLike, used: Sequence[Path], reference: PathLike, work: PathLike) -> str:
    """The data.yaml INT8 is judged by without labels: :func:`held_out_images` of the calibration ``folder``
    labelled by the FP32 ``reference`` (:func:`pseudo_labelled_set`) in ``work``; ``""`` when it detects nothing."""
    data = pseudo_labelled_set(reference, held_out_images(folder, used), work)
    return "" if data is None else str(data)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
