"""Convert an export-mode torch model straight to TFLite with litert-torch (no ONNX, no TensorFlow).

FP32, FP16 weights through litert-torch's fp16 quantization recipe (weights stored as float16, dequantized
to float32 at load time by the interpreter), or INT8 activations and weights from the graph
:func:`lite_deploy.quantize.tflite_int8.quantize_pt2e` quantized (:func:`torch_to_tflite_int8`).
The input is NHWC by default: a permute at the start of the graph
takes NHWC images, which the runtime feeds without a transpose and XNNPACK runs without a layout change
(measured by ``tools/tflite_layout.py``). The spec is embedded in the flatbuffer's metadata under
:data:`~lite_deploy.spec.SPEC_KEY` (the export writes the JSON sidecar when it commits the file).
"""

from __future__ import annotations

import contextlib
import copy
import io
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Iterator, Sequence, Tuple, Union

import numpy as np
import torch
from torch import nn

from ..errors import BackendUnavailableError, ExportError
from ..io import atomic_write_bytes
from ..models.deploy import channels_last_shuffles
from ..spec import SPEC_KEY, ModelSpec
from .describe import INPUT_NAME

if TYPE_CHECKING:
    from ..runtime.calibration import CalibrationSet

# TensorFlow-style C++ logging of the converter: warnings and errors only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

DEFAULT_LAYOUT = "NHWC"


class NamedOutputs(nn.Module):
    """Wraps an export-mode model so the TFLite signature has named outputs and, optionally, an NHWC input.

    Args:
        model: forward(images (B, 3, H, W)) -> tuple of tensors in ``output_names`` order.
        output_names: names given to the outputs in the TFLite signature.
        layout: ``"NHWC"``: forward takes (B, H, W, 3) and permutes inside the graph; ``"NCHW"``: unchanged.
    """

    def __init__(self, model: nn.Module, output_names: Sequence[str], layout: str = DEFAULT_LAYOUT) -> None:
        super().__init__()
        if layout not in ("NCHW", "NHWC"):
            raise ValueError(f"layout must be NCHW or NHWC, got {layout!r}")
        self.model = model
        self.output_names = tuple(output_names)
        self.nhwc = layout == "NHWC"

    def forward(self, images: torch.Tensor) -> Dict[str, torch.Tensor]:
        """images (B, 3, H, W), or (B, H, W, 3) for NHWC -> {name: output}."""
        if self.nhwc:
            images = images.permute(0, 3, 1, 2)
        out = self.model(images)
        out = out if isinstance(out, (tuple, list)) else (out,)
        return dict(zip(self.output_names, out))


class SiLUProduct(nn.Module):
    """``x * sigmoid(x)``: SiLU as the product litert-torch's INT8 quantizer annotates (``sigmoid`` with its fixed
    int8 range, ``mul``); an ``aten.silu`` node it leaves in float between DEQUANTIZE and QUANTIZE ops. The float
    graph is the same either way (LOGISTIC, MUL). Bundled demo at 320, INT8: 3.84 -> 3.50 ms, 67 fewer
    QUANTIZE/DEQUANTIZE ops."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (any shape) -> the same shape."""
        return x * torch.sigmoid(x)


def conversion_input(model: nn.Module, spec: ModelSpec) -> Tuple[NamedOutputs, Tuple[int, ...]]:
    """A copy of ``model`` made for the converter and its fixed input shape.

    The copy computes channel shuffles channels-last (:func:`~lite_deploy.models.deploy.channels_last_shuffles`) and
    SiLU as :class:`SiLUProduct`, and is wrapped in :class:`NamedOutputs` in the spec's layout; its values are
    ``model``'s.

    Raises:
        ExportError: the spec has no fixed batch size.
    """
    if spec.batch is None:
        raise ExportError("TFLite export needs a fixed batch size (--batch N), not --dynamic")
    h, w = spec.imgsz
    shape = (spec.batch, h, w, 3) if spec.layout == "NHWC" else (spec.batch, 3, h, w)
    model = channels_last_shuffles(copy.deepcopy(model))
    for parent in list(model.modules()):
        for name, child in parent.named_children():
            if isinstance(child, nn.SiLU):
                setattr(parent, name, SiLUProduct())
    return NamedOutputs(model, spec.output_names, spec.layout).eval(), shape


def torch_to_tflite(
    model: nn.Module,
    path: Union[str, Path],
    spec: ModelSpec,
) -> Path:
    """Convert ``model`` to ``path`` (a ``.tflite``) as ``spec`` describes it, the spec embedded.

    Args:
        model: export-mode module, eval mode, float32: forward(images (B, 3, H, W)) -> tuple of tensors.
        path: destination ``.tflite``.
        spec: the artifact's spec: ``imgsz``, ``batch`` (fixed), ``layout``, ``output_names`` and ``precision``
            (``fp32`` or ``fp16``).

    Returns:
        ``path``.

    Raises:
        BackendUnavailableError: litert-torch is not installed.
        ExportError: an operator cannot be converted, or an unsupported precision was asked for.
    """
    try:
        import litert_torch
        from litert_torch.generative.quantize import quant_recipes
    except ImportError as exc:
        raise BackendUnavailableError("litert-torch is not installed: pip install 'lite-deploy[tflite]'") from exc
    if spec.precision not in ("fp32", "fp16"):
        raise ExportError(f"TFLite export supports fp32 and fp16 here, not {spec.precision}")
    wrapped, shape = conversion_input(model, spec)
    quant = quant_recipes.full_fp16_recipe() if spec.precision == "fp16" else None
    try:
        with torch.no_grad(), _quiet_converter():
            converted = litert_torch.convert(wrapped, sample_kwargs={INPUT_NAME: torch.rand(shape)}, quant_config=quant)
    except Exception as exc:  # torch.export and the MLIR converter raise many unrelated types
        raise ExportError(f"TFLite conversion failed: {first_error_line(exc)}") from exc
    path = Path(path)
    with tempfile.TemporaryDirectory(dir=str(path.parent) if path.parent.exists() else None) as tmp:
        raw = Path(tmp) / path.name
        with _quiet_converter():
            converted.export(str(raw))
        data = embed_metadata(raw.read_bytes(), {SPEC_KEY: spec.to_json().encode()})
    atomic_write_bytes(path, data)
    return path


def torch_to_tflite_int8(model: nn.Module, path: Union[str, Path], spec: ModelSpec, calib: "CalibrationSet", *,
                         float_modules: Sequence[str] = ()) -> Path:
    """Quantize ``model`` on ``calib`` (:func:`lite_deploy.quantize.tflite_int8.quantize_pt2e`) and write the INT8
    TFLite ``path``, the spec embedded.

    Args:
        model: export-mode detector, eval, float32: forward(images (B, 3, H, W)) -> its outputs.
        path: destination ``.tflite``.
        spec: the artifact's spec: ``precision`` ``int8``, fixed ``batch``, ``layout``, ``output_names``, and
            ``input_dtype`` ``int8`` (the runtime quantizes the input) or ``float32`` (quantized inside the model).
            Outputs are float32.
        calib: calibration images, pre-processed with ``spec`` (its layout).
        float_modules: qualified names (in ``model``) of more modules to keep in float; the graph's tail always is.

    Raises:
        BackendUnavailableError: litert-torch or torchao is not installed.
        ExportError: the conversion failed, or a convolution outside the float modules is not int8.
    """
    try:
        import litert_torch
        from litert_torch.quantize.quant_config import QuantConfig
    except ImportError as exc:
        raise BackendUnavailableError("litert-torch is not installed: pip install 'lite-deploy[tflite]'") from exc
    from ..quantize.tflite_int8 import IO_DTYPES, float_io, int8_problems, quantize_pt2e

    if spec.input_dtype not in IO_DTYPES:
        raise ValueError(f"TFLite INT8 input type must be one of {IO_DTYPES}, got {spec.input_dtype!r}")
    wrapped, shape = conversion_input(model, spec)
    sample = {spec.input_name: torch.rand(shape)}
    try:
        with torch.no_grad(), _quiet_converter():
            converted, quantizer = quantize_pt2e(wrapped, sample, calib, spec, float_modules=float_modules)
            edge = litert_torch.convert(converted, sample_kwargs=sample,
                                        quant_config=QuantConfig(pt2e_quantizer=quantizer))
    except BackendUnavailableError:
        raise
    except Exception as exc:  # torch.export, torchao and the MLIR converter raise many unrelated types
        raise ExportError(f"TFLite INT8 conversion failed: {first_error_line(exc)}") from exc
    path = Path(path)
    raw = path.with_name(f".{path.name}.raw")
    try:
        with _quiet_converter():
            edge.export(str(raw))
        data = raw.read_bytes()
    finally:
        raw.unlink(missing_ok=True)
    if spec.input_dtype == "float32":
        data = float_io(data)
    data = embed_metadata(data, {SPEC_KEY: spec.to_json().encode()})
    problems = int8_problems(data, input_dtype=spec.input_dtype, float_convs=quantizer.float_convs)
    if problems:
        raise ExportError("the TFLite model is not the INT8 model asked for: " + "; ".join(problems[:5]))
    atomic_write_bytes(path, data)
    return path


def embed_metadata(flatbuffer: bytes, entries: Dict[str, bytes]) -> bytes:
    """Add (or replace) named metadata buffers in a TFLite flatbuffer, and name its I/O tensors as its signature.

    Args:
        flatbuffer: the ``.tflite`` file's bytes.
        entries: metadata name -> bytes.

    Returns:
        The new flatbuffer's bytes.
    """
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(flatbuffer))
    _name_io_tensors(model)
    model.metadata = [m for m in (model.metadata or []) if m.name.decode() not in entries]
    for name, payload in entries.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(payload, dtype=np.uint8)
        model.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name = name
        entry.buffer = len(model.buffers) - 1
        model.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _name_io_tensors(model) -> None:
    """Rename the input and output tensors after their signature keys (``images``, ``boxes``, ``scores`` ...).

    litert-torch names them ``serving_default_<key>:0`` / ``StatefulPartitionedCall:<i>``; with the signature
    keys as tensor names, interpreters that ignore signatures see the spec's names too.
    """
    for signature in model.signatureDefs or []:
        subgraph = model.subgraphs[signature.subgraphIndex]
        for tensor_map in list(signature.inputs or []) + list(signature.outputs or []):
            subgraph.tensors[tensor_map.tensorIndex].name = tensor_map.name


@contextlib.contextmanager
def _quiet_converter() -> Iterator[None]:
    """Silence litert-torch's progress console, its per-operator INFO logging and its prints for the conversion."""
    from litert_torch import progress

    root = logging.getLogger()
    level, quiet = root.level, progress.console.quiet
    progress.console.quiet = True
    if root.getEffectiveLevel() < logging.WARNING:
        root.setLevel(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the fp16 recipe prints size statistics
            yield
    finally:
        progress.console.quiet = quiet
        root.setLevel(level)


def first_error_line(exc: BaseException) -> str:
    """The line of a converter's error that says what is unsupported, else its first line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    for line in lines:
        if "not supported" in line.lower() or "unsupported" in line.lower() or "failed to legalize" in line.lower():
            return line
    return lines[0] if lines else type(exc).__name__
