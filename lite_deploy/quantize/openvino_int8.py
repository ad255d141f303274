"""OpenVINO INT8: the IR converted from the symmetric Q/DQ ONNX (:mod:`.qdq_onnx`), not NNCF's own quantization.

Both were measured on a ShuffleNetV2 + GSConv detector (the bundled demo's architecture) at 320 with OpenVINO
2026.4 and NNCF 3.4 on this project's x86 CPU:

- ``nncf.quantize`` on the FP32 IR (PERFORMANCE preset, the decode and the head's last convolutions in the
  ignored scope) produced an IR that crashes OpenVINO's CPU plugin at compile time (SIGSEGV). The trigger is a
  ``Concat`` of int8 tensors with different scales followed by a ``Gather`` on the channel axis, i.e. GSConv's
  channel shuffle; NNCF leaves that ``Concat``'s output unquantized.
- The Q/DQ ONNX, which puts a quantizer on every ``Concat`` output, converts with ``ov.convert_model`` (each Q/DQ
  pair becomes a ``FakeQuantize``), compiles, and lost 0.23 mAP50-95 points; the same file is the ONNX Runtime
  and TensorRT artifact, so all three run the same quantization.
"""

from __future__ import annotations

from pathlib import Path
from typing import Union

from ..errors import ExportError
from ..export.openvino import onnx_to_openvino
from ..spec import ModelSpec


def qdq_to_openvino(qdq_onnx: Union[str, Path], xml_path: Union[str, Path], spec: ModelSpec) -> Path:
    """Convert the Q/DQ ONNX to an INT8 IR at ``xml_path`` (``.bin`` and spec JSON beside it).

    Args:
        qdq_onnx: the symmetric Q/DQ ONNX from :func:`~lite_deploy.quantize.qdq_onnx.quantize_qdq`.
        xml_path: destination ``.xml``.
        spec: the IR's spec (``precision`` ``int8``, ``target`` ``openvino``).

    Returns:
        ``xml_path``.

    Raises:
        ExportError: the IR holds no ``FakeQuantize`` (the ONNX was not quantized), or OpenVINO cannot convert it.
    """
    import openvino as ov

    xml = onnx_to_openvino(qdq_onnx, xml_path, spec)
    count = fake_quantize_count(ov.Core().read_model(str(xml)))
    if count == 0:
        raise ExportError(f"{Path(qdq_onnx).name} converted to an IR without FakeQuantize: it is not an INT8 model")
    return xml


def fake_quantize_count(model) -> int:
    """Number of ``FakeQuantize`` operations (OpenVINO's form of a Q/DQ pair) in an ``ov.Model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
