"""The portable INT8 artifact: a symmetric Q/DQ ONNX that ONNX Runtime, OpenVINO and TensorRT 8.5-11 all take.

``QuantizeLinear``/``DequantizeLinear`` pairs around the quantized operators, int8 with every zero point 0 (what
TensorRT requires of explicit quantization), weights per output channel, activations per tensor, calibrated with
ONNX Runtime's ``quantize_static`` on images pre-processed as the runtime does, with activation ranges averaged
over the images (:mod:`.calibration` says why).

What is quantized, as measured on a ShuffleNetV2 + GSConv detector (synthetic shapes set at 320, 200 validation
images, FP32 mAP50-95 33.76):

- ``Conv`` and ``Concat``: 33.53 (-0.23). ``Concat`` outputs get their own quantizer on purpose: OpenVINO 2026.4's
  CPU plugin crashes (SIGSEGV at compile time) on a ``Concat`` of int8 tensors of different scales followed by a
  channel ``Gather``, which is exactly GSConv's channel shuffle; ``Conv`` alone gave 33.17 and crashed OpenVINO.
  Quantizing every operator ORT can (``Sigmoid``/``Mul`` of SiLU, ``Add``, ...) gave 32.50 and ran slower.
- Kept in float: everything after the last convolutions (the decode: sigmoid, grid and anchor arithmetic, concat)
  and those last convolutions themselves, whose outputs are box, objectness and class logits side by side in one
  tensor. With them in int8: 32.08 (Conv only) instead of 33.17. The same rule (:mod:`.float_tail`) keeps a
  CenterNet detector's heatmap sigmoid and its ``hm``, ``wh`` and ``reg`` convolutions in float.

:func:`quantize_qdq` takes more nodes to keep in float (the accuracy gate's per-layer fallback) and a calibration
cache, so that re-quantizing with another float set does not calibrate again.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple, Union

import onnx

from ..errors import BackendUnavailableError, ExportError
from ..runtime.calibration import CalibrationSet, input_range
from ..spec import ModelSpec
from .float_tail import float_tail

QUANTIZED_OPS = ("Conv", "Concat")
# ONNX Runtime's own artifact (uint8 activations): every operator between the convolutions too, so that each
# Conv / activation / shuffle / concat runs as one int8 kernel (QLinearConv, QLinearSigmoid, QLinearMul,
# QLinearConcat, int8 Transpose/Gather/MaxPool/Resize) instead of DequantizeLinear -> float op -> QuantizeLinear.
# On the demo detector at 320 (2 threads, interleaved medians, a shared 2-core machine): Conv + Concat int8 19.4 ms
# vs FP32 8.8 ms (312 DequantizeLinear and 174 QuantizeLinear nodes ran in float, 51 Conv stayed float); these ops
# with int8 activations 35.0 ms vs 15.4 ms (ORT's x86 kernels want uint8 activations); with uint8 activations
# 14.4 ms vs 15.4 ms, mAP50-95 70.6 vs FP32 70.3 (100 validation images).
ORT_QUANTIZED_OPS = ("Conv", "Concat", "Relu", "MaxPool", "Transpose", "Reshape", "Gather", "Split", "Slice", "Add",
                     "Resize", "Sigmoid", "Mul")
CONV_OPS = ("Conv", "ConvTranspose")


def decode_nodes(model: onnx.ModelProto) -> Tuple[List[str], List[str]]:
    """The nodes that stay in float: the decode after the last convolutions, and those last convolutions.

    The same rule for every detector (:func:`.float_tail.float_tail`): YOLO's decode and its per-level output
    convolutions; CenterNet's heatmap sigmoid and its ``hm``, ``wh`` and ``reg`` convolutions.

    Returns:
        ``(decode, head_convs)``: node names, in graph order.
    """
    consumers: Dict[str, List[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    decode, heads = float_tail(_topological(model), lambda n: [c for out in n.output for c in consumers.get(out, [])],
                               lambda n: n.op_type in CONV_OPS)
    float_ids = {id(n) for n in decode + heads}
    tail = [n for n in model.graph.node if id(n) in float_ids]
    return [n.name for n in tail if n.op_type not in CONV_OPS], [n.name for n in tail if n.op_type in CONV_OPS]


def quantizable_convs(model: onnx.ModelProto) -> List[str]:
    """Names of the convolutions :func:`quantize_qdq` quantizes by default (every one but the head's)."""
    _, heads = decode_nodes(model)
    return [n.name for n in model.graph.node if n.op_type in CONV_OPS and n.name not in heads]


def quantize_qdq(
    fp32: Union[str, Path],
    calib: CalibrationSet,
    spec: ModelSpec,
    *,
    float_nodes: Sequence[str] = (),
    cache: Optional[Union[str, Path]] = None,
    symmetric: bool = True,
    float_bias: bool = False,
    ops: Sequence[str] = QUANTIZED_OPS,
    work: Optional[Union[str, Path]] = None,
) -> onnx.ModelProto:
    """The Q/DQ INT8 model of the FP32 ONNX ``fp32`` (the caller embeds its spec and saves it).

    Args:
        fp32: the FP32 ONNX (lite-deploy export, one ``images`` input).
        calib: calibration images (pre-processed with the FP32 model's spec).
        spec: the INT8 artifact's spec (``precision`` ``int8``).
        float_nodes: more node names to keep in float (besides the decode and the head's convolutions).
        cache: calibration cache (JSON ranges): read if it exists, written after calibrating otherwise (a cache
            holds the ranges of one ``symmetric`` setting).
        symmetric: int8 activations with zero point 0 (the portable artifact). ``False``: uint8 activations with
            zero points (weights stay symmetric int8), which OpenVINO needs (see :mod:`.openvino_int8`).
        float_bias: keep the convolution biases float (TensorRT: 8.5/8.6 take only INT8 ``DequantizeLinear``
            inputs, so ONNX Runtime's INT32 bias ``DequantizeLinear`` nodes are rejected; TensorRT folds a float
            bias into the INT8 convolution itself). ``False``: int32 biases, which ONNX Runtime fuses into
            ``QLinearConv``.
        ops: operator types to quantize: :data:`QUANTIZED_OPS` (portable: TensorRT, OpenVINO) or
            :data:`ORT_QUANTIZED_OPS` with ``symmetric=False`` (ONNX Runtime's fastest).
        work: folder for the intermediate files (default: the system's temporary folder).

    Returns:
        The quantized model.

    Raises:
        BackendUnavailableError: onnxruntime is not installed.
        ExportError: the quantized model has a non-int8 or non-zero-point-0 Q/DQ node (an int32 one with
            ``float_bias``).
    """
    try:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    except ImportError as exc:
        raise BackendUnavailableError("INT8 ONNX needs onnxruntime: pip install 'lite-deploy[onnxruntime]'") from exc
    model = onnx.load(str(fp32))
    _name_nodes(model)
    decode, heads = decode_nodes(model)
    batch = _fixed_batch(model)
    with tempfile.TemporaryDirectory(prefix=".qdq.", dir=None if work is None else str(work)) as tmp, _quiet_ort():
        named = Path(tmp) / "named.onnx"
        onnx.save(model, str(named))
        quantized = Path(tmp) / "int8.onnx"
        ranges = Path(cache) if cache is not None else Path(tmp) / "ranges.json"
        if not ranges.is_file():
            _calibrate(named, ops, _reader(calib, batch, model.graph.input[0].name), ranges, Path(tmp))
        quantize_static(
            str(named), str(quantized), None,
            quant_format=QuantFormat.QDQ, op_types_to_quantize=list(ops), per_channel=True,
            activation_type=QuantType.QInt8 if symmetric else QuantType.QUInt8, weight_type=QuantType.QInt8,
            nodes_to_exclude=decode + heads + list(float_nodes), calibrate_method=CalibrationMethod.MinMax,
            extra_options={"ActivationSymmetric": symmetric, "WeightSymmetric": True, "CalibMovingAverage": True,
                           "QuantizeBias": not float_bias,
                           "TensorQuantOverrides": {model.graph.input[0].name: [input_range(spec)]}},
            calibration_cache_path=str(ranges),
        )
        proto = onnx.load(str(quantized))
    problems = check_qdq(proto, int32_bias=not float_bias) if symmetric else []
    if problems:
        raise ExportError("the Q/DQ model is not symmetric int8: " + "; ".join(problems[:5]))
    return proto


def check_qdq(model: onnx.ModelProto, int32_bias: bool = True) -> List[str]:
    """Problems that keep ``model`` from being a symmetric int8 Q/DQ model (empty when it is one).

    Every ``QuantizeLinear``/``DequantizeLinear`` must have an int8 zero point of 0 (with ``int32_bias``, an
    int32 zero point of 0 is accepted for the biases ONNX Runtime stores as int32 behind a ``DequantizeLinear``;
    without it, as TensorRT 8.5/8.6 require, it is a problem), and there must be at least one such pair.
    """
    from onnx import numpy_helper

    constants = {t.name: t for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type == "Constant" and node.attribute:
            constants[node.output[0]] = node.attribute[0].t
    problems: List[str] = []
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    if not any(n.op_type == "QuantizeLinear" for n in qdq):
        problems.append("no QuantizeLinear node: nothing was quantized")
    for node in qdq:
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if zero is None:
            problems.append(f"{node.name}: no zero point (uint8 by default)")
            continue
        values = numpy_helper.to_array(zero)
        int32_ok = int32_bias and node.op_type == "DequantizeLinear"
        allowed = (onnx.TensorProto.INT8,) + ((onnx.TensorProto.INT32,) if int32_ok else ())
        if zero.data_type not in allowed:
            kind = onnx.TensorProto.DataType.Name(zero.data_type)
            problems.append(f"{node.name}: zero point of type {kind}, not int8")
        if values.size and values.any():
            problems.append(f"{node.name}: zero point {values.ravel()[:4].tolist()} is not 0")
    return problems


def _calibrate(model: Path, ops: Sequence[str], reader: Any, ranges: Path, work: Path) -> None:
    """Write the averaged min/max ranges of ``model``'s tensors over ``reader`` to ``ranges`` (ONNX Runtime's
    calibration cache, which ``quantize_static`` then reads).

    ONNX Runtime's own calibrator, run in a session sized to the cores free now
    (:func:`~lite_deploy.runtime.backends.onnxruntime.runtime.session_options`): ``quantize_static`` would make it
    with ONNX Runtime's default threads, which spin and took turns from other work on a busy machine.
    """
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization.calibrate import create_calibrator, save_tensors_data

    from ..runtime.backends.onnxruntime.runtime import session_options

    calibrator = create_calibrator(model, list(ops), augmented_model_path=str(work / "augmented.onnx"),
                                   calibrate_method=CalibrationMethod.MinMax, extra_options={"moving_average": True})
    options = session_options()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # every calibrated tensor kept
    calibrator.infer_session = ort.InferenceSession(calibrator.augmented_model_path, sess_options=options,
                                                    providers=["CPUExecutionProvider"])
    calibrator.collect_data(reader)
    save_tensors_data(calibrator.compute_data(), ranges)


def _reader(calib: CalibrationSet, batch: int, input_name: str):
    """ONNX Runtime's calibration data reader over ``calib``: one ``{input_name: blob}`` per batch."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._blobs: Iterator = iter(calib.batches(batch))

        def get_next(self) -> Optional[Dict[str, object]]:
            blob = next(self._blobs, None)
            return None if blob is None else {input_name: blob}

    return Reader()


def _topological(model: onnx.ModelProto) -> List[onnx.NodeProto]:
    """The graph's nodes in dependency order (ONNX stores them so; this does not rely on it)."""
    produced = {out: node for node in model.graph.node for out in node.output}
    order: List[onnx.NodeProto] = []
    seen: Set[int] = set()
    for root in model.graph.node:
        stack = [(root, False)]
        while stack:
            node, done = stack.pop()
            if done:
                order.append(node)
                continue
            if id(node) in seen:
                continue
            seen.add(id(node))
            stack.append((node, True))
            stack.extend((produced[i], False) for i in node.input if i in produced and id(produced[i]) not in seen)
    return order


def _name_nodes(model: onnx.ModelProto) -> None:
    """Give unnamed (or duplicate-named) nodes unique names: ONNX Runtime's quantizer selects nodes by name."""
    seen: Set[str] = set()
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name in seen:
            node.name = f"{node.op_type}_{i}"
        seen.add(node.name)


def _fixed_batch(model: onnx.ModelProto) -> int:
    """The fixed batch size of the model's input, 1 for a symbolic one."""
    dim = model.graph.input[0].type.tensor_type.shape.dim[0]
    return dim.dim_value if dim.HasField("dim_value") and dim.dim_value > 0 else 1


@contextlib.contextmanager
def _quiet_ort() -> Iterator[None]:
    """ONNX Runtime's quantizer logs advice through the root logger; keep it to errors while it runs."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(level)
