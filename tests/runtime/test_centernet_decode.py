"""CenterNet peak decoding against a plain loop implementation, and through ``Detector`` on a real ONNX artifact."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
import pytest

from lite_deploy.runtime import Detector
from lite_deploy.runtime.pipeline.centernet import decode_centernet, max_pool3x3
from lite_deploy.runtime.pipeline.preprocess import plan_letterbox
from lite_deploy.spec import ModelSpec, sidecar_path


def reference_decode(hm: np.ndarray, wh: np.ndarray, reg: np.ndarray, stride: float, conf: float, top_k: int,
                     classes: Optional[Sequence[int]] = None) -> List[Tuple[float, int, List[float]]]:
    """Loops: a cell is a peak when no cell of its 3x3 neighbourhood (inside the map) is higher."""
    nc, h, w = hm.shape
    peaks = []
    for c in range(nc):
        for y in range(h):
            for x in range(w):
                neighbours = [hm[c, j, i] for j in range(y - 1, y + 2) for i in range(x - 1, x + 2)
                              if 0 <= j < h and 0 <= i < w]
                if hm[c, y, x] >= max(neighbours):
                    peaks.append((-float(hm[c, y, x]), c, y, x))
    out = []
    for neg, c, y, x in sorted(peaks)[:top_k]:
        if -neg <= conf or (classes is not None and c not in classes):
            continue
        cx, cy = (x + reg[0, y, x]) * stride, (y + reg[1, y, x]) * stride
        bw, bh = wh[0, y, x] * stride, wh[1, y, x] * stride
        out.append((-neg, c, [cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2]))
    return out


@pytest.mark.parametrize("seed", range(6))
def test_decode_matches_loops(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nc, h, w = int(rng.integers(1, 4)), int(rng.integers(1, 12)), int(rng.integers(1, 12))
    hm = rng.random((nc, h, w)).astype(np.float32)
    if seed % 2:  # plateaus: equal neighbours are all peaks, ties ordered by class, row, column
        hm = np.round(hm * 4) / 4
    wh = rng.uniform(0.5, 6, (2, h, w)).astype(np.float32)
    reg = rng.random((2, h, w)).astype(np.float32)
    for conf, top_k, classes in ((0.0, 100, None), (0.3, 5, None), (0.5, 100, [0, 2]), (0.1, 1, None)):
        boxes, scores, class_ids = decode_centernet(hm, wh, reg, 4, conf, top_k, classes)
        expected = reference_decode(hm, wh, reg, 4, conf, top_k, classes)
        assert boxes.shape == (len(expected), 4) and boxes.dtype == np.float32
        np.testing.assert_array_equal(scores, np.array([e[0] for e in expected], np.float32))
        np.testing.assert_array_equal(class_ids, [e[1] for e in expected])
        np.testing.assert_allclose(boxes, np.array([e[2] for e in expected]).reshape(-1, 4), rtol=1e-6, atol=1e-5)


def test_max_pool_equals_torch() -> None:
    torch = pytest.importorskip("torch")
    x = np.random.default_rng(0).random((3, 9, 13)).astype(np.float32)
    expected = torch.nn.functional.max_pool2d(torch.from_numpy(x)[None], 3, stride=1, padding=1)[0].numpy()
    np.testing.assert_array_equal(max_pool3x3(x), expected)


def test_decode_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match="expected hm"):
        decode_centernet(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)), np.zeros((2, 4, 4)), 4, 0.1)


def _constant_onnx(path: Path, hm: np.ndarray, wh: np.ndarray, reg: np.ndarray, imgsz: int) -> Path:
    """An ONNX model whose outputs hm/wh/reg are fixed tensors plus 0 x (mean of the image)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=1),
             helper.make_node("Mul", ["mean", "zero"], ["nothing"])]
    inits = [numpy_helper.from_array(np.zeros((), np.float32), "zero")]
    outputs = []
    for name, value in (("hm", hm), ("wh", wh), ("reg", reg)):
        inits.append(numpy_helper.from_array(value[None].astype(np.float32), f"{name}_value"))
        nodes.append(helper.make_node("Add", [f"{name}_value", "nothing"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, (1,) + value.shape))
    graph = helper.make_graph(nodes, "centernet_constant",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, (1, 3, imgsz, imgsz))],
                              outputs, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def test_detector_decodes_and_unletterboxes(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    imgsz, stride, nc = 64, 4, 2
    hm = np.zeros((nc, imgsz // stride, imgsz // stride), np.float32)
    hm[1, 6, 5], hm[1, 6, 6], hm[0, 10, 3] = 0.9, 0.5, 0.4  # (1, 6, 6) is no peak: its neighbour is higher
    wh = np.full((2,) + hm.shape[1:], 3.0, np.float32)
    reg = np.full((2,) + hm.shape[1:], 0.25, np.float32)
    path = _constant_onnx(tmp_path / "cn.onnx", hm, wh, reg, imgsz)
    ModelSpec(task="detect", names=("a", "b"), imgsz=(imgsz, imgsz), output_layout="centernet",
              output_names=("hm", "wh", "reg"), stride=32, strides=(stride,)).save(sidecar_path(path))
    frame = np.zeros((100, 200, 3), np.uint8)  # letterboxed: ratio 0.32, 16 px of padding above and below
    with Detector.load(path, conf=0.3) as det:
        dets = det(frame)
        assert dets.class_ids.tolist() == [1, 0]
        plan = plan_letterbox(frame.shape[:2], imgsz)
        expected = np.array([[5.25 * 4 - 6, 6.25 * 4 - 6, 5.25 * 4 + 6, 6.25 * 4 + 6],
                             [3.25 * 4 - 6, 10.25 * 4 - 6, 3.25 * 4 + 6, 10.25 * 4 + 6]], np.float32)
        expected = (expected - [plan.left, plan.top, plan.left, plan.top]) / plan.ratio
        np.testing.assert_allclose(dets.boxes, expected, rtol=1e-5)
        np.testing.assert_allclose(dets.scores, [0.9, 0.4])
    with Detector.load(path, conf=0.3, classes=[0]) as det:
        assert det(frame).class_ids.tolist() == [0]
    with Detector.load(path, conf=0.3, max_det=1) as det:
        assert det(frame).class_ids.tolist() == [1]


def test_centernet_spec_needs_its_stride(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    shape = (1, 16, 16)
    path = _constant_onnx(tmp_path / "cn.onnx", np.zeros(shape), np.zeros((2, 16, 16)), np.zeros((2, 16, 16)), 64)
    ModelSpec(task="detect", names=("a",), imgsz=(64, 64), output_layout="centernet",
              output_names=("hm", "wh", "reg")).save(sidecar_path(path))
    with pytest.raises(ValueError, match="heatmap stride"):
        Detector.load(path)
