"""GFLOPs of a model read from its graph: 2 x the multiply-accumulates of its convolutions and matrix products.

Counted per image (the batch axis left out) from an ONNX graph (``Conv``, ``Gemm``, ``MatMul``; needs the ``onnx``
package) or an OpenVINO model (``Convolution``, ``GroupConvolution``, ``MatMul``; the backend itself). Element-wise
operations, pooling and resizes are not counted, as in YOLOv5's and this project's ``info`` GFLOPs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence, Tuple, Union

from ...spec import ModelSpec

Dims = Sequence[Optional[int]]


def conv_macs(output: Dims, weight: Dims, grouped: bool = False) -> Optional[int]:
    """Multiply-accumulates of one image through a convolution.

    Args:
        output: output shape (N, C_out, *spatial).
        weight: (C_out, C_in/groups, *kernel), or OpenVINO's grouped (groups, C_out/groups, C_in/groups, *kernel).
        grouped: ``weight`` is in OpenVINO's grouped layout.

    Returns:
        MACs, or ``None`` when a dimension other than the batch is unknown.
    """
    per_output = weight[2:] if grouped else weight[1:]
    return _product(list(output[1:]) + list(per_output))


def matmul_macs(output: Dims, inner: Optional[int]) -> Optional[int]:
    """Multiply-accumulates of one image through a matrix product: output (N, ...) elements times ``inner`` (K)."""
    return _product(list(output[1:]) + [inner])


def onnx_gflops(path: Union[str, Path]) -> Optional[float]:
    """GFLOPs per image of an ONNX model's ``Conv``, ``Gemm`` and ``MatMul`` nodes (shapes by ONNX inference).

    Returns:
        GFLOPs, or ``None`` when a needed shape is unknown (dynamic height/width).

    Raises:
        ImportError: the ``onnx`` package is not installed.
    """
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path))).graph
    shapes = {init.name: list(init.dims) for init in graph.initializer}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes.setdefault(info.name, [d.dim_value if d.HasField("dim_value") else None for d in dims])
    macs = 0
    for node in graph.node:
        if node.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        output, a, b = (shapes.get(name) for name in (node.output[0], node.input[0], node.input[1]))
        if output is None or a is None or b is None:
            return None
        if node.op_type == "Conv":
            count = conv_macs(output, b)
        elif node.op_type == "Gemm":
            trans_a = any(attr.name == "transA" and attr.i for attr in node.attribute)
            count = matmul_macs(output, a[0] if trans_a else a[-1])
        else:
            count = matmul_macs(output, a[-1])
        if count is None:
            return None
        macs += count
    return 2 * macs / 1e9


def openvino_gflops(model: Any) -> Optional[float]:
    """GFLOPs per image of an ``openvino.Model``'s ``Convolution``, ``GroupConvolution`` and ``MatMul`` ops.

    Returns:
        GFLOPs, or ``None`` when a needed shape is dynamic (other than the batch).
    """
    macs = 0
    for op in model.get_ordered_ops():
        kind = op.get_type_name()
        if kind not in ("Convolution", "GroupConvolution", "MatMul"):
            continue
        output = _ov_dims(op.get_output_partial_shape(0))
        if kind == "MatMul":
            a = _ov_dims(op.get_input_partial_shape(0))
            count = matmul_macs(output, a[-2] if op.get_attributes().get("transpose_a") else a[-1])
        else:
            count = conv_macs(output, _ov_dims(op.get_input_partial_shape(1)), grouped=kind == "GroupConvolution")
        if count is None:
            return None
        macs += count
    return 2 * macs / 1e9


def model_gflops(path: Union[str, Path], spec: ModelSpec, ov_model: Any = None) -> Tuple[Optional[float], str]:
    """GFLOPs per image of an artifact and where the number comes from.

    Looks, in order, at: an OpenVINO model already read (``ov_model``, for ``.xml``), the artifact's ONNX graph
    (the artifact itself, or the ``.onnx`` of the same name beside it, e.g. the ``_trt.onnx`` of an engine),
    and ``spec.extra["gflops"]``.

    Returns:
        ``(gflops, source)``; ``gflops`` is ``None`` when no source has it, and ``source`` then says why.
    """
    if ov_model is not None:
        count = openvino_gflops(ov_model)
        if count is not None:
            return count, "OpenVINO graph"
    path = Path(path)
    graph = path if path.suffix.lower() == ".onnx" else path.with_suffix(".onnx")
    reason = f"no ONNX graph beside {path.name}"
    if graph.is_file():
        try:
            count = onnx_gflops(graph)
        except ImportError:
            reason = f"counting {graph.name} needs the onnx package (pip install onnx)"
        else:
            if count is not None:
                return count, f"ONNX graph {graph.name}"
            reason = f"{graph.name} has dynamic image dimensions"
    if "gflops" in spec.extra:
        return float(spec.extra["gflops"]), "spec"
    return None, reason


def _ov_dims(shape: Any) -> Dims:
    return [d.get_length() if d.is_static else None for d in shape]


def _product(dims: Sequence[Optional[int]]) -> Optional[int]:
    total = 1
    for d in dims:
        if d is None:
            return None
        total *= int(d)
    return total
