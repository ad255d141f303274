"""Export an export-mode torch model to ONNX: TorchScript-based exporter, a pinned opset, simplified, with metadata.

The TorchScript-based exporter (``dynamo=False``) is used on purpose: torch >= 2.9 defaults to the dynamo exporter
at opset 18 and, asked for 17 or lower, fails to down-convert ``Resize`` and silently keeps 18; TensorRT 8.5
(JetPack 5) parses opsets up to 17 only. The opset of the result is checked, never assumed.
"""

from __future__ import annotations

import io
import logging
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import numpy as np
import onnx
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from ..errors import BackendUnavailableError, ExportError
from ..io import atomic_write_bytes
from ..spec import SPEC_KEY, ModelSpec
from .describe import INPUT_NAME
from .locate import locate_aten_op
from .options import DEFAULT_OPSET, SIMPLIFIERS

LOGGER = logging.getLogger(__name__)



class HalfPrecision(nn.Module):
    """Runs ``model`` in float16 behind float32 inputs and outputs.

    The exported graph keeps a float32 ``images`` input and float32 outputs (a Cast at each end), so every runtime
    feeds it the same way as the FP32 artifact; weights and arithmetic inside are float16.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.half()

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        """images (B, 3, H, W) float32 -> the wrapped model's outputs as float32."""
        with _Float32Ranges():
            out = self.model(images.half())
        out = out if isinstance(out, (tuple, list)) else (out,)
        return tuple(o.float() if o.is_floating_point() else o for o in out)


class _Float32Ranges(TorchFunctionMode):
    """``torch.arange(..., dtype=torch.float16)`` (a detection grid built in ``forward``) made in float32 and cast
    to float16: ONNX's ``Range`` has no float16 form, and torch's exporter fails on one ("tensor does not have a
    device"). Integer ranges (grids) get the same values as torch's float16 ``arange``."""

    def __torch_function__(self, func: Callable, types: Any, args: Sequence[Any] = (),
                           kwargs: Optional[Dict[str, Any]] = None) -> Any:
        kwargs = kwargs or {}
        if func is torch.arange and kwargs.get("dtype") == torch.float16:
            return func(*args, **dict(kwargs, dtype=torch.float32)).half()
        return func(*args, **kwargs)


def torch_to_onnx(
    model: nn.Module,
    sample: torch.Tensor,
    *,
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = False,
) -> onnx.ModelProto:
    """Trace ``model`` on ``sample`` into an ONNX model of exactly ``opset``.

    Args:
        model: export-mode module, eval mode; forward(images (B, 3, H, W) float32) -> tuple of tensors.
        sample: example input (B, 3, H, W).
        output_names: names of the outputs, in the order forward returns them.
        opset: ONNX default-domain opset to emit.
        dynamic_batch: make axis 0 of the input and of every output symbolic (``batch``).

    Returns:
        The ONNX model (not yet simplified).

    Raises:
        ExportError: an operator has no ONNX form at this opset (the message names it and the module calling it),
            or the exporter produced a different opset.
    """
    dynamic_axes = None
    if dynamic_batch:
        dynamic_axes = {name: {0: "batch"} for name in (INPUT_NAME, *output_names)}
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice and tracer warnings
            torch.onnx.export(
                model,
                (sample,),
                buffer,
                dynamo=False,
                opset_version=opset,
                input_names=[INPUT_NAME],
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                do_constant_folding=True,
            )
    except torch.onnx.errors.UnsupportedOperatorError as exc:
        op = str(exc).split("'")[1] if "'" in str(exc) else ""
        where = locate_aten_op(model, sample, op) if op else None
        at = f" (called in module {where})" if where else ""
        raise ExportError(
            f"ONNX export failed: operator {op or str(exc)}{at} has no ONNX form at opset {opset}; "
            "replace it with supported operations or try another --opset."
        ) from exc
    except (RuntimeError, torch.onnx.OnnxExporterError) as exc:
        raise ExportError(f"ONNX export failed: {str(exc).splitlines()[0]}") from exc
    proto = onnx.load_from_string(buffer.getvalue())
    check_opset(proto, opset)
    return proto


def check_opset(proto: onnx.ModelProto, opset: int) -> None:
    """Raise :class:`ExportError` unless the default-domain opset of ``proto`` is exactly ``opset``."""
    found = [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")]
    if found != [opset]:
        raise ExportError(
            f"the exporter wrote ONNX opset {found} instead of the requested {opset}; "
            "this torch version cannot produce that opset for this model, choose another --opset."
        )


def simplify(proto: onnx.ModelProto, simplifier: Optional[str] = "onnxslim") -> onnx.ModelProto:
    """Constant-fold and fuse ``proto`` with ``onnxslim`` (default) or ``onnxsim``; ``None`` returns it unchanged.

    The opset is kept; the result is checked with ONNX shape inference.

    Raises:
        ValueError: unknown simplifier.
        BackendUnavailableError: the simplifier is not installed.
        ExportError: the simplifier failed.
    """
    if simplifier is None:
        return proto
    if simplifier not in SIMPLIFIERS:
        raise ValueError(f"unknown simplifier {simplifier!r}: choose onnxslim or onnxsim")
    try:
        module = __import__(simplifier)
    except ImportError as exc:
        extra = "export" if simplifier == "onnxslim" else "onnxsim"
        raise BackendUnavailableError(
            f"{simplifier} is not installed: pip install 'lite-deploy[{extra}]' or pass --no-simplify"
        ) from exc
    before = len(proto.graph.node)
    try:
        if simplifier == "onnxslim":
            result = module.slim(proto)
        else:
            result, ok = module.simplify(proto)
            if not ok:
                raise ExportError("onnxsim could not validate the simplified model; pass --no-simplify")
    except ExportError:
        raise
    except Exception as exc:  # the simplifiers raise bare Exceptions of their own
        raise ExportError(f"{simplifier} failed: {str(exc).splitlines()[0]}; pass --no-simplify") from exc
    folded = fold_channel_gathers(result)
    LOGGER.debug("%s: %d -> %d nodes (%d channel gathers folded)", simplifier, before, len(result.graph.node), folded)
    return result


def fold_channel_gathers(proto: onnx.ModelProto) -> int:
    """Fold constant channel permutations (``Gather`` on axis 1) that feed only convolutions into their weights.

    ``Conv(W, x[:, idx]) == Conv(W[:, argsort(idx)], x)`` for convolutions without groups, so such a Gather (a
    ShuffleNetV2 or GSConv channel shuffle followed by a convolution) is removed exactly. Besides saving a copy, this
    avoids a wrong OpenVINO CPU fusion of Concat -> Gather -> Conv (OpenVINO 2026.4 gave detections far from
    ONNX Runtime's on a trained ShuffleNetV2 + GSConv detector). ``proto`` is changed in place.

    Returns:
        The number of Gathers removed.
    """
    from onnx import numpy_helper

    graph = proto.graph
    initializers = {t.name: t for t in graph.initializer}
    constants = {n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                 if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    users: Dict[str, list] = {}
    for node in graph.node:
        for name in node.input:
            users.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}

    def attribute(node: onnx.NodeProto, name: str, default: int) -> int:
        return next((int(onnx.helper.get_attribute_value(a)) for a in node.attribute if a.name == name), default)

    folded = 0
    for node in list(graph.node):
        if node.op_type != "Gather" or attribute(node, "axis", 0) != 1 or node.output[0] in graph_outputs:
            continue
        index_name = node.input[1]
        index = constants.get(index_name)
        if index is None and index_name in initializers:
            index = numpy_helper.to_array(initializers[index_name])
        convs = users.get(node.output[0], [])
        if index is None or index.ndim != 1 or not convs or any(
            c.op_type != "Conv" or c.input[0] != node.output[0] or attribute(c, "group", 1) != 1
            or c.input[1] not in initializers or len(users[c.input[1]]) != 1 for c in convs
        ):
            continue
        inverse = np.argsort(index)
        for conv in convs:
            weight = initializers[conv.input[1]]
            weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight)[:, inverse], weight.name))
            conv.input[0] = node.input[0]
        graph.node.remove(node)
        users[index_name].remove(node)
        if not users[index_name]:  # the permutation itself is no longer needed
            for holder in [n for n in graph.node if n.op_type == "Constant" and n.output[0] == index_name]:
                graph.node.remove(holder)
            if index_name in initializers:
                graph.initializer.remove(initializers.pop(index_name))
        folded += 1
    return folded


def set_metadata(proto: onnx.ModelProto, spec: ModelSpec) -> None:
    """Write the spec into ``metadata_props`` under :data:`SPEC_KEY`, plus YOLOv5's ``stride`` and ``names`` keys.

    ``stride`` and ``names`` are written as YOLOv5's ``export.py`` writes them (``str(int)`` and ``str(dict)``),
    so tools that read YOLOv5 ONNX files understand these too.
    """
    values: Dict[str, str] = {
        SPEC_KEY: spec.to_json(),
        "stride": str(int(spec.stride)),
        "names": str(dict(enumerate(spec.names))),
    }
    keep = [p for p in proto.metadata_props if p.key not in values]
    del proto.metadata_props[:]
    proto.metadata_props.extend(keep)
    for key, value in values.items():
        proto.metadata_props.add(key=key, value=value)
    proto.producer_name = "lite-deploy"


def save(proto: onnx.ModelProto, path: Union[str, Path], spec: ModelSpec) -> Path:
    """Embed ``spec``, check the model, and write it atomically (the export writes the JSON sidecar at commit)."""
    path = Path(path)
    set_metadata(proto, spec)
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"the exported ONNX model is invalid: {str(exc).splitlines()[0]}") from exc
    atomic_write_bytes(path, proto.SerializeToString())
    return path

