"""Check a freshly built engine against the ONNX it came from, on ONNX Runtime (on the device, torch-free).

The same comparison and table as ``lite-deploy export`` prints (:func:`lite_deploy.runtime.compare.
compare_with_reference`), with ONNX Runtime running the ONNX as the reference. An ONNX ending in
``EfficientNMS_TRT`` (which ONNX Runtime cannot run) is cut before that node: the reference gives boxes and scores,
which go through the host NMS and are matched with the engine's in-graph NMS detections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from ....errors import BackendUnavailableError
from ....spec import ModelSpec
from ...compare import VerificationReport, compare_with_reference

NMS_PLUGIN = "EfficientNMS_TRT"


def reference_model(onnx_path: Union[str, Path]) -> bytes:
    """The ONNX as ONNX Runtime can run it: unchanged, or cut before an ``EfficientNMS_TRT`` node (its boxes and
    scores inputs become the outputs)."""
    import onnx

    model = onnx.load(str(onnx_path))
    plugin = next((n for n in model.graph.node if n.op_type == NMS_PLUGIN), None)
    if plugin is None:
        return model.SerializeToString()
    model.graph.node.remove(plugin)
    del model.graph.output[:]
    for name in plugin.input[:2]:
        model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    for opset in [o for o in model.opset_import if o.domain not in ("", "ai.onnx")]:
        model.opset_import.remove(opset)
    return model.SerializeToString()


def onnxruntime_reference(onnx_path: Union[str, Path]) -> Callable[[np.ndarray], List[np.ndarray]]:
    """``x (B, 3, H, W) float32 -> outputs`` of the ONNX on ONNX Runtime's CPU provider.

    Raises:
        BackendUnavailableError: onnxruntime is not installed.
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailableError(
            "verifying the engine needs onnxruntime on the device (pip install onnxruntime); "
            "or skip it with --no-verify"
        ) from exc
    session = ort.InferenceSession(reference_model(onnx_path), providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda x: session.run(None, {name: x})


def verify_engine(engine: Union[str, Path], onnx_path: Union[str, Path], spec: ModelSpec,
                  images: Optional[Sequence[np.ndarray]] = None) -> VerificationReport:
    """Run the engine and the ONNX (ONNX Runtime) on the same letterboxed images and compare.

    Args:
        engine: the engine, its spec beside it.
        onnx_path: the ONNX it was built from.
        spec: the engine's spec (its precision sets the tolerance).
        images: BGR images; default the generated sample scenes.

    Returns:
        The :class:`~lite_deploy.runtime.compare.VerificationReport` (``table()``, ``raise_for_failure()``).
    """
    return compare_with_reference(engine, onnxruntime_reference(onnx_path), spec, images=images,
                                  reference_name=f"ONNX Runtime ({Path(onnx_path).name})")
