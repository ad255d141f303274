"""The ``.pt`` reference backend: a checkpoint run by PyTorch through the same Runtime interface as every artifact.

It loads any supported checkpoint, applies the export rewrites (:func:`~lite_deploy.models.deploy.prepare_for_export`)
and runs the export-mode model, so its outputs are exactly what the exported artifacts are compared against.
Host side only (needs torch); the runtime registry imports it by dotted name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ..runtime.base import Runtime, TensorInfo
from ..spec import ModelSpec


class TorchRuntime(Runtime):
    """An export-mode torch model on the CPU: float32 NCHW input of any batch and any size (multiples of the stride).

    Inputs: one NCHW float32 tensor; batch, height and width are free (the spec's ``imgsz`` is the default size).
    Outputs: ``boxes`` (B, N, 4) and ``scores`` (B, N, nc) for detectors, ``hm`` / ``wh`` / ``reg`` (B, C, H/4, W/4)
    for CenterNet-style detectors, ``logits`` (B, nc) for classifiers.

    Args:
        path: the weights file (any checkpoint :func:`lite_deploy.models.load_model` reads).
        spec: the spec to use; default: described from the checkpoint at ``imgsz``.
        imgsz: network input size (int or (height, width)) in pixels when no spec is given.
        threads: torch intra-op threads (``None`` leaves torch's setting).
        shuffle: GSConv shuffle variant for checkpoints whose variant cannot be inferred.
    """

    def __init__(
        self, path: Union[str, Path], spec: Optional[ModelSpec] = None, *, imgsz: Union[int, Sequence[int]] = 640,
        threads: Optional[int] = None, shuffle: Optional[str] = None,
    ) -> None:
        from . import load_model
        from .deploy import prepare_for_export

        model = load_model(path, shuffle=shuffle)
        if spec is None:
            from ..export.describe import describe

            hw = (int(imgsz), int(imgsz)) if isinstance(imgsz, int) else tuple(int(v) for v in imgsz)
            spec = describe(model, imgsz=hw, target="torch", batch=None, source=path)
        super().__init__(path, spec)
        if threads is not None:
            torch.set_num_threads(int(threads))
        self.model = prepare_for_export(model)
        f32 = np.dtype(np.float32)
        self._inputs = (TensorInfo(spec.input_name, (None, 3, None, None), f32),)
        if spec.output_layout == "logits":
            shapes = [(None, spec.nc)]
        elif spec.output_layout == "centernet":
            shapes = [(None, spec.nc, None, None), (None, 2, None, None), (None, 2, None, None)]
        else:
            shapes = [(None, None, 4), (None, None, spec.nc)]
        self._outputs = tuple(TensorInfo(name, shape, f32) for name, shape in zip(spec.output_names, shapes))

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        x = torch.from_numpy(np.ascontiguousarray(feeds[self._inputs[0].name]))
        with torch.no_grad():
            out = self.model(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {info.name: o.float().numpy() for info, o in zip(self._outputs, out)}
