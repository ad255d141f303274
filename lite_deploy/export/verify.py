"""Check an exported artifact against the PyTorch model it came from, on generated images.

The comparison itself (tolerances per precision, raw outputs, detections through the runtime's own decode and NMS,
the report) is the device's, :mod:`lite_deploy.runtime.compare`; this module adds the PyTorch reference.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence, Union

import numpy as np

from ..runtime.compare import VerificationReport, compare_with_reference
from ..spec import ModelSpec

if TYPE_CHECKING:  # torch is imported where the PyTorch reference runs
    from torch import nn


def verify_artifact(
    artifact: Union[str, Path],
    model: "nn.Module",
    spec: ModelSpec,
    *,
    images: Optional[Sequence[np.ndarray]] = None,
    conf: float = 0.25,
    iou: float = 0.45,
) -> VerificationReport:
    """Run ``artifact`` and the export-mode torch ``model`` on the same letterboxed images and compare.

    Args:
        artifact: the exported file (any suffix :func:`lite_deploy.runtime.load_runtime` opens).
        model: the export-mode module it came from (``prepare_for_export``), float32.
        spec: the artifact's spec (input size, layout, batch, outputs, precision).
        images: BGR images; default :func:`~lite_deploy.runtime.compare.sample_images` (as many as the batch, at
            least 2).
        conf, iou: thresholds of the detection comparison; an artifact ending in NMS (output layout ``nms``) is
            compared with torch's outputs after host NMS at the spec's ``extra['nms']`` thresholds instead.

    Returns:
        The report (check ``ok`` or call ``raise_for_failure``).
    """
    import torch

    def reference(x_nchw: np.ndarray) -> Sequence[np.ndarray]:
        with torch.no_grad():
            out = model(torch.from_numpy(x_nchw))
        return [o.numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]

    return compare_with_reference(artifact, reference, spec, images=images, conf=conf, iou=iou)
