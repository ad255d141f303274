"""OpenVINO INT8: an IR converted from a Q/DQ ONNX (:mod:`.qdq_onnx`) with uint8 activations, not NNCF's.

Measured on a ShuffleNetV2 + GSConv detector (the bundled demo's architecture) at 320 with OpenVINO 2026.4 and
NNCF 3.4 on this project's x86 CPU (FP32 mAP50-95 33.76 on 200 synthetic-shapes validation images):

- ``nncf.quantize`` on the FP32 IR (PERFORMANCE preset, the decode and the head's last convolutions in the
  ignored scope) produced an IR that crashes OpenVINO's CPU plugin at compile time (SIGSEGV). The trigger is a
  ``Concat`` of int8 tensors with different scales followed by a ``Gather`` on the channel axis, i.e. GSConv's
  channel shuffle; NNCF leaves that ``Concat``'s output unquantized. The Q/DQ ONNX puts a quantizer on every
  ``Concat`` output and compiles.
- The symmetric Q/DQ ONNX (int8 activations, zero point 0: the TensorRT-portable artifact) ran wrong on OpenVINO's
  CPU plugin while the FP32 export still had ``Concat -> Gather -> Conv`` channel shuffles (scores off by up to 0.36,
  mAP50-95 0.28 where ONNX Runtime ran the same file at 33.53), and right once the export folds those gathers into
  the convolution weights (demo detector at 224, 32 calibration images: 56.48 against FP32 56.31). The same
  quantization with uint8 activations and zero points (weights still symmetric int8 per channel), OpenVINO's own
  form, ran right in both cases (scores within 0.03 of FP32 before the fold; 56.14 after), so the IR is converted
  from that variant, with the same operators quantized and the same layers kept in float as the portable one.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import ExportError


def check_int8_ir(xml_path: Path, source: str) -> Path:
    """Refuse an IR converted from the Q/DQ ONNX ``source`` (from :func:`~lite_deploy.quantize.qdq_onnx.quantize_qdq`
    with ``symmetric=False``) that holds no ``FakeQuantize``: then it is not an INT8 model.

    Returns:
        ``xml_path``.

    Raises:
        ExportError: no ``FakeQuantize`` in the IR.
    """
    import openvino as ov

    if fake_quantize_count(ov.Core().read_model(str(xml_path))) == 0:
        raise ExportError(f"{source} converted to an IR without FakeQuantize: it is not an INT8 model")
    return xml_path


def fake_quantize_count(model) -> int:
    """Number of ``FakeQuantize`` operations (OpenVINO's form of a Q/DQ pair) in an ``ov.Model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
