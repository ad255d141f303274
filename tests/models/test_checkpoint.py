"""Checkpoints: real YOLOv5 / slim-neck pickles, the allowlist, this project's own format."""

from __future__ import annotations

import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from lite_deploy.errors import CheckpointError, UnsafeCheckpointError
from lite_deploy.models import build_model, load_model
from lite_deploy.models.checkpoint import FORMAT, save_checkpoint

torch.set_num_threads(1)

FIXTURES = ["yolov5n-v7-nc80", "GSConv-yolov5n-gs-nc4"]


@pytest.mark.parametrize("name", FIXTURES)
def test_real_checkpoints_reproduce_reference_outputs(yolov5_fixtures, name):
    ref = np.load(yolov5_fixtures / f"{name}.ref.npz")
    model = load_model(yolov5_fixtures / f"{name}.pt")
    assert not model.training and next(model.parameters()).dtype == torch.float32
    assert sum(p.numel() for p in model.parameters()) == int(ref["nparams"])
    assert model.stride.tolist() == ref["stride"].tolist()
    with torch.no_grad():
        y = model(torch.from_numpy(ref["x"]))[0].numpy()
    assert y.shape == ref["y"].shape
    np.testing.assert_allclose(y, ref["y"], atol=1e-3, rtol=0)
    # anchors come from the checkpoint (randomly rescaled), not from the yaml
    det = model.model[-1]
    anchors_px = (det.anchors * det.stride.view(-1, 1, 1)).numpy()
    np.testing.assert_allclose(anchors_px, ref["anchors_px"], rtol=1e-3)
    assert isinstance(model.names, dict) and len(model.names) == model.nc


def test_slimneck_fork_checkpoint_gets_evenodd_mish(yolov5_fixtures):
    ref = np.load(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.ref.npz")
    model = load_model(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt")
    assert model.yaml["activation"] == "nn.Mish" and model.yaml["gsconv_shuffle"] == "evenodd"
    # the other shuffle loads the same weights without error but computes something else
    wrong = load_model(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt", shuffle="interleave")
    with torch.no_grad():
        y = wrong(torch.from_numpy(ref["x"]))[0].numpy()
    assert np.abs(y - ref["y"]).max() > 1e-2


def _rewrite_pickle(src, dst, old: bytes, new: bytes) -> None:
    """Copy a torch zip checkpoint, replacing bytes inside its data.pkl."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for info in zin.infolist():
            data = zin.read(info.filename)
            if info.filename.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(info.filename, data)


def test_gsconv_port_with_unknown_shuffle_needs_the_option(yolov5_fixtures, tmp_path):
    # the same checkpoint with SiLU instead of Mish: a GSConv port whose shuffle cannot be inferred
    port = tmp_path / "port.pt"
    _rewrite_pickle(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt", port, b"activation\nMish\n", b"activation\nSiLU\n")
    with pytest.raises(CheckpointError, match="shuffle='evenodd'.*shuffle='interleave'"):
        load_model(port)
    model = load_model(port, shuffle="interleave")
    assert model.yaml["activation"] == "nn.SiLU" and model.yaml["gsconv_shuffle"] == "interleave"


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_malicious_pickle_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "pwned"
    zipped = tmp_path / "evil.pt"
    torch.save({"model": _Payload(marker), "epoch": -1}, zipped)
    raw = tmp_path / "evil.pkl"
    raw.write_bytes(pickle.dumps(_Payload(marker), protocol=2))
    for path in (zipped, raw):
        with pytest.raises(UnsafeCheckpointError, match=r"'(posix|os|nt)\.system'"):
            load_model(path)
    assert not marker.exists()


def test_smuggled_builtins_are_refused(yolov5_fixtures, tmp_path):
    evil = tmp_path / "evil.pt"
    # same length: the fork's GSConv class path now names subprocess.getoutput
    _rewrite_pickle(yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt", evil, b"models.common\nGSConv\n",
                    b"subprocess\ngetoutput\n")
    with pytest.raises(UnsafeCheckpointError, match="'subprocess.getoutput'"):
        load_model(evil)


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_model(tmp_path / "nope.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"PK\x03\x04 definitely not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_model(bad)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(3)}, other)
    with pytest.raises(CheckpointError, match="neither a lite-deploy nor a YOLOv5"):
        load_model(other)


def test_own_format_round_trip(tmp_path):
    cfg = "slimneck-yolov5n"
    model = build_model(cfg, nc=3).eval()
    model.names = {0: "person", 1: "car", 2: "dog"}
    path = save_checkpoint(model, tmp_path / "m.pt", imgsz=320, provenance={"source": "unit test"})
    assert sorted(os.listdir(tmp_path)) == ["m.pt"]  # no temp file left behind
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["imgsz"] == [320, 320] and raw["names"][1] == "car"
    assert raw["stride"] == [8.0, 16.0, 32.0] and raw["anchors"][0][0] == pytest.approx([10.0, 13.0])
    loaded = load_model(path)
    assert loaded.names == model.names and loaded.yaml["gsconv_shuffle"] == "evenodd"
    x = torch.rand(1, 3, 96, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x)[0], model(x)[0])


def test_yolov5_checkpoint_resaved_in_own_format(yolov5_fixtures, tmp_path):
    src = yolov5_fixtures / "GSConv-yolov5n-gs-nc4.pt"
    model = load_model(src)
    path = save_checkpoint(model, tmp_path / "gs.pt", imgsz=[320, 256], provenance={"source": src.name})
    again = load_model(path)
    assert again.yaml["activation"] == "nn.Mish"
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(again(x)[0], model(x)[0])


def test_classifier_round_trip(tmp_path):
    from lite_deploy.models.backbones import build_classifier

    model = build_classifier("squeezenet1_1", num_classes=3, names=["a", "b", "c"]).eval()
    path = save_checkpoint(model, tmp_path / "cls.pt", imgsz=64)
    loaded = load_model(path)
    assert loaded.task == "classify" and loaded.names == {0: "a", 1: "b", 2: "c"}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x))
