"""FP16 ONNX of a detector that builds its grid in ``forward`` (``torch.arange(..., dtype=x.dtype)``): ONNX's Range
has no float16 form, so the range is made in float32 and cast; the artifact runs in ONNX Runtime close to FP32."""

from __future__ import annotations

import numpy as np
import onnx
import torch

from lite_deploy.export.exporter import export
from lite_deploy.runtime import load_runtime


def _outputs(path, images: np.ndarray):
    with load_runtime(path) as rt:
        return rt.infer({"images": images})


def test_tiny_detector_fp16_onnx_runs_close_to_fp32(tmp_path, tiny_detector):
    torch.manual_seed(0)
    model = tiny_detector(nc=3).eval()
    fp32 = export(model, "onnx", imgsz=64, out=tmp_path, name="m")["onnx"]
    fp16 = export(model, "onnx", imgsz=64, precision="fp16", out=tmp_path, name="m")["onnx"]  # verified vs torch too
    assert fp16.name == "m_fp16.onnx"
    graph = onnx.load(str(fp16)).graph
    weights = [t for t in graph.initializer if len(t.dims) == 4]
    assert weights and all(t.data_type == onnx.TensorProto.FLOAT16 for t in weights)
    assert graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # float32 I/O as the FP32 artifact

    images = np.random.default_rng(0).random((1, 3, 64, 64), dtype=np.float32)
    ref, half = _outputs(fp32, images), _outputs(fp16, images)
    assert set(ref) == set(half) == {"boxes", "scores"}
    np.testing.assert_allclose(half["boxes"], ref["boxes"], atol=0.25)  # pixels of a 64x64 input
    np.testing.assert_allclose(half["scores"], ref["scores"], atol=2e-3)
    assert np.abs(half["boxes"] - ref["boxes"]).max() > 0  # computed in float16 indeed
