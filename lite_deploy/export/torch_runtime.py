"""The ``.pt`` reference backend: a checkpoint run by PyTorch through the same Runtime interface as every artifact.

It loads any supported checkpoint, applies the export rewrites (:func:`~lite_deploy.models.deploy.prepare_for_export`)
and runs the export-mode model, so its outputs are exactly what the exported artifacts are compared against.
Host side (it needs torch and knows both the models and the runtime); the runtime registry names it by dotted path
only, so nothing on the device imports it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence, Union

import numpy as np
import torch

from ..boxes import to_hw
from ..runtime import Runtime, TensorInfo
from ..runtime.profiling.machine import free_cores
from ..spec import ModelSpec


def set_torch_threads(threads: Optional[int] = None) -> int:
    """Size torch's CPU thread pools on purpose: ``threads`` intra-op threads, one inter-op thread.

    torch's default (one thread per core, plus a second pool of inter-op threads) oversubscribes a machine whose
    cores are busy with other work: on a loaded 2-core machine two torch threads ran the demo at a p50 of 63 ms
    with 2.5 s stalls, one thread at a steady 28.5 ms.

    Args:
        threads: intra-op threads; ``None``: the cores free now
            (:func:`lite_deploy.runtime.profiling.machine.free_cores`).

    Returns:
        The intra-op thread count set.
    """
    count = max(1, int(threads)) if threads is not None else free_cores()
    torch.set_num_threads(count)
    if torch.get_num_interop_threads() != 1:
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:  # settable only before the process's first inter-op work; the pool is then in use
            pass
    return count


class TorchRuntime(Runtime):
    """An export-mode torch model on the CPU: float32 NCHW input of any batch and any size (multiples of the stride).

    Inputs: one NCHW float32 tensor; batch, height and width are free (the spec's ``imgsz`` is the default size).
    Outputs: ``boxes`` (B, N, 4) and ``scores`` (B, N, nc) for detectors, ``hm`` / ``wh`` / ``reg`` (B, C, H/4, W/4)
    for CenterNet-style detectors, ``logits`` (B, nc) for classifiers.

    Args:
        path: the weights file (any checkpoint :func:`lite_deploy.models.load_model` reads).
        spec: the spec to use; default: described from the checkpoint at ``imgsz``.
        imgsz: network input size (int or (height, width)) in pixels when no spec is given.
        threads: torch intra-op threads (``None``: the cores free now; see :func:`set_torch_threads`).
        shuffle: GSConv shuffle variant for checkpoints whose variant cannot be inferred.
    """

    def __init__(
        self, path: Union[str, Path], spec: Optional[ModelSpec] = None, *, imgsz: Union[int, Sequence[int]] = 640,
        threads: Optional[int] = None, shuffle: Optional[str] = None,
    ) -> None:
        from ..models import load_model
        from ..models.deploy import prepare_for_export

        model = load_model(path, shuffle=shuffle)
        if spec is None:
            from .describe import describe

            spec = describe(model, imgsz=to_hw(imgsz), target="torch", batch=None, source=path)
        super().__init__(path, spec)
        set_torch_threads(threads)
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
        with torch.inference_mode():
            out = self.model(x)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return {info.name: o.float().numpy() for info, o in zip(self._outputs, out)}
