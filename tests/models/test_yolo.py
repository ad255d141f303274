"""Model building from yaml: YOLOv5's parse_model semantics, parameter counts, heads, activations."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lite_deploy.errors import ConfigError
from lite_deploy.models import build_model, list_configs, load_yaml
from lite_deploy.models.deploy import prepare_for_export
from lite_deploy.models.gsconv import GSConv, shuffle_permutation
from lite_deploy.models.heads import Detect

torch.set_num_threads(1)

# parameter counts of YOLOv5 v7.0 and the slim-neck fork at nc=80 (the fork README / YOLOv5 model_info)
PARAMS = {
    "yolov5n": 1_872_157,
    "yolov5s": 7_235_389,
    "GSConv-yolov5n": 1_764_317,
    "slimneck-yolov5n": 1_900_669,
    "GSConv-yolov5s": 6_794_429,
    "SNc-yolov5s": 6_961_133,
}


def to_export_layout(y: torch.Tensor):
    """YOLOv5's (B, N, 5+nc) xywh/obj/cls as (boxes xyxy (B, N, 4), scores obj*cls (B, N, nc))."""
    xy, wh = y[..., :2], y[..., 2:4]
    return torch.cat((xy - wh / 2, xy + wh / 2), -1), y[..., 4:5] * y[..., 5:]


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_parameter_counts_and_strides(name):
    model = build_model(name, nc=80)
    assert n_params(model) == PARAMS[name]
    assert model.stride.tolist() == [8.0, 16.0, 32.0]
    assert model.task == "detect" and model.names == {i: str(i) for i in range(80)}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)


@pytest.mark.parametrize("name", list_configs())  # every bundled config: a new one is tested without listing it
def test_bundled_config_runs_and_export_mode_agrees(name):
    model = build_model(name).eval()
    x = torch.rand(1, 3, 320, 320)
    with torch.no_grad():
        if not isinstance(model.model[-1], Detect):  # CenterNet: heatmap, size and offset maps at stride 4
            heatmap, size, offset = model(x)
            assert heatmap.shape == (1, model.nc, 80, 80) and size.shape == offset.shape == (1, 2, 80, 80)
            return
        assert model.stride.tolist() == [8.0, 16.0, 32.0]
        assert model(torch.rand(1, 3, 640, 640))[0].shape[1] == 3 * (80 * 80 + 40 * 40 + 20 * 20)
        y, raw = model(x)
        assert [tuple(r.shape[1:4]) for r in raw] == [(3, 40, 40), (3, 20, 20), (3, 10, 10)]
        boxes, scores = prepare_for_export(model)(x)
        ref_boxes, ref_scores = to_export_layout(y)
        assert boxes.shape == (1, y.shape[1], 4) and scores.shape == (1, y.shape[1], model.nc)
        torch.testing.assert_close(boxes, ref_boxes, atol=1e-4, rtol=1e-5)
        torch.testing.assert_close(scores, ref_scores, atol=1e-4, rtol=1e-5)


def test_train_forward_returns_raw_levels():
    model = build_model("GSConv-yolov5n", nc=3).train()
    out = model(torch.rand(2, 3, 64, 96))
    assert [tuple(t.shape) for t in out] == [(2, 3, 8, 12, 8), (2, 3, 4, 6, 8), (2, 3, 2, 3, 8)]


def test_depth_uses_bankers_rounding_and_widths_make_divisible():
    cfg = load_yaml("yolov5n")
    cfg["depth_multiple"], cfg["width_multiple"] = 0.5, 0.3
    model = build_model(cfg)
    # C3 repeats: 3*0.5 = 1.5 -> 2, 6*0.5 = 3, 9*0.5 = 4.5 -> 4 (round half to even); n=1 modules untouched
    assert [len(model.model[i].m) for i in (2, 4, 6, 8)] == [2, 3, 4, 2]
    # widths: ceil(64*0.3 / 8) * 8 = 24, ceil(128*0.3 / 8) * 8 = 40
    assert model.model[0].conv.out_channels == 24 and model.model[1].conv.out_channels == 40


def test_non_repeat_module_stacks_copies_in_sequential():
    cfg = load_yaml("yolov5n")
    cfg["backbone"][1] = [-1, 3, "Conv", [128, 3, 2]]  # n=3 -> round(0.99) = 1: a plain module
    cfg["backbone"][2] = [-1, 9, "Conv", [128, 3, 1]]  # n=9 -> 3 copies in a Sequential
    model = build_model(cfg)
    assert not isinstance(model.model[1], nn.Sequential)
    assert isinstance(model.model[2], nn.Sequential) and len(model.model[2]) == 3
    assert "model.2.0.conv.weight" in model.state_dict()


def test_activation_is_per_model_not_global():
    gs = build_model("GSConv-yolov5n")
    plain = build_model("yolov5n")
    assert isinstance(gs.model[0].act, nn.Mish) and isinstance(gs.model[10].cv2.act, nn.Mish)
    assert isinstance(plain.model[0].act, nn.SiLU)
    cfg = load_yaml("yolov5n")
    cfg["activation"] = "nn.LeakyReLU(0.1)"
    leaky = build_model(cfg)
    assert isinstance(leaky.model[2].m[0].cv1.act, nn.LeakyReLU) and leaky.model[2].m[0].cv1.act.negative_slope == 0.1
    assert isinstance(build_model("yolov5n").model[0].act, nn.SiLU)


def test_unknown_module_is_named_with_the_known_ones():
    cfg = load_yaml("yolov5n")
    cfg["head"][0] = [-1, 1, "Attention1", [512]]
    with pytest.raises(ConfigError, match=r"unknown module 'Attention1'.*known modules: .*C3.*GSConv"):
        build_model(cfg)


def test_bad_from_index_names_the_layer():
    cfg = load_yaml("yolov5n")
    cfg["head"][-1] = [[17, 20, 26], 1, "Detect", ["nc", "anchors"]]
    with pytest.raises(ConfigError, match=r"layer 24 \(Detect\): 'from' index 26"):
        build_model(cfg)


def test_bad_activation_and_missing_config():
    cfg = load_yaml("yolov5n")
    cfg["activation"] = "__import__('os').system('true')"
    with pytest.raises(ConfigError, match="unsupported activation"):
        build_model(cfg)
    with pytest.raises(ConfigError, match="bundled configs: .*yolov5n"):
        build_model("yolov5-nonexistent")


def test_anchors_in_grid_units_and_nc_override():
    model = build_model("yolov5n", nc=5)
    det = model.model[-1]
    assert isinstance(det, Detect) and det.nc == 5 and det.no == 10
    assert det.m[0].bias.shape == (30,)
    torch.testing.assert_close(det.anchors[0, 0] * 8, torch.tensor([10.0, 13.0]))
    torch.testing.assert_close(det.anchors[2, 2] * 32, torch.tensor([373.0, 326.0]))


@pytest.mark.parametrize("variant, expected", [("evenodd", [0, 2, 4, 6, 1, 3, 5, 7]),
                                               ("interleave", [0, 4, 1, 5, 2, 6, 3, 7])])
def test_gsconv_shuffles_are_the_published_permutations(variant, expected):
    assert shuffle_permutation(8, variant) == expected
    m = GSConv(4, 8, shuffle=variant).eval()
    x = torch.rand(3, 4, 5, 6)
    with torch.no_grad():
        x1 = m.cv1(x)
        plain = torch.cat((x1, m.cv2(x1)), 1)
        torch.testing.assert_close(m(x), plain[:, expected])
        m.use_static_permutation()
        torch.testing.assert_close(m(x), plain[:, expected])
        m.use_channels_last_shuffle()
        assert torch.equal(m(x), plain[:, expected])


def test_gsconvns_honours_kernel_stride_and_act():
    from lite_deploy.models.gsconv import GSConvns

    m = GSConvns(8, 16, 3, 2, act=False).eval()
    assert m.cv1.conv.kernel_size == (3, 3) and m.cv1.conv.stride == (2, 2) and isinstance(m.cv1.act, nn.Identity)
    assert sum(p.numel() for p in m.parameters()) == sum(p.numel() for p in GSConv(8, 16, 3, 2).parameters()) + 16 * 16
    with torch.no_grad():
        y = m(torch.randn(2, 8, 16, 12))
    assert y.shape == (2, 16, 8, 6) and bool((y >= 0).all())


def test_vovgscsp_keeps_the_forks_quirks():
    model = build_model("slimneck-yolov5n")
    keys = model.state_dict().keys()
    assert "model.13.res.conv.weight" in keys  # built but never called
    assert "model.13.gsb.0.conv_lighting.0.cv1.conv.weight" in keys  # Sequential of GSBottlenecks
    snc = build_model("SNc-yolov5s").state_dict()
    assert snc["model.13.gsb.shortcut.conv.weight"].shape == (128, 1, 1, 1)  # 1x1 depth-wise shortcut, no index
    assert snc["model.13.gsb.conv_lighting.0.cv1.conv.weight"].shape[0] == 32  # inner width int(c_*0.5) // 2
