"""INT8 TFLite with int8 activations (static, calibrated) through litert-torch's PT2E path.

``torch.export`` -> torchao ``prepare_pt2e`` with litert-torch's ``PT2EQuantizer`` (symmetric per-channel int8
weights, per-tensor int8 activations with ranges averaged over the images, see :mod:`.calibration`) ->
calibration on images pre-processed as the runtime does -> ``convert_pt2e`` (:func:`quantize_pt2e`); the exporter
then converts that graph with ``litert_torch.convert`` and a static ``QuantConfig`` and checks the result with
:func:`int8_problems`.

Every convolution of the backbone and neck runs on int8 activations and int8 weights, with ReLU / SiLU, adds,
concatenations and pooling in int8 between them (the input is int8 too, unless float32 I/O is asked for): this is
static full-integer quantization of the network, unlike the weight-only ("dynamic range") files other tools name
``*_int8.tflite``, whose activations stay float. The detection head stays in float, chosen on the ``torch.export``
graph by the same rule as in the Q/DQ ONNX (:mod:`.float_tail`): its last convolutions and the decode after them
(YOLO's sigmoid, grid and anchor arithmetic; CenterNet's heatmap sigmoid), so ``boxes`` (pixels) and ``scores``
(0-1), or CenterNet's ``hm``, ``wh`` and ``reg``, come out as float32 outputs and none is squeezed into another's
int8 scale. (litert-torch's quantizer has no int8 form for YOLO's ``sub``, ``div`` and ``pow`` anyway.) Activations
it has no int8 kernel for (Mish's ``exp``/``log``/``tanh``) also stay float between quantize and dequantize ops.

litert-torch 0.10's module-name and module-type filters never match torch 2.14's ``torch.export``
``nn_module_stack`` (``L__self__...`` keys, type names as strings), so the modules kept in float are filtered here
by the qualified names in that stack (the per-layer fallback's modules).
"""

from __future__ import annotations

import functools
from typing import Any, Dict, List, Sequence, Set, Tuple

import numpy as np
import torch
from torch import nn

from ..errors import BackendUnavailableError
from ..runtime.calibration import CalibrationSet, input_range
from ..spec import ModelSpec
from .float_tail import float_tail

IO_DTYPES = ("int8", "float32")


def quantize_pt2e(model: nn.Module, sample: Dict[str, torch.Tensor], calib: CalibrationSet, spec: ModelSpec, *,
                  float_modules: Sequence[str] = ()) -> Tuple[torch.fx.GraphModule, Any]:
    """Quantize ``model`` on ``calib`` with litert-torch's PT2E quantizer: ``torch.export``, ``prepare_pt2e``,
    calibration, the input's range pinned, ``convert_pt2e``.

    Args:
        model: the module litert-torch converts (keyword input ``spec.input_name``, in the spec's layout), eval,
            float32, its outputs float (``boxes``, ``scores``, or CenterNet's ``hm``, ``wh``, ``reg``).
        sample: an example input, ``{spec.input_name: tensor}``.
        calib: calibration images, pre-processed with ``spec`` (its layout and batch).
        spec: the INT8 artifact's spec.
        float_modules: qualified names (under ``model.model``, the export model) of more modules to keep in float;
            the graph's tail (last convolutions and the decode after them) always is.

    Returns:
        ``(converted graph, quantizer)``: convert the graph with ``QuantConfig(pt2e_quantizer=quantizer)``; the
        quantizer's ``float_convs`` is the number of convolutions left in float.

    Raises:
        BackendUnavailableError: litert-torch or torchao is not installed.
    """
    try:
        from litert_torch.quantize import pt2e_quantizer
        from torchao.quantization.pt2e import quantize_pt2e as pt2e
    except ImportError as exc:
        raise BackendUnavailableError("litert-torch is not installed: pip install 'lite-deploy[tflite]'") from exc

    quantizer = _quantizer_class(pt2e_quantizer.PT2EQuantizer)([f"model.{name}" for name in float_modules])
    config = pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True)
    quantizer.set_global(_mean_minmax_config(config))
    with torch.no_grad():
        exported = torch.export.export(model, (), sample).module()
        prepared = pt2e.prepare_pt2e(exported, quantizer)
        for blob in calib.batches(spec.batch):
            prepared(**{spec.input_name: torch.from_numpy(blob)})
        _pin_input_range(prepared, spec)
        converted = pt2e.convert_pt2e(prepared, fold_quantize=False)
        _to_eval(converted)
    return converted, quantizer


def conv_input_types(flatbuffer: bytes) -> List[str]:
    """The activation-input type of every convolution of a TFLite model (``int8``, ``float32`` ...), in order."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    interpreter = Interpreter(model_content=flatbuffer,
                              experimental_op_resolver_type=OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
    interpreter.allocate_tensors()
    dtypes = {d["index"]: np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()}
    return [dtypes[op["inputs"][0]] for op in interpreter._get_ops_details()  # noqa: SLF001 (no public op listing)
            if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]


def int8_problems(flatbuffer: bytes, *, input_dtype: str = "int8", float_convs: int = 0) -> List[str]:
    """What keeps a TFLite model from being the INT8 model asked for (empty when it is one).

    Args:
        flatbuffer: the model's bytes.
        input_dtype: the input type asked for (``int8`` or ``float32``).
        float_convs: how many convolutions were kept in float on purpose (the converter may still give some of
            them int8 input, e.g. a float 1x1 convolution right after an int8 one).
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    problems = []
    for detail in interpreter.get_input_details():
        if np.dtype(detail["dtype"]).name != input_dtype:
            problems.append(f"input {detail['name']} is {np.dtype(detail['dtype']).name}, not {input_dtype}")
    types = conv_input_types(flatbuffer)
    floating = sum(t != "int8" for t in types)
    if floating > float_convs:
        problems.append(f"{floating} of {len(types)} convolutions take float input, at most {float_convs} should")
    return problems


def float_io(flatbuffer: bytes) -> bytes:
    """The same model behind float32 I/O: a QUANTIZE after each int8 input, a DEQUANTIZE before each int8 output.

    The int8 tensors stay inside with their scales; the new float32 tensors take their place in the subgraph's
    and the signature's inputs and outputs.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    subgraph = model.subgraphs[0]
    remap = {}

    def opcode(builtin: int) -> int:
        for i, code in enumerate(model.operatorCodes):
            if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
                return i
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, min(builtin, 127), 1
        model.operatorCodes.append(code)
        return len(model.operatorCodes) - 1

    def float_twin(index: int) -> int:
        tensor = subgraph.tensors[index]
        twin = schema.TensorT()
        twin.name, twin.shape, twin.shapeSignature = tensor.name, tensor.shape, tensor.shapeSignature
        twin.type = schema.TensorType.FLOAT32
        model.buffers.append(schema.BufferT())
        twin.buffer = len(model.buffers) - 1
        tensor.name = (tensor.name.decode() if isinstance(tensor.name, bytes) else tensor.name) + "/int8"
        subgraph.tensors.append(twin)
        remap[index] = len(subgraph.tensors) - 1
        return remap[index]

    def operator(builtin: int, inputs: List[int], outputs: List[int]):
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = opcode(builtin), inputs, outputs
        return op

    def quantized(index: int) -> bool:
        return subgraph.tensors[index].type in (schema.TensorType.INT8, schema.TensorType.UINT8)

    front = [operator(schema.BuiltinOperator.QUANTIZE, [float_twin(i)], [i]) for i in subgraph.inputs if quantized(i)]
    back = [operator(schema.BuiltinOperator.DEQUANTIZE, [i], [float_twin(i)]) for i in subgraph.outputs if quantized(i)]
    subgraph.inputs = [remap.get(i, i) for i in subgraph.inputs]
    subgraph.outputs = [remap.get(i, i) for i in subgraph.outputs]
    subgraph.operators = front + list(subgraph.operators) + back
    for signature in model.signatureDefs or []:
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _to_eval(model: torch.fx.GraphModule) -> None:
    """Put a converted pt2e graph in eval mode: batch-norm and dropout ops in their inference form and every
    module's ``training`` flag off (``torch.export`` graph modules start in training mode, and litert-torch warns
    "converted in training mode" for them)."""
    from torchao.quantization.pt2e import move_exported_model_to_eval

    move_exported_model_to_eval(model)
    for module in model.modules():
        module.training = False


def module_of_node(onnx_node: str) -> str:
    """The torch module an ONNX node was traced from:
    ``/model.7/gsb/gsb.0/cv1/conv/Conv`` -> ``model.7.gsb.0.cv1.conv``.

    The exporter's scope names give a container child as ``<container>.<index>`` after the container's own scope.
    """
    path: List[str] = []
    for part in [p for p in onnx_node.split("/") if p][:-1]:
        if path and part.startswith(path[-1] + "."):
            path[-1] = part
        else:
            path.append(part)
    return ".".join(path)


def _mean_minmax_config(config: Any) -> Any:
    """litert-torch's symmetric config with mean min/max instead of histogram observers for activations.

    With histogram observers, the ShuffleNetV2 backbone does not convert: a ``tfl.pad`` in front of a stride-2
    depthwise convolution gets input and output scales 2% apart ("quantization parameters violate the same scale
    constraint"), because two observers of the same values chose different clipping thresholds; averaged min/max
    ranges of the same values agree. (The Q/DQ ONNX uses the same ranges.)
    """
    import dataclasses

    activation = dataclasses.replace(config.input_activation,
                                     observer_or_fake_quant_ctr=_mean_minmax_observer().with_args(eps=2**-12))
    return dataclasses.replace(config, input_activation=activation, output_activation=activation)


def _pin_input_range(prepared: torch.fx.GraphModule, spec: ModelSpec) -> None:
    """Give the observers of the network input (after the NHWC -> NCHW permute, if any) the input's full range
    (:func:`lite_deploy.runtime.calibration.input_range`) instead of the calibrated one."""
    full = input_range(spec)
    observer_class = _mean_minmax_observer()
    layout_ops = ("permute", "view", "reshape", "contiguous", "clone")
    pending = [n for n in prepared.graph.nodes if n.op == "placeholder"]
    while pending:
        node = pending.pop()
        observer = getattr(prepared, str(node.target), None) if node.op == "call_module" else None
        if isinstance(observer, observer_class):
            observer.min_val.fill_(float(full["rmin"]))
            observer.max_val.fill_(float(full["rmax"]))
        elif node.op == "placeholder" or (node.op == "call_function"
                                          and any(op in str(node.target) for op in layout_ops)):
            pending.extend(node.users)


@functools.lru_cache(maxsize=None)
def _mean_minmax_observer() -> type:
    """The observer class ``MeanMinMaxObserver``, made on first use (torchao is imported only for TFLite INT8)."""
    from torchao.quantization.pt2e.observer import MinMaxObserver

    class MeanMinMaxObserver(MinMaxObserver):
        """Range: the mean over the observed batches of each batch's min and max, as ONNX Runtime's
        ``CalibMovingAverage`` (:mod:`.calibration` says why); independent of the batches' order."""

        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.register_buffer("batches", torch.tensor(0.0))
            self.register_buffer("sum_min", torch.tensor(0.0))
            self.register_buffer("sum_max", torch.tensor(0.0))

        def forward(self, x_orig: torch.Tensor) -> torch.Tensor:
            if x_orig.numel() == 0:
                return x_orig
            # every calibration image passes every observer: one aminmax pass and in-place updates keep it cheap
            low, high = torch.aminmax(x_orig.detach())
            self.batches += 1
            torch.div(self.sum_min.add_(low), self.batches, out=self.min_val)
            torch.div(self.sum_max.add_(high), self.batches, out=self.max_val)
            return x_orig

    return MeanMinMaxObserver


def _quantizer_class(base: type) -> type:
    """litert-torch's PT2EQuantizer leaving the graph's tail and the named modules in float.

    The tail (:func:`.float_tail.float_tail`) is found on the graph being annotated; the modules are matched on
    ``torch.export``'s ``nn_module_stack``, which litert-torch's own module filters do not read correctly.
    After annotation, ``float_convs`` is the number of convolutions left in float.
    """

    class Quantizer(base):
        def __init__(self, float_modules: Sequence[str]) -> None:
            super().__init__()
            self.float_modules = tuple(float_modules)
            self.float_convs = 0
            self._float_nodes: Set[torch.fx.Node] = set()

        def _annotate_for_static_quantization_config(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            nodes = list(model.graph.nodes)
            decode, last_convs = float_tail(nodes, lambda n: n.users, _is_conv)
            self._float_nodes = set(decode + last_convs) | {n for n in nodes if self._in_float_module(n)}
            self.float_convs = sum(_is_conv(n) for n in self._float_nodes)
            model = self._annotate_all_static_patterns(model, self.global_config, self._quantize_node)
            _quantize_shuffles(model, self.global_config.input_activation, self._quantize_node)
            return model

        def _quantize_node(self, node: torch.fx.Node) -> bool:
            return node not in self._float_nodes

        def _in_float_module(self, node: torch.fx.Node) -> bool:
            names = [value[0] for value in node.meta.get("nn_module_stack", {}).values()]
            return any(n == f or n.startswith(f + ".") for n in names for f in self.float_modules)

    return Quantizer


def _quantize_shuffles(model: torch.fx.GraphModule, activation: Any, quantize: Any) -> None:
    """Quantize channel shuffles with their input's range and let the convolutions they feed take that range.

    A shuffle is an ``index_select`` (a channel gather) or a chain of layout ops (``permute``, ``reshape``,
    ``view``, ``transpose``: the channels-last shuffle), which litert-torch leaves unannotated; of a chain only the
    last op is annotated, so the converter sees one float chain it can fold into its own layout (quantizing every op
    of it left 63 TRANSPOSE ops on the demo instead of 24, 3.61 ms instead of 3.40). Otherwise the
    converter gives the shuffled tensor a range of its own choosing and a stride-2 depthwise convolution's explicit
    ``tfl.pad`` ends up between two ranges, which TFLite does not allow ("quantization parameters violate the same
    scale constraint"): the ShuffleNetV2 x0.5 detector failed so at every stage's first block (scales 0.0452 vs
    0.0301). The network input's layout permute and the float tail stay as they are.
    """
    from torchao.quantization.pt2e.quantizer import QuantizationAnnotation, SharedQuantizationSpec

    shuffled: Set[torch.fx.Node] = set()
    for node in model.graph.nodes:
        if node.op != "call_function" or node.target not in _SHUFFLE_OPS or not quantize(node) \
                or "quantization_annotation" in node.meta:
            continue
        source = node.args[0]
        if not (isinstance(source, torch.fx.Node) and source.op == "call_function") or \
                any(user.op == "call_function" and user.target in _SHUFFLE_OPS for user in node.users):
            continue  # the network input's layout permute; or not the last op of a channels-last shuffle
        node.meta["quantization_annotation"] = QuantizationAnnotation(
            input_qspec_map={source: activation}, output_qspec=SharedQuantizationSpec((source, node)),
            _annotated=True)
        shuffled.add(node)
    for node in shuffled:
        for user in node.users:
            annotation = user.meta.get("quantization_annotation")
            if _is_conv(user) and annotation is not None and node in annotation.input_qspec_map:
                annotation.input_qspec_map[node] = SharedQuantizationSpec(node)


_SHUFFLE_OPS = {torch.ops.aten.index_select.default, torch.ops.aten.permute.default, torch.ops.aten.reshape.default,
                torch.ops.aten.view.default, torch.ops.aten.transpose.int}
_CONV_OPS = {"conv1d", "conv2d", "conv3d", "convolution", "conv_transpose1d", "conv_transpose2d", "conv_transpose3d"}


def _is_conv(node: torch.fx.Node) -> bool:
    """Whether an aten-level ``torch.export`` node is a (transposed) convolution."""
    packet = getattr(node.target, "overloadpacket", None)
    return node.op == "call_function" and packet is not None and packet.__name__ in _CONV_OPS
