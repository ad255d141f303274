"""ONNX (ONNX Runtime, or any ONNX consumer): ``<stem><tag>.onnx``.

FP32; FP16 (float16 inside, float32 I/O); INT8 as a Q/DQ ONNX with uint8 activations and every operator between
the convolutions quantized, which ONNX Runtime runs in int8 kernels. ``nms``: ONNX ``NonMaxSuppression`` (FP32/FP16).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .base import Built, Target

if TYPE_CHECKING:
    from pathlib import Path

    from ..exporter import Job


class ONNX(Target):
    name = "onnx"
    spec_target = "onnx"
    suffix = ".onnx"
    requires = (("onnxruntime", "pip install 'lite-deploy[onnxruntime]'"),)

    def build(self, job: "Job") -> Built:
        o = job.options
        spec = job.spec(self.spec_target, tools=job.onnx_tools())
        path = job.staged(self.filename(job.stem, o))
        if o.precision == "int8":
            def rebuild(layers: Sequence[str]) -> "Path":
                return job.write_qdq(path, spec, layers, "ort")

            path, seconds, gate = job.judged(rebuild(job.float_layers), spec, rebuild)
        else:
            path = job.write_onnx(path, spec, nms=o.nms, half=o.precision == "fp16")
            path, seconds, gate = job.judged(path, spec)
        return Built([([path], spec)], seconds, "", gate)
