"""Validate a classifier (checkpoint or exported artifact) on an image-folder split: top-1 and top-5 accuracy.

Every model goes through ``lite_deploy.runtime.Classifier``, so a ``.pt`` checkpoint and its exports are scored
with the pre-processing their spec declares (resize, centre crop, normalisation) and can be compared directly.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Union

import numpy as np

from ..data.image_folder import ImageFolder

LOGGER = logging.getLogger(__name__)

PathLike = Union[str, Path]
# A classifier: one BGR frame -> (class ids (k,), probabilities (k,)) best first, or a list of frames -> list.
ClassifierLike = Callable[[Any], Any]


def validate_classifier(
    model: Union[PathLike, ClassifierLike],
    data: Union[PathLike, ImageFolder],
    *,
    split: str = "val",
    imgsz: Optional[int] = None,
    batch: int = 1,
    progress: bool = True,
    verbose: bool = True,
) -> Dict[str, Any]:
    """Run a classifier over an image-folder split and score it.

    Args:
        model: a checkpoint or artifact path (``Classifier.load(path, top_k=5)``), or a callable taking one BGR
            frame (a list of them when ``batch`` > 1) and returning ``(class ids, probabilities)`` best first.
        data: the dataset folder (holding ``train/`` and ``val/``) or an open :class:`ImageFolder`.
        split: the split to score.
        imgsz: input size of a ``.pt`` checkpoint (default: the size it was trained at); artifacts have theirs.
        batch: frames per call.
        progress: show a progress bar.
        verbose: log the results.

    Returns:
        ``images``, ``top1``, ``top5`` (fractions), ``predictions`` ((N,) int64 top-1 class per image, in dataset
        order) and ``ms_per_image`` (classifier time per image, pre-processing to softmax).

    Raises:
        DatasetError: the dataset is malformed.
        ValueError: ``batch`` < 1.
    """
    from tqdm import tqdm

    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}")
    folder = data if isinstance(data, ImageFolder) else ImageFolder(data, split)
    classifier = model if callable(model) else _load(Path(model), imgsz)
    labels = folder.labels
    top1 = np.zeros(len(folder), bool)
    top5 = np.zeros(len(folder), bool)
    predictions = np.zeros(len(folder), np.int64)
    seconds = 0.0
    with tqdm(total=len(folder), desc="val", unit="img", disable=not progress) as bar:
        for start in range(0, len(folder), batch):
            indices = range(start, min(start + batch, len(folder)))
            frames = [folder.load_image(i) for i in indices]
            tic = time.perf_counter()
            results = classifier(frames) if batch > 1 else [classifier(frames[0])]
            seconds += time.perf_counter() - tic
            for i, (ids, _) in zip(indices, results):
                predictions[i] = ids[0]
                top1[i] = ids[0] == labels[i]
                top5[i] = labels[i] in ids[:5]
            bar.update(len(frames))
    results = {"images": len(folder), "top1": float(top1.mean()) if len(folder) else 0.0,
               "top5": float(top5.mean()) if len(folder) else 0.0, "predictions": predictions,
               "ms_per_image": 1000 * seconds / max(len(folder), 1)}
    if verbose:
        LOGGER.info("%d images: top-1 %.4f  top-5 %.4f  (%.1f ms per image)", results["images"], results["top1"],
                    results["top5"], results["ms_per_image"])
    return results


def _load(path: Path, imgsz: Optional[int]) -> ClassifierLike:
    from ..runtime import Classifier

    if path.suffix == ".pt":
        return Classifier.load(path, top_k=5, imgsz=imgsz or _serving_side(path))
    return Classifier.load(path, top_k=5)


def _serving_side(path: Path) -> int:
    """The square side a lite-deploy classifier checkpoint serves at (224 when it does not say)."""
    from ..models.checkpoint import serving_imgsz

    size = serving_imgsz(path)
    return size[0] if size else 224
