"""The model and options an export starts from: weights (a file or a bundled config name) loaded, the output
folder chosen, and the options made concrete for the model (input size against its stride, the judging data)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..boxes import to_hw
from ..errors import CheckpointError, ConfigError
from .describe import output_layout
from .options import ExportOptions

LOGGER = logging.getLogger(__name__)


DEFAULT_IMGSZ = (640, 640)


def input_size(imgsz: Optional[Union[int, Sequence[int]]], source: Optional[Path]) -> Tuple[int, int]:
    """``imgsz`` as (height, width); when not given, the size the checkpoint ``source`` serves at, else 640."""
    if imgsz is not None:
        return to_hw(imgsz)
    from ..models.checkpoint import serving_imgsz

    return (serving_imgsz(source) if source is not None else None) or DEFAULT_IMGSZ


def resolve_options(options: ExportOptions, model: nn.Module, source: Optional[Path] = None) -> ExportOptions:
    """``options`` made concrete for ``model`` (loaded from ``source``): ``imgsz`` as (h, w) multiples of its stride
    (:func:`input_size`), ``data`` defaulting to a data.yaml ``calib`` for a verified INT8 export.

    Raises:
        ValueError: a size not a multiple of the stride, ``nms`` for a model without boxes and scores, INT8 for a
            classifier.
    """
    detector = getattr(model, "task", "detect") == "detect"
    stride = int(getattr(model, "stride", torch.tensor([32])).max()) if detector else 32
    hw = input_size(options.imgsz, source)
    for v in hw:
        if v <= 0:
            raise ValueError(f"imgsz must be one size or (height, width) in pixels, got {options.imgsz}")
        if v % stride:
            low, high = max(stride, v // stride * stride), (v // stride + 1) * stride
            raise ValueError(f"image size {v} is not a multiple of the model stride {stride}: use {low} or {high}")
    if options.nms and output_layout(model) != "boxes_scores":
        raise ValueError("--nms applies to anchor-based detectors only (CenterNet heatmaps are decoded without NMS)")
    data = options.data
    if options.precision == "int8":
        if output_layout(model) == "logits":
            raise ValueError("--int8 applies to detectors only (its accuracy gate measures mAP): export a classifier "
                             "without --int8")
        if data is None and options.verify and str(options.calib or "").lower().endswith((".yaml", ".yml")):
            data = str(options.calib)
        if data is None and options.verify:
            LOGGER.info("no --data: INT8 artifacts are judged by agreement with the FP32 model on held-out images "
                        "of the calibration folder; pass --data data.yaml to judge them by mAP on labels")
        elif data is None:
            LOGGER.warning("INT8 artifacts are not judged with --no-verify")
    return options.replace(imgsz=hw, data=None if data is None else str(data),
                           calib=None if options.calib is None else str(options.calib))


def load_weights(weights: Union[str, Path]) -> Tuple[nn.Module, Optional[Path]]:
    """A weights file, or a bundled config name (random weights, for trying the tool) -> (model, source file).

    Raises:
        CheckpointError: not an existing file and not a bundled config name.
    """
    from ..models import build_model, list_configs, load_model

    path = Path(weights)
    if path.is_file():
        return load_model(path), path
    if path.suffix or path.parent != Path("."):
        raise CheckpointError(f"weights file {str(weights)!r} does not exist")
    try:
        model = build_model(str(weights)).eval()
    except ConfigError:
        raise CheckpointError(
            f"{str(weights)!r} is neither a weights file nor a bundled config ({', '.join(list_configs())})"
        ) from None
    LOGGER.warning("%s: bundled config with random weights (for trying the tool; detections are meaningless)", weights)
    return model, None


def default_out_dir(weights: Union[str, Path], source: Optional[Path]) -> Path:
    """``<weights folder>/<stem>_export`` for a file, ``./<name>_export`` for a bundled config name."""
    if source is not None:
        return source.parent / f"{source.stem}_export"
    return Path.cwd() / f"{Path(weights).name}_export"
