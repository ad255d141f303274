"""TensorRT: ``<stem><tag>_trt.onnx`` (what ``lite-deploy build-engine`` builds from on the device) and, where
TensorRT and a GPU are present, ``<stem><tag>_trt.engine``.

The detector alone is verified (and, for INT8, judged) on ONNX Runtime; ``nms`` then appends ``EfficientNMS_TRT``,
which ONNX Runtime cannot run. FP16 exports an FP16 ONNX (TensorRT 11 builds strongly typed); INT8 the symmetric
Q/DQ ONNX with float biases (TensorRT 8.5/8.6 reject int32 bias DequantizeLinear).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from ...errors import BackendUnavailableError
from ...spec import ModelSpec, sidecar_path
from .base import Built, Target

if TYPE_CHECKING:
    from pathlib import Path

    from ..exporter import Job

DYNAMIC_MAX_BATCH = 4  # profile max (and opt) batch of a dynamic export unless build-engine says otherwise


class TensorRT(Target):
    name = "trt"
    spec_target = "tensorrt"
    aliases = ("tensorrt", "engine")
    suffix = "_trt.onnx"
    int8_nms = True
    max_opset = 17  # TensorRT 8.5 (JetPack 5)
    requires = (("tensorrt", "it comes with JetPack on the device"),)

    def build(self, job: "Job") -> Built:
        from ...runtime.backends.tensorrt.build import build_command, build_engine
        from ..describe import OUTPUT_NAMES, output_layout

        o = job.options
        spec = job.spec(self.spec_target, tools=job.onnx_tools())
        path = job.staged(self.filename(job.stem, o))
        layout = output_layout(job.model)
        plain = spec.replace(output_layout=layout, output_names=OUTPUT_NAMES[layout],
                             extra={k: v for k, v in spec.extra.items() if k != "nms"})
        if o.precision == "int8":  # the same Q/DQ graph TensorRT builds from
            def rebuild(layers: Sequence[str]) -> "Path":
                return job.write_qdq(path, plain, layers, "trt")

            path, verify_s, gate = job.judged(rebuild(job.float_layers), plain, rebuild)
        else:
            path = job.write_onnx(path, plain, nms=False, half=o.precision == "fp16")
            path, verify_s, gate = job.judged(path, plain.replace(target="onnx"))
        if o.nms:
            import onnx

            from .. import onnx as onnx_export
            from ..nms import append_efficient_nms

            proto = append_efficient_nms(onnx.load(str(path)), max_det=o.max_det, iou=o.iou, conf=o.conf)
            path = onnx_export.save(proto, path, spec)
        try:
            engine, _ = build_engine(path, half=o.precision == "fp16",
                                     max_batch=None if o.input_batch else DYNAMIC_MAX_BATCH, verify=False)
        except BackendUnavailableError:
            command = build_command(path.name, half=o.precision == "fp16", spec_batch=o.input_batch,
                                    max_batch=DYNAMIC_MAX_BATCH)
            return Built([([path], spec)], verify_s, f"TensorRT is not installed here; on the device run: {command}",
                         gate)
        engine_spec = ModelSpec.load(sidecar_path(engine))  # written by the device-side builder
        verify_s += job.verify(engine, engine_spec)
        return Built([([engine], engine_spec), ([path], spec)], verify_s, "", gate)
