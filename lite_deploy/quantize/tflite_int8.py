"""Full-integer INT8 TFLite through litert-torch's PT2E path: int8 weights and activations, int8 or float I/O.

``torch.export`` -> torchao ``prepare_pt2e`` with litert-torch's ``PT2EQuantizer`` (symmetric per-channel int8
weights, per-tensor int8 activations observed with histograms) -> calibration on images pre-processed as the
runtime does -> ``convert_pt2e`` -> ``litert_torch.convert`` with a static ``QuantConfig``. Every operator runs
in int8, the decode included: ``boxes`` (pixels) and ``scores`` (0-1) are separate outputs, each with its own
scale, so the scores are not crushed by the box range. This is what "full integer" means here, unlike the
weight-only ("dynamic range") files other tools name ``*_int8.tflite``.

Two details of litert-torch 0.10 with torch 2.14 are handled here:

- its module-name and module-type filters never match ``torch.export``'s ``nn_module_stack`` (``L__self__...``
  keys, type names as strings), so layers kept in float (:func:`torch_to_tflite_int8`'s ``float_modules``) are
  filtered by the qualified names in that stack instead;
- integer scalar constants (the decode's ``* 2``) become int64 tensors that the histogram observer cannot
  take; they are made float32 before annotation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, List, Sequence, Union

import numpy as np
import torch
from torch import nn

from ..errors import BackendUnavailableError, ExportError
from ..spec import SPEC_KEY, ModelSpec, atomic_write_bytes, sidecar_path
from .calibration import CalibrationSet

IO_DTYPES = ("int8", "float32")


def torch_to_tflite_int8(
    model: nn.Module,
    path: Union[str, Path],
    spec: ModelSpec,
    calib: CalibrationSet,
    *,
    float_modules: Sequence[str] = (),
) -> Path:
    """Quantize ``model`` on ``calib`` and write the full-integer TFLite ``path`` (spec embedded and beside it).

    Args:
        model: export-mode module, eval, float32: forward(images (B, 3, H, W)) -> (boxes, scores).
        path: destination ``.tflite``.
        spec: the artifact's spec: ``precision`` ``int8``, fixed ``batch``, ``layout``, ``output_names``, and
            ``input_dtype`` ``int8`` (int8 input and outputs, quantized by the runtime with the tensors' scale and
            zero point) or ``float32`` (float input and outputs, converted inside the model).
        calib: calibration images, pre-processed with ``spec`` (its layout).
        float_modules: qualified names (in ``model``) of modules to keep in float.

    Returns:
        ``path``.

    Raises:
        BackendUnavailableError: litert-torch or torchao is not installed.
        ExportError: the conversion failed, or the result is not full-integer.
    """
    try:
        import litert_torch
        from litert_torch.quantize import pt2e_quantizer
        from litert_torch.quantize.quant_config import QuantConfig
        from torchao.quantization.pt2e import quantize_pt2e
    except ImportError as exc:
        raise BackendUnavailableError("litert-torch is not installed: pip install 'lite-deploy[tflite]'") from exc
    from ..export.tflite import NamedOutputs, _first_error_line, _quiet_converter, embed_metadata

    if spec.input_dtype not in IO_DTYPES:
        raise ValueError(f"TFLite INT8 input/output type must be one of {IO_DTYPES}, got {spec.input_dtype!r}")
    if spec.batch is None:
        raise ExportError("TFLite export needs a fixed batch size (--batch N), not --dynamic")
    h, w = spec.imgsz
    shape = (spec.batch, h, w, 3) if spec.layout == "NHWC" else (spec.batch, 3, h, w)
    wrapped = NamedOutputs(model, spec.output_names, spec.layout).eval()
    sample = (torch.rand(shape),)
    quantizer = _quantizer_class(pt2e_quantizer.PT2EQuantizer)(
        tuple(f"model.{name}" for name in float_modules)
    ).set_global(pt2e_quantizer.get_symmetric_quantization_config(is_per_channel=True))
    try:
        with torch.no_grad(), _quiet_converter():
            exported = torch.export.export(wrapped, sample).module()
            prepared = quantize_pt2e.prepare_pt2e(exported, quantizer)
            for blob in calib.batches(spec.batch):
                prepared(torch.from_numpy(blob))
            converted = quantize_pt2e.convert_pt2e(prepared, fold_quantize=False)
            edge = litert_torch.convert(converted, sample, quant_config=QuantConfig(pt2e_quantizer=quantizer))
    except Exception as exc:  # torch.export, torchao and the MLIR converter raise many unrelated types
        raise ExportError(f"TFLite INT8 conversion failed: {_first_error_line(exc)}") from exc
    path = Path(path)
    raw = path.with_name(f".{path.name}.raw")
    try:
        with _quiet_converter():
            edge.export(str(raw))
        data = raw.read_bytes()
    finally:
        raw.unlink(missing_ok=True)
    if spec.input_dtype == "float32":
        data = _float_io(data)
    data = embed_metadata(data, {SPEC_KEY: spec.to_json().encode()})
    problems = integer_problems(data, allow_float_io=spec.input_dtype == "float32", float_modules=bool(float_modules))
    if problems:
        raise ExportError("the TFLite model is not full-integer: " + "; ".join(problems[:5]))
    atomic_write_bytes(path, data)
    spec.save(sidecar_path(path))
    return path


def integer_problems(flatbuffer: bytes, *, allow_float_io: bool = False, float_modules: bool = False) -> list:
    """What keeps a TFLite model from being full-integer (empty when every activation is int8).

    Args:
        flatbuffer: the model's bytes.
        allow_float_io: float32 input/output tensors (and the quantize/dequantize at the ends) are expected.
        float_modules: some layers were kept in float on purpose; only the I/O is checked then.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_content=flatbuffer)
    interpreter.allocate_tensors()
    problems = []
    io = {d["index"]: d for d in interpreter.get_input_details() + interpreter.get_output_details()}
    for index, detail in io.items():
        if np.dtype(detail["dtype"]) != np.int8 and not allow_float_io:
            problems.append(f"I/O tensor {detail['name']} is {np.dtype(detail['dtype'])}, not int8")
    if float_modules:
        return problems
    constants_ok = (np.int8, np.int32)
    for detail in interpreter.get_tensor_details():
        if detail["index"] in io or not detail["shape"].size:
            continue
        dtype = np.dtype(detail["dtype"])
        scale = detail["quantization"][0]
        if dtype == np.float32 and scale == 0 and not _is_constant(interpreter, detail):
            problems.append(f"activation {detail['name']} is float32")
        elif dtype not in constants_ok and dtype != np.float32:
            problems.append(f"tensor {detail['name']} is {dtype}")
    return problems


def _is_constant(interpreter: Any, detail: dict) -> bool:
    try:
        interpreter.get_tensor(detail["index"])
    except ValueError:
        return False
    return detail["name"].startswith(("arith.constant", "pseudo_qconst", "tfl.pseudo"))


def _float_io(flatbuffer: bytes) -> bytes:
    """The same model behind float32 I/O: a QUANTIZE after each input and a DEQUANTIZE before each output.

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

    front = [operator(schema.BuiltinOperator.QUANTIZE, [float_twin(i)], [i]) for i in subgraph.inputs]
    back = [operator(schema.BuiltinOperator.DEQUANTIZE, [i], [float_twin(i)]) for i in subgraph.outputs]
    subgraph.inputs = [remap[i] for i in subgraph.inputs]
    subgraph.outputs = [remap[i] for i in subgraph.outputs]
    subgraph.operators = front + list(subgraph.operators) + back
    for signature in model.signatureDefs or []:
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            tensor_map.tensorIndex = remap.get(tensor_map.tensorIndex, tensor_map.tensorIndex)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def module_of_node(onnx_node: str) -> str:
    """The torch module an ONNX node was traced from: ``/model.7/cv1/conv/Conv`` -> ``model.7.cv1.conv``."""
    parts = [p for p in onnx_node.split("/") if p]
    return ".".join(parts[:-1])


def _quantizer_class(base: type) -> type:
    """litert-torch's PT2EQuantizer with a working float-module filter and float scalar constants."""

    class Quantizer(base):
        def __init__(self, float_modules: Sequence[str]) -> None:
            super().__init__()
            self.float_modules = tuple(float_modules)

        def transform_for_annotation(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            model = super().transform_for_annotation(model)
            for node in model.graph.nodes:
                if node.op == "get_attr":
                    value = getattr(model, node.target, None)
                    if isinstance(value, torch.Tensor) and not value.is_floating_point() and value.dim() == 0:
                        setattr(model, node.target, value.float())
            return model

        def _annotate_for_static_quantization_config(self, model: torch.fx.GraphModule) -> torch.fx.GraphModule:
            return self._annotate_all_static_patterns(model, self.global_config, self._quantize_node)

        def _quantize_node(self, node: torch.fx.Node) -> bool:
            names = [value[0] for value in node.meta.get("nn_module_stack", {}).values()]
            return not any(n == f or n.startswith(f + ".") for n in names for f in self.float_modules)

    return Quantizer
