"""Static compatibility report of an ONNX model for a deployment target, without its hardware.

``check_model(path, target)`` lists, per finding, whether it will not run (``error``), may run badly or only on
some devices (``warn``), or is worth knowing (``info``):

- operators against the target's published support table (TensorRT) or the real converter (OpenVINO);
- the opset against the target's limit (TensorRT 8.5 parses up to 17);
- tensors of rank > 4 (ONNX shape inference): fine for TensorRT (<= 8 dims), but beyond many NPU compilers and
  the TFLite GPU delegate;
- Reshape nodes whose target shape folds the batch axis into another axis (the slim-neck GSConv 3-D shuffle:
  the batch size is baked in and a dynamic batch breaks) and Transposes that move the batch axis;
- data-dependent output shapes (NonZero, Unique, NonMaxSuppression, Resize/TopK/Range/Expand/Tile with sizes
  computed at run time);
- INT64 initializers (TensorRT 8.5 casts them to INT32; values outside its range are an error);
- plugin nodes (``EfficientNMS_TRT``) and where they exist.

Host or device: needs only ``onnx`` (and OpenVINO for ``--target openvino``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, FrozenSet, List, Optional, Tuple, Union

import numpy as np

from ..errors import BackendUnavailableError

# Operators marked "Y" in onnx-tensorrt docs/operators.md, release/8.5-GA ("TensorRT 8.5 supports operators up to
# Opset 17"). Operators not listed there, or marked "N", are reported as unsupported.
_TRT85_OPS = """
Abs Acos Acosh Add And ArgMax ArgMin Asin Asinh Atan Atanh AveragePool BatchNormalization Cast Ceil Celu Clip
Concat Constant ConstantOfShape Conv ConvTranspose Cos Cosh CumSum DepthToSpace DequantizeLinear Div Dropout Einsum
Elu Equal Erf Exp Expand EyeLike Flatten Floor Gather GatherElements GatherND Gemm GlobalAveragePool GlobalLpPool
GlobalMaxPool Greater GreaterOrEqual GridSample GRU HardSwish HardSigmoid Identity If ImageScaler
InstanceNormalization IsNaN LeakyRelu Less LessOrEqual Log LogSoftmax Loop LRN LSTM LpNormalization LpPool MatMul Max
MaxPool Mean MeanVarianceNormalization Min Mod Mul Neg NonMaxSuppression NonZero Not OneHot Or Pad ParametricSoftplus
Pow PRelu QuantizeLinear RandomNormal RandomNormalLike RandomUniform RandomUniformLike Range Reciprocal ReduceL1
ReduceL2 ReduceLogSum ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape
Resize ReverseSequence RNN RoiAlign Round ScaledTanh Scan Scatter ScatterElements ScatterND Selu Shape Shrink Sigmoid
Sign Sin Sinh Size Slice Softmax Softplus Softsign SpaceToDepth Split Sqrt Squeeze Sub Sum Tan Tanh ThresholdedRelu
Tile TopK Transpose Trilu Unsqueeze Upsample Where Xor
"""
# Operators marked "Y" in onnx-tensorrt docs/operators.md of the TensorRT 10.15 release ("opset 9 to opset 24"),
# the newest 10.x table; operators added after 8.5 that matter for detectors: LayerNormalization, Mish, Gelu,
# GroupNormalization, IsInf, CastLike, Hardmax, windows, STFT, DeformConv, Attention.
_TRT10_EXTRA = """
Attention BlackmanWindow CastLike DeformConv Gelu GroupNormalization HammingWindow HannWindow Hardmax IsInf
LayerNormalization Mish RMSNormalization RotaryEmbedding STFT TensorScatter
"""

# Added after 10.3 (JetPack 6.1/6.2), "N" in its table: windows, STFT, DeformConv and the opset 23/24 operators.
_AFTER_TRT103 = """
Attention BlackmanWindow DeformConv HammingWindow HannWindow RMSNormalization RotaryEmbedding STFT TensorScatter
"""

_PLUGINS = {"EfficientNMS_TRT"}

# Q/DQ data types each TensorRT takes (onnx-tensorrt operators.md): DequantizeLinear's input and QuantizeLinear's
# zero point (its output type); 8.5/8.6: INT8 only (an INT32 bias DequantizeLinear is rejected); 10.x+ adds FP8/INT4.
_QDQ_TYPES = {"trt8.5": ("INT8",), "trt8.6": ("INT8",), "trt10": ("INT8", "FLOAT8E4M3FN", "INT4"),
              "trt11": ("INT8", "FLOAT8E4M3FN", "INT4")}


@dataclass(frozen=True)
class TargetRules:
    """What one target accepts.

    Attributes:
        name: the ``--target`` name.
        title: what it is, for the report.
        max_opset: newest default-domain opset its ONNX importer reads.
        ops: supported operator types (``None``: asked of the real converter instead).
        max_rank: tensors above this rank get a warning.
        source: where the table comes from.
    """

    name: str
    title: str
    max_opset: int
    ops: Optional[FrozenSet[str]]
    max_rank: int
    source: str


def _ops(*blocks: str) -> FrozenSet[str]:
    return frozenset(op for block in blocks for op in block.split())


TARGETS: Dict[str, TargetRules] = {
    "trt8.5": TargetRules("trt8.5", "TensorRT 8.5 (JetPack 5)", 17, _ops(_TRT85_OPS), 8,
                          "onnx-tensorrt release/8.5-GA docs/operators.md"),
    # JetPack 6.0 ships TensorRT 8.6: the 8.5 operators (8.6 adds none a detector uses), opset 17
    "trt8.6": TargetRules("trt8.6", "TensorRT 8.6 (JetPack 6.0)", 17, _ops(_TRT85_OPS), 8,
                          "onnx-tensorrt release/8.6-GA docs/operators.md"),
    # JetPack 6.1/6.2 ship TensorRT 10.3: the 10.x operators without those added after 10.3; opsets 9-20
    "trt10": TargetRules("trt10", "TensorRT 10.3 (JetPack 6.1/6.2)", 20,
                         _ops(_TRT85_OPS, _TRT10_EXTRA) - _ops(_AFTER_TRT103), 8,
                         "onnx-tensorrt docs/operators.md, TensorRT 10.3 (opsets 9-20)"),
    "trt11": TargetRules("trt11", "TensorRT 11.x", 24, _ops(_TRT85_OPS, _TRT10_EXTRA), 8,
                         "onnx-tensorrt docs/operators.md, TensorRT 10.15 table; opsets 9-24"),
    "openvino": TargetRules("openvino", "OpenVINO (ONNX frontend)", 22, None, 8, "openvino.convert_model"),
    "tflite": TargetRules("tflite", "TFLite (XNNPACK / GPU delegate / NPU)", 22, None, 4,
                          "lite-deploy converts TFLite from torch; this checks the graph's shapes"),
}

_DATA_DEPENDENT = {"NonZero", "Unique", "NonMaxSuppression", "Compress"}
_SIZE_INPUTS = {"Resize": (2, 3), "TopK": (1,), "Range": (0, 1, 2), "Expand": (1,), "Tile": (1,),
                "ConstantOfShape": (0,)}


@dataclass(frozen=True)
class Finding:
    """One line of the report: ``level`` is ``error``, ``warn`` or ``info``."""

    level: str
    check: str
    detail: str


@dataclass
class CheckReport:
    """All findings for one model and target."""

    model: str
    target: TargetRules
    findings: List[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No finding says the model will not run."""
        return not any(f.level == "error" for f in self.findings)

    def add(self, level: str, check: str, detail: str) -> None:
        """Record a finding."""
        self.findings.append(Finding(level, check, detail))

    def table(self) -> str:
        """The report as a plain-text table."""
        lines = [f"{self.model} on {self.target.title} (operators: {self.target.source})",
                 f"  {'level':<6} {'check':<14} detail"]
        order = {"error": 0, "warn": 1, "info": 2}
        for f in sorted(self.findings, key=lambda f: order[f.level]):
            lines.append(f"  {f.level:<6} {f.check:<14} {f.detail}")
        verdict = "will run" if self.ok else "will NOT run as is"
        lines.append(f"  result: {verdict} ({sum(f.level == 'error' for f in self.findings)} errors, "
                     f"{sum(f.level == 'warn' for f in self.findings)} warnings)")
        return "\n".join(lines)


def check_model(path: Union[str, Path], target: str) -> CheckReport:
    """Check the ONNX model at ``path`` against ``target`` (a key of :data:`TARGETS`).

    Raises:
        ValueError: unknown target.
        FileNotFoundError: no such file.
        BackendUnavailableError: the ``onnx`` package is not installed.
    """
    try:
        import onnx
    except ImportError:
        raise BackendUnavailableError(
            "lite-deploy check reads the ONNX graph with the onnx package, which is not installed here: "
            "pip install 'lite-deploy[check]'"
        ) from None

    if target not in TARGETS:
        raise ValueError(f"unknown check target {target!r}: choose from {', '.join(TARGETS)}")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model {str(path)!r} does not exist")
    rules = TARGETS[target]
    try:
        model = onnx.load(str(path))
    except Exception as exc:  # protobuf's DecodeError and friends: not an ONNX file at all
        raise ValueError(f"{path.name} is not an ONNX model ({type(exc).__name__}): pass the .onnx file that "
                         "`lite-deploy export` wrote") from None
    if not model.graph.node or not model.graph.output:
        raise ValueError(f"{path.name} holds no ONNX graph (no nodes or no outputs): pass the .onnx file that "
                         "`lite-deploy export` wrote")
    report = CheckReport(path.name, rules)
    _check_opset(model, rules, report)
    graph = onnx.shape_inference.infer_shapes(model).graph
    consts = _constants(graph)
    shapes = _shapes(graph)
    _check_operators(graph, rules, report, path)
    _check_ranks(graph, shapes, rules, report)
    _check_batch_axis(graph, consts, shapes, report)
    _check_data_dependent(graph, consts, report)
    _check_int64(graph, rules, report)
    _check_qdq_types(graph, rules, report)
    if not report.findings or all(f.level == "info" for f in report.findings):
        report.add("info", "summary", f"{len(graph.node)} nodes, every check passed")
    return report


def _check_opset(model, rules: TargetRules, report: CheckReport) -> None:
    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if opset.version > rules.max_opset:
                report.add("error", "opset", f"opset {opset.version} > {rules.max_opset}, the newest "
                           f"{rules.title} parses: export with --opset {min(17, rules.max_opset)}")
            else:
                report.add("info", "opset", f"opset {opset.version} (<= {rules.max_opset})")


def _check_operators(graph, rules: TargetRules, report: CheckReport, path: Path) -> None:
    counts: Dict[str, List[str]] = {}
    for node in graph.node:
        counts.setdefault(node.op_type, []).append(node.name or node.output[0])
    for op, names in sorted(counts.items()):
        where = f"{len(names)}x, e.g. {names[0]}"
        if op in _PLUGINS:
            if rules.name.startswith("trt"):
                note = "; deprecated since TensorRT 10.12" if rules.name == "trt11" else ""
                report.add("warn", "plugin", f"{op} ({where}) needs libnvinfer_plugin{note}")
            else:
                report.add("error", "operator", f"{op} ({where}) is a TensorRT plugin; {rules.title} cannot run it")
        elif rules.ops is not None and op not in rules.ops:
            report.add("error", "operator", f"{op} ({where}) is not supported by {rules.title}")
    if rules.name == "openvino":
        _openvino_convert(path, report)


def _openvino_convert(path: Path, report: CheckReport) -> None:
    try:
        import openvino as ov
    except ImportError:
        report.add("warn", "operator", "OpenVINO is not installed here, operators not checked: "
                   "pip install 'lite-deploy[openvino]'")
        return
    try:
        ov.convert_model(str(path))
    except Exception as exc:  # OpenVINO's frontends raise their own exception types
        lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
        report.add("error", "operator", f"OpenVINO cannot convert it: {lines[0] if lines else type(exc).__name__}")


def _constants(graph) -> Dict[str, np.ndarray]:
    """Initializers and Constant-node outputs by name."""
    from onnx import numpy_helper

    consts = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    consts[node.output[0]] = numpy_helper.to_array(attr.t)
    return consts


def _shapes(graph) -> Dict[str, Tuple]:
    """Tensor name -> shape (ints, dim_param strings, or None for unknown dims) from shape inference."""
    shapes = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        t = info.type.tensor_type
        if t.HasField("shape"):
            shapes[info.name] = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim
            )
    return shapes


def _check_ranks(graph, shapes: Dict[str, Tuple], rules: TargetRules, report: CheckReport) -> None:
    high = [(n.name or n.output[0], n.op_type, len(shapes[o])) for n in graph.node for o in n.output
            if o in shapes and len(shapes[o]) > 4]
    if high:
        name, op, rank = max(high, key=lambda h: h[2])
        where = "beyond this target's 4-D kernels" if rank > rules.max_rank else "fine here"
        report.add("warn", "rank > 4", f"{len(high)} tensors of rank > 4, e.g. {name} ({op}, rank {rank}): {where}, "
                   "but many NPU compilers and the TFLite GPU delegate take 4-D tensors only")


def _check_batch_axis(graph, consts: Dict[str, np.ndarray], shapes: Dict[str, Tuple], report: CheckReport) -> None:
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type == "Reshape" and len(node.input) > 1 and node.input[1] in consts:
            target = [int(v) for v in consts[node.input[1]].reshape(-1)]
            in_shape = shapes.get(node.input[0])
            if target and in_shape and not _keeps_batch(in_shape, target):
                report.add("error", "batch axis",
                           f"Reshape {name} to {target} folds the batch axis of {list(in_shape)} into other axes: "
                           "the batch size is baked in and another batch size fails (rewrite it as a 4-D/5-D "
                           "reshape that keeps axis 0)")
        elif node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm and perm[0] != 0:
                report.add("warn", "batch axis", f"Transpose {name} moves the batch axis (perm {perm}); "
                           "implicit-batch converters (old TensorRT, torch2trt) reject it")


def _keeps_batch(in_shape: Tuple, target: List[int]) -> bool:
    """Whether reshaping ``in_shape`` to ``target`` keeps axis 0 as the batch axis."""
    if target[0] == 0:
        return True
    per_sample = in_shape[1:]
    known = all(isinstance(d, int) and d > 0 for d in per_sample)
    size = int(np.prod(per_sample)) if known else None
    rest = [v for v in target[1:]]
    rest_known = [v for v in rest if v > 0]
    if target[0] == -1:
        # -1 on axis 0 is the batch only if the other axes take exactly one sample's elements
        return size is not None and 0 not in rest and -1 not in rest and int(np.prod(rest_known)) == size
    batch = in_shape[0]
    if isinstance(batch, int) and target[0] == batch:
        return size is None or -1 in rest or 0 in rest or int(np.prod(rest_known)) == size
    return False


def _check_data_dependent(graph, consts: Dict[str, np.ndarray], report: CheckReport) -> None:
    produced_by_shape_math = _shape_derived(graph, consts)
    for node in graph.node:
        name = node.name or node.output[0]
        if node.op_type in _DATA_DEPENDENT:
            report.add("warn", "dynamic shape", f"{node.op_type} {name} has a data-dependent output shape "
                       "(TensorRT needs an output allocator; delegates fall back to the CPU)")
        elif node.op_type in _SIZE_INPUTS:
            for i in _SIZE_INPUTS[node.op_type]:
                if i < len(node.input) and node.input[i] and node.input[i] not in consts \
                        and node.input[i] not in produced_by_shape_math:
                    report.add("warn", "dynamic shape", f"{node.op_type} {name} takes input {i} "
                               f"({node.input[i]}) computed from tensor values at run time")
                    break


def _shape_derived(graph, consts: Dict[str, np.ndarray]) -> set:
    """Tensors computed only from constants and Shape outputs (shape arithmetic, not data)."""
    derived = set()
    for node in graph.node:
        if node.op_type == "Shape" or all(i in consts or i in derived or not i for i in node.input):
            derived.update(node.output)
    return derived


def _check_int64(graph, rules: TargetRules, report: CheckReport) -> None:
    if rules.name not in ("trt8.5", "trt8.6"):
        return
    from onnx import TensorProto, numpy_helper

    int32 = np.iinfo(np.int32)
    sentinel = np.iinfo(np.int64).max // 2  # Slice ends like INT64_MAX mean "to the end"; TensorRT clamps them
    count, big = 0, []
    for init in graph.initializer:
        if init.data_type == TensorProto.INT64:
            count += 1
            values = numpy_helper.to_array(init).reshape(-1)
            values = values[np.abs(values) < sentinel]
            if values.size and (values.max() > int32.max or values.min() < int32.min):
                big.append(init.name)
    if big:
        report.add("error", "int64", f"INT64 initializers outside the INT32 range ({', '.join(big[:3])}): "
                   "TensorRT 8.5 casts INT64 to INT32")
    elif count:
        report.add("info", "int64", f"{count} INT64 initializers (shape constants): TensorRT 8.5 casts them to INT32")


def _check_qdq_types(graph, rules: TargetRules, report: CheckReport) -> None:
    """Q/DQ data types against what this TensorRT takes, and the zero point 0 it requires."""
    if rules.name not in _QDQ_TYPES:
        return
    from onnx import TensorProto, numpy_helper

    allowed = _QDQ_TYPES[rules.name]
    inits = {i.name: i for i in graph.initializer}
    types = {v.name: v.type.tensor_type.elem_type for v in list(graph.value_info) + list(graph.input)}
    bad: Dict[str, List[str]] = {}
    nonzero = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        name = node.name or node.output[0]
        zero = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if node.op_type == "DequantizeLinear":
            src = node.input[0]
            dtype = inits[src].data_type if src in inits else types.get(src, zero.data_type if zero else 0)
        else:
            dtype = zero.data_type if zero is not None else TensorProto.UINT8  # ONNX's default output type
        type_name = TensorProto.DataType.Name(dtype) if dtype else "unknown"
        if type_name not in allowed and type_name != "unknown":
            bad.setdefault(f"{node.op_type} {type_name}", []).append(name)
        if zero is not None and numpy_helper.to_array(zero).any():
            nonzero.append(name)
    for what, names in sorted(bad.items()):
        report.add("error", "dtype", f"{what} ({len(names)}x, e.g. {names[0]}): {rules.title} takes "
                   f"{'/'.join(allowed)} Q/DQ only (INT32 biases: export with `--target trt --int8`, which keeps "
                   "them float)")
    if nonzero:
        report.add("error", "dtype", f"{len(nonzero)} Q/DQ nodes with a non-zero zero point (e.g. {nonzero[0]}): "
                   "TensorRT needs symmetric quantization")

