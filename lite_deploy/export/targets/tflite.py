"""TFLite (LiteRT, XNNPACK): ``<stem><tag>.tflite``, converted from torch by litert-torch (no ONNX), NHWC input.

FP32; FP16 weights; INT8 with int8 activations and weights (static, calibrated; the head in float), input ``int8``
or ``float32`` (``tflite_io``). Needs a fixed batch; no in-graph NMS.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from .base import Built, Target

if TYPE_CHECKING:
    from pathlib import Path

    from ..exporter import Job

_HOW = "pip install 'lite-deploy[tflite]'"


class TFLite(Target):
    name = "tflite"
    spec_target = "tflite"
    suffix = ".tflite"
    fixed_batch = True
    nms = False
    requires = (("litert_torch", _HOW), ("ai_edge_litert", _HOW))

    def build(self, job: "Job") -> Built:
        from ..tflite import DEFAULT_LAYOUT, torch_to_tflite, torch_to_tflite_int8

        o = job.options
        spec = job.spec(self.spec_target, layout=DEFAULT_LAYOUT, tools=("torch", "litert-torch"))
        path = job.staged(self.filename(job.stem, o))
        if o.precision == "int8":
            from ...quantize.tflite_int8 import module_of_node

            spec = spec.replace(input_dtype=o.tflite_io)

            def rebuild(layers: Sequence[str]) -> "Path":
                return torch_to_tflite_int8(job.export_model, path, spec, job.calibration(spec),
                                            float_modules=[module_of_node(n) for n in layers])

            path, seconds, gate = job.judged(rebuild(job.float_layers), spec, rebuild)
        else:
            path, seconds, gate = job.judged(torch_to_tflite(job.export_model, path, spec), spec)
        return Built([([path], spec)], seconds, "", gate)
