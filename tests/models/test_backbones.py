"""Backbones: torchvision parity, the rank-4 channel shuffle, ONNX export, EfficientNetV2 tutorial blocks, yamls."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
import torchvision
from torch import nn

from lite_deploy.errors import CheckpointError, ConfigError
from lite_deploy.models import build_model
from lite_deploy.models.backbones import (
    ChannelShuffle,
    DropPath,
    FusedMBConv,
    MBConv,
    ShuffleNetV1Classifier,
    Stem,
    build_classifier,
    list_classifiers,
    load_torchvision_backbone,
)
from lite_deploy.models.backbones.shufflenetv2 import ShuffleNetV2Features
from lite_deploy.models.registry import get_module

TORCHVISION = {
    "mobilenetv2": torchvision.models.mobilenet_v2,
    "shufflenetv2_x0_5": torchvision.models.shufflenet_v2_x0_5,
    "shufflenetv2_x1_0": torchvision.models.shufflenet_v2_x1_0,
    "shufflenetv2_x1_5": torchvision.models.shufflenet_v2_x1_5,
    "shufflenetv2_x2_0": torchvision.models.shufflenet_v2_x2_0,
    "squeezenet1_1": torchvision.models.squeezenet1_1,
    **{f"mobilenetv2_x{w}".replace(".", "_"): functools.partial(torchvision.models.mobilenet_v2, width_mult=w)
       for w in (0.35, 0.5, 0.75, 1.4)},
}
WIDTH_CFGS = {  # detector config -> the torchvision classifier whose backbone it holds
    "shufflenetv2-x1_5-gsconvns": "shufflenetv2_x1_5",
    "shufflenetv2-x2_0-gsconvns": "shufflenetv2_x2_0",
    "mobilenetv2-x0_35-gsconvns": "mobilenetv2_x0_35",
    "mobilenetv2-x0_5-gsconvns": "mobilenetv2_x0_5",
    "mobilenetv2-x0_75-gsconvns": "mobilenetv2_x0_75",
    "mobilenetv2-x1_4-gsconvns": "mobilenetv2_x1_4",
}


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def random_torchvision(arch: str) -> nn.Module:
    """A torchvision model (weights=None) with random BN statistics, so running stats matter in the comparison."""
    model = TORCHVISION[arch](weights=None)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.1)
    return model.eval()


def textbook_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The 5-D view/transpose channel shuffle of torchvision and the ShuffleNet papers."""
    b, c, h, w = x.shape
    return x.view(b, groups, c // groups, h, w).transpose(1, 2).reshape(b, c, h, w)


def test_list_classifiers_and_unknown_arch():
    assert list_classifiers() == sorted(
        ["mobilenetv2", "mobilenetv2_x0_35", "mobilenetv2_x0_5", "mobilenetv2_x0_75", "mobilenetv2_x1_4",
         "shufflenetv1_g3", "shufflenetv2_x0_5", "shufflenetv2_x1_0", "shufflenetv2_x1_5", "shufflenetv2_x2_0",
         "squeezenet1_1"]
    )
    with pytest.raises(ValueError, match="unknown classifier 'resnet50'; choose one of: mobilenetv2"):
        build_classifier("resnet50", 10)


@pytest.mark.parametrize("arch", sorted(TORCHVISION))
def test_classifier_matches_torchvision(arch):
    reference = random_torchvision(arch)
    model = build_classifier(arch, 1000).eval()
    assert list(model.state_dict()) == list(reference.state_dict())
    model.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 96, 96)
    with torch.no_grad():
        torch.testing.assert_close(model(x), reference(x), rtol=0, atol=1e-5)
    assert model.task == "classify" and model.imgsz == 224 and len(model.names) == 1000
    assert model.names[0] == "tench" and model.mean == (0.485, 0.456, 0.406) and model.std == (0.229, 0.224, 0.225)


@pytest.mark.parametrize("arch", sorted(TORCHVISION))
def test_new_head_loads_backbone_and_reports_head(arch, tmp_path):
    reference = random_torchvision(arch)
    path = tmp_path / f"{arch}.pth"
    torch.save(reference.state_dict(), path)
    model = build_classifier(arch, 7, names=[f"c{i}" for i in range(7)])
    report = load_torchvision_backbone(model, path)
    assert report.ok and not report.unexpected
    assert report.new and all(k.startswith(model.head_prefixes) for k in report.new)
    assert "new (not in torchvision" in report.summary()
    for key, value in model.state_dict().items():
        if key not in report.new:
            assert torch.equal(value, reference.state_dict()[key]), key
    assert model.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 7) and model.names[6] == "c6"
    assert model.config == {"arch": arch, "num_classes": 7}
    build_classifier(**model.config).load_state_dict(model.state_dict(), strict=True)


def test_wrong_width_is_refused_and_model_untouched():
    model = build_classifier("shufflenetv2_x1_0", 1000)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError, match="do not fit this backbone"):
        load_torchvision_backbone(model, random_torchvision("shufflenetv2_x0_5").state_dict())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


@pytest.mark.parametrize("channels,groups", [(8, 2), (232, 2), (60, 3), (48, 4), (24, 8)])
def test_rank4_shuffle_equals_textbook(channels, groups):
    x = torch.randn(2, channels, 5, 3)
    shuffle = ChannelShuffle(channels, groups)
    assert torch.equal(shuffle(x), textbook_shuffle(x, groups))
    shuffle.channels_last = True
    assert torch.equal(shuffle(x), textbook_shuffle(x, groups))


def test_shuffle_index_is_not_in_state_dict():
    assert ChannelShuffle(8, 2).state_dict() == {}
    with pytest.raises(ValueError, match="groups \\(3\\) to divide channels \\(8\\)"):
        ChannelShuffle(8, 3)


def test_shufflenetv2_block_equals_torchvision_block_with_5d_shuffle():
    ours = build_classifier("shufflenetv2_x0_5").eval()
    reference = random_torchvision("shufflenetv2_x0_5")
    ours.load_state_dict(reference.state_dict())
    x = torch.randn(1, 48, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ours.stage2[1](x), reference.stage2[1](x), rtol=0, atol=0)


def onnx_ranks_and_outputs(model: nn.Module, size: int, tmp_path):
    import onnx
    import onnxruntime as ort

    model.eval()
    x = torch.randn(1, 3, size, size)
    path = tmp_path / "model.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                      output_names=["logits"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True).graph
    assert {o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")} == {17}
    infos = list(graph.value_info) + list(graph.input) + list(graph.output)
    typed = {v.name: len(v.type.tensor_type.shape.dim) for v in infos}
    produced = {name for node in graph.node for name in node.output}
    assert produced <= set(typed), "shape inference left tensors without a rank"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"images": x.numpy()})
    with torch.no_grad():
        expected = model(x).numpy()
    return typed, got, expected, [n.op_type for n in graph.node]


@pytest.mark.parametrize(
    "model_fn", [lambda: build_classifier("shufflenetv2_x0_5"), lambda: ShuffleNetV1Classifier(10, groups=3)],
    ids=["shufflenetv2", "shufflenetv1"],
)
def test_shufflenet_onnx_is_rank4_and_matches_torch(model_fn, tmp_path):
    model = model_fn()
    ranks, got, expected, ops = onnx_ranks_and_outputs(model, 96, tmp_path)
    assert max(ranks.values()) <= 4, {k: r for k, r in ranks.items() if r > 4}
    assert "Gather" in ops and "Transpose" not in ops
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-4)


def test_shufflenetv1_matches_paper_complexity():
    from torch.utils.flop_counter import FlopCounterMode

    model = ShuffleNetV1Classifier(1000, groups=3).eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 224, 224))
    macs = counter.get_total_flops() / 2
    assert 130e6 < macs < 145e6  # paper, Table 2: ShuffleNet 1x (g = 3) 140 MFLOPs
    assert [getattr(model, f"stage{i}")[-1].expand[0].out_channels for i in (2, 3, 4)] == [240, 480, 960]
    with pytest.raises(ValueError, match="groups in \\[1, 2, 3, 4, 8\\]"):
        ShuffleNetV1Classifier(10, groups=5)


def bn_keys(prefix: str):
    return [f"{prefix}.conv.weight"] + [
        f"{prefix}.bn.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    ]


def test_efficientnetv2_tutorial_names_and_shapes():
    fused = FusedMBConv(24, 48, 3, 2, 4, 0)
    assert list(fused.state_dict()) == bn_keys("expansion_conv") + bn_keys("project_conv")
    assert fused.expansion_conv.conv.weight.shape == (96, 24, 3, 3) and fused.expansion_conv.conv.stride == (2, 2)
    assert fused.project_conv.conv.weight.shape == (48, 96, 1, 1)
    plain = FusedMBConv(24, 24, 3, 1, 1, 0)
    assert list(plain.state_dict()) == bn_keys("project_conv") and plain.project_conv.conv.weight.shape[-1] == 3
    mb = MBConv(32, 32, 3, 1, 4, 0.25)
    se = ["se.conv_reduce.weight", "se.conv_reduce.bias", "se.conv_expand.weight", "se.conv_expand.bias"]
    assert list(mb.state_dict()) == bn_keys("expansion_conv") + bn_keys("dw_conv") + se + bn_keys("project_conv")
    assert mb.se.conv_reduce.weight.shape == (32, 128, 1, 1) and mb.dw_conv.conv.groups == 128
    assert isinstance(MBConv(32, 40, 3, 1, 6, 0).se, nn.Identity)
    assert mb.expansion_conv.bn.eps == 1e-3 and isinstance(Stem(3, 8).act, nn.SiLU)
    assert get_module("stem").factory is Stem and get_module("MBConv").channels == "scaled"


@pytest.mark.parametrize(
    "block,shortcut",
    [(FusedMBConv(16, 16, 3, 1, 4, 0), True), (FusedMBConv(16, 16, 3, 1, 1, 0), True),
     (FusedMBConv(16, 24, 3, 1, 4, 0), False), (MBConv(16, 16, 3, 1, 4, 0.25), True),
     (MBConv(16, 16, 3, 2, 4, 0.25), False), (MBConv(16, 24, 3, 1, 4, 0.25), False)],
)
def test_efficientnetv2_shortcut(block, shortcut):
    block.eval()
    x = torch.randn(2, 16, 8, 8)
    with torch.no_grad():
        if isinstance(block, MBConv):
            body = block.project_conv(block.se(block.dw_conv(block.expansion_conv(x))))
        else:
            body = block.project_conv(block.expansion_conv(x) if block.has_expansion else x)
        assert block.has_shortcut is shortcut
        torch.testing.assert_close(block(x), body + x if shortcut else body, rtol=0, atol=0)


def test_drop_path_only_in_training():
    drop = DropPath(0.5)
    x = torch.ones(400, 3, 2, 2)
    assert torch.equal(drop.eval()(x), x)
    y = drop.train()(x)
    per_sample = y.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert torch.all(per_sample.min(1).values == per_sample.max(1).values)  # whole samples dropped
    assert 120 < int((per_sample[:, 0] == 0).sum()) < 280


@pytest.mark.parametrize(
    "cfg,arch,slices",
    [("mobilenetv2-gsconvns", "mobilenetv2", [(0, 7), (7, 14), (14, 18)]),
     ("shufflenetv2-gsconvns", "shufflenetv2_x1_0", None),
     ("squeezenet-yolov5", "squeezenet1_1", None),
     *((cfg, arch, [(0, 7), (7, 14), (14, 18)] if arch.startswith("mobilenet") else None)
       for cfg, arch in WIDTH_CFGS.items())],
)
def test_torchvision_weights_into_detector(cfg, arch, slices):
    reference = random_torchvision(arch)
    model = build_model(cfg, nc=3).eval()
    report = load_torchvision_backbone(model, reference.state_dict())
    assert report.ok and report.matched
    assert any(k.startswith(("classifier.", "fc.")) for k in report.unexpected)
    assert "model.3" in report.new and f"model.{len(model.model) - 1}" in report.new  # SPPF, Detect are new
    if slices:  # the backbone layers compute torchvision's features (BN eps is the detector's 1e-3)
        for m in reference.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.eps = 1e-3
        x = torch.randn(1, 3, 64, 64)
        with torch.no_grad():
            for layer, (start, end) in zip(model.model, slices):
                x_ref = reference.features[start:end](x)
                x = layer(x)
                torch.testing.assert_close(x, x_ref, rtol=0, atol=1e-5)


def test_backbone_slice_validates_channels():
    with pytest.raises(ConfigError, match="outputs 116 channels; set its first yaml argument to 116"):
        ShuffleNetV2Features(120, 0, 3, 1.0)
    with pytest.raises(ConfigError, match="width_mult must be one of"):
        ShuffleNetV2Features(116, 0, 3, 0.75)
    cfg = {"nc": 2, "anchors": 1, "backbone": [[-1, 1, "MobileNetV2Features", [24, 0, 7]]],
           "head": [[[-1], 1, "Detect", ["nc", "anchors"]]]}
    with pytest.raises(ConfigError, match="outputs 32 channels"):
        build_model(cfg)
    with pytest.raises(ValueError, match="no torchvision-compatible layers"):
        load_torchvision_backbone(build_model("efficientnetv2-yolov5"), {})


def test_shufflenetv2_detector_onnx_is_rank4(tmp_path):
    import onnx
    import onnxruntime as ort

    from lite_deploy.models.deploy import prepare_for_export

    model = prepare_for_export(build_model("shufflenetv2-gsconvns").eval())
    x = torch.randn(1, 3, 160, 160)
    path = tmp_path / "detector.onnx"
    torch.onnx.export(model, (x,), str(path), dynamo=False, opset_version=17, input_names=["images"],
                      output_names=["boxes", "scores"])
    graph = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in list(graph.value_info) + list(graph.output)}
    assert {name for node in graph.node for name in node.output} <= set(ranks) and max(ranks.values()) <= 4
    boxes, scores = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x.numpy()})
    with torch.no_grad():
        ref_boxes, ref_scores = model(x)
    np.testing.assert_allclose(boxes, ref_boxes.numpy(), rtol=0, atol=1e-3)  # pixels
    np.testing.assert_allclose(scores, ref_scores.numpy(), rtol=0, atol=1e-5)
