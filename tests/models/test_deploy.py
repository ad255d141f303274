"""Export-time rewrites: BN fusion, static GSConv shuffle, export-mode head, ONNX with a dynamic batch axis."""

from __future__ import annotations

import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from lite_deploy.models import build_model, load_model, load_yaml
from lite_deploy.models.deploy import channels_last_shuffles, fuse, prepare_for_export
from lite_deploy.models.gsconv import GSConv
from lite_deploy.models.heads import Detect

torch.set_num_threads(1)


def to_export_layout(y: torch.Tensor):
    """YOLOv5's (B, N, 5+nc) xywh/obj/cls as (boxes xyxy (B, N, 4), scores obj*cls (B, N, nc))."""
    xy, wh = y[..., :2], y[..., 2:4]
    return torch.cat((xy - wh / 2, xy + wh / 2), -1), y[..., 4:5] * y[..., 5:]


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BatchNorm statistics so that a wrong fusion shows."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            for t in (m.weight.data, m.bias.data, m.running_mean, m.running_var):
                t.copy_(torch.rand(t.shape, generator=g) * 0.995 + 0.005)


def test_prepare_for_export_matches_unfused_and_leaves_input_alone(yolov5_fixtures):
    model = load_model(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt")
    ref = np.load(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.ref.npz")
    x = torch.from_numpy(ref["x"])
    export = prepare_for_export(model)
    with torch.no_grad():
        boxes, scores = export(x)
        ref_boxes, ref_scores = to_export_layout(model(x)[0])
    # boxes are pixels up to ~600: float32 rounding alone (unfused float32 vs float64) moves them by ~4e-4 px
    torch.testing.assert_close(boxes, ref_boxes, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=0)
    # the source model is untouched: BN present, GSConv shuffle dynamic, head in YOLOv5 mode
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules())
    assert all(m.perm is None for m in model.modules() if isinstance(m, GSConv))
    assert model.model[-1].export is False
    assert not any(isinstance(m, nn.BatchNorm2d) for m in export.modules())


def test_fuse_handles_attribute_and_sequential_patterns():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 1))
    conv = build_model("yolov5n").model[1]
    for m in (model, conv):
        _randomize_bn(m)
        m.eval()
        x = torch.rand(2, m[0].in_channels if isinstance(m, nn.Sequential) else 16, 16, 16)
        with torch.no_grad():
            before = m(x)
            fuse(m)
            torch.testing.assert_close(m(x), before, atol=1e-5, rtol=1e-5)
        assert not any(isinstance(k, nn.BatchNorm2d) for k in m.modules())


def _max_rank(model_proto: onnx.ModelProto) -> int:
    inferred = onnx.shape_inference.infer_shapes(model_proto)
    values = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
    ranks = [len(v.type.tensor_type.shape.dim) for v in values if v.type.tensor_type.HasField("shape")]
    assert len(ranks) > len(model_proto.graph.node) // 2  # shape inference reached most tensors
    return max(ranks)


@pytest.mark.parametrize("shuffle", ["evenodd", "interleave"])
def test_gsconv_model_exports_to_onnx_with_dynamic_batch(shuffle):
    cfg = load_yaml("slimneck-yolov5n")
    cfg["gsconv_shuffle"] = shuffle
    model = build_model(cfg, nc=3).eval()
    _randomize_bn(model)
    export = prepare_for_export(model)
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            export,
            (torch.rand(2, 3, 96, 128),),
            buffer,
            dynamo=False,
            opset_version=17,
            input_names=["images"],
            output_names=["boxes", "scores"],
            dynamic_axes={"images": {0: "batch"}, "boxes": {0: "batch"}, "scores": {0: "batch"}},
        )
    proto = onnx.load_from_string(buffer.getvalue())
    assert {(o.domain, o.version) for o in proto.opset_import} == {("", 17)}
    assert _max_rank(proto) == 4
    session = ort.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    for batch in (1, 2, 3):
        x = torch.rand(batch, 3, 96, 128)
        with torch.no_grad():
            ref_boxes, ref_scores = to_export_layout(model(x)[0])
        boxes, scores = session.run(["boxes", "scores"], {"images": x.numpy()})
        assert boxes.shape == (batch, 3 * (12 * 16 + 6 * 8 + 3 * 4), 4) and scores.shape[-1] == 3
        np.testing.assert_allclose(boxes, ref_boxes.numpy(), atol=1e-4, rtol=1e-5)
        np.testing.assert_allclose(scores, ref_scores.numpy(), atol=1e-4, rtol=1e-5)


def test_export_head_grid_follows_input_size():
    export = prepare_for_export(build_model("yolov5n", nc=2))
    det = export.model[-1]
    assert isinstance(det, Detect) and det.export
    with torch.no_grad():
        for h, w in ((64, 64), (96, 160)):
            boxes, scores = export(torch.rand(1, 3, h, w))
            assert boxes.shape[1] == 3 * sum((h // s) * (w // s) for s in (8, 16, 32)) and scores.shape[-1] == 2


@pytest.mark.parametrize("shuffle", ["evenodd", "interleave"])
def test_channels_last_shuffles_keep_the_outputs(shuffle):
    """Every shuffle of a ShuffleNetV2 + GSConv detector computed channels-last: the same boxes and scores (up to
    float rounding)."""
    cfg = load_yaml("shufflenetv2-x0_5-gsconvns")  # the bundled demo's: GSConv inside VoVGSCSP
    cfg["gsconv_shuffle"] = shuffle
    model = build_model(cfg, nc=3).eval()
    _randomize_bn(model)
    model = prepare_for_export(model)
    x = torch.rand(1, 3, 96, 128)
    with torch.no_grad():
        before = model(x)
        channels_last_shuffles(model)
        after = model(x)
    for a, b in zip(before, after):  # the shuffles are exact; convolutions then read channels-last memory
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    from lite_deploy.models.backbones import ChannelShuffle
    from lite_deploy.models.gsconv import GSConvns

    shuffles = [m for m in model.modules() if isinstance(m, ChannelShuffle)
                or isinstance(m, GSConv) and not isinstance(m, GSConvns)]
    assert len(shuffles) > 10 and all(m.channels_last for m in shuffles)


def test_channels_last_decode_keeps_the_outputs_of_wide_heads_only():
    """The channels-last decode (split head convolution, channels-last views) gives the default decode's boxes and
    scores, in the same row order, up to float rounding; heads with few classes keep the default decode."""
    from lite_deploy.models.deploy import CHANNELS_LAST_MIN_CLASSES, channels_last_decode

    model = prepare_for_export(build_model("yolov5n", nc=CHANNELS_LAST_MIN_CLASSES))
    x = torch.rand(2, 3, 96, 128, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before = model(x)
        assert channels_last_decode(model) and model.model[-1].channels_last_decode
        after = model(x)
    assert [t.shape for t in after] == [t.shape for t in before]
    for a, b in zip(before, after):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-4)
    narrow = prepare_for_export(build_model("yolov5n", nc=CHANNELS_LAST_MIN_CLASSES - 1))
    assert not channels_last_decode(narrow) and not narrow.model[-1].channels_last_decode
