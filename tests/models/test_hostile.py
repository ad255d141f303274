"""A hostile corpus: weights files and model yamls made to run code, exhaust memory or time, or confuse the loader.

Each file must be refused with one sentence (a LiteDeployError) before it runs anything or allocates more than the
model it describes; a real mid-training YOLOv5 checkpoint must load. The plain pickle RCE payloads of
test_checkpoint.py (``os.system`` via ``__reduce__``, ``subprocess.getoutput`` smuggled into a real file) are not
repeated here.
"""

from __future__ import annotations

import contextlib
import copy
import io
import pickle
import resource
import struct
import sys
import time
import types
import warnings
import zipfile
from pathlib import Path
from typing import Iterator, Tuple

import numpy as np
import pytest
import torch

from lite_deploy.cli import main
from lite_deploy.errors import CheckpointError, ConfigError, LiteDeployError, UnsafeCheckpointError
from lite_deploy.models import build_model, load_model, load_yaml
from lite_deploy.models.checkpoint import MAX_TENSOR_ELEMENTS, read_checkpoint, save_checkpoint

torch.set_num_threads(1)


@contextlib.contextmanager
def memory_budget(extra_bytes: int) -> Iterator[None]:
    """Cap this process's address space at its current size plus ``extra_bytes`` (an allocation beyond fails)."""
    with open("/proc/self/status") as f:
        vm = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize:"))
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    resource.setrlimit(resource.RLIMIT_AS, (vm + extra_bytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


@contextlib.contextmanager
def time_budget(seconds: float) -> Iterator[None]:
    start = time.perf_counter()
    yield
    assert time.perf_counter() - start < seconds, f"took longer than {seconds} s"


def one_sentence(exc: BaseException) -> str:
    text = str(exc)
    assert "\n" not in text and "Traceback" not in text and len(text) < 600
    return text


# ==============================================================================================================
# 1. TorchScript archive whose __setstate__ writes a file


class MarkerWriter(torch.nn.Module):
    """Scripted module whose ``__setstate__`` (run by torch.jit.load) writes b'pwned\\n' to ``path``."""

    def __init__(self, path: str):
        super().__init__()
        self.path = path
        self.n = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    @torch.jit.export
    def __getstate__(self) -> Tuple[str, bool]:
        return (self.path, self.training)

    @torch.jit.export
    def __setstate__(self, state: Tuple[str, bool]) -> None:
        self.path = state[0]
        self.training = state[1]
        t = torch.from_file(state[0], shared=True, size=6, dtype=torch.uint8)
        t.copy_(torch.tensor([112, 119, 110, 101, 100, 10], dtype=torch.uint8))
        self.n = int(t[0])  # keeps the write alive through TorchScript's dead-code elimination


def _script(marker: Path, dest: Path) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.script(MarkerWriter(str(marker))), str(dest))
    return dest


@pytest.fixture(scope="module")
def torchscript(tmp_path_factory) -> Tuple[Path, Path]:
    """(archive, marker): the archive writes the marker when torch.jit.load reads it."""
    root = tmp_path_factory.mktemp("torchscript")
    # the payload is live: torch.jit.load of a twin archive writes its marker
    control = root / "control-marker"
    torch.jit.load(str(_script(control, root / "control.pt")))
    assert control.read_bytes() == b"pwned\n"
    marker = root / "marker"
    archive = _script(marker, root / "scripted.pt")
    assert not marker.exists()
    return archive, marker


@pytest.fixture(scope="module")
def shapes_data(tmp_path_factory) -> Path:
    from lite_deploy.data.shapes import generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("shapes"), train=2, val=2, seed=0, imgsz=64, progress=False)


@pytest.fixture(scope="module")
def shapes_cls(tmp_path_factory) -> Path:
    from lite_deploy.data.shapes_cls import generate_shapes_cls

    return generate_shapes_cls(tmp_path_factory.mktemp("shapes_cls"), train=6, val=6, imgsz=32, progress=False)


def _python_entry_points(path: Path, tmp: Path):
    import lite_deploy
    from lite_deploy.export.exporter import export
    from lite_deploy.export.torch_runtime import TorchRuntime
    from lite_deploy.models.backbones import build_classifier, load_torchvision_backbone
    from lite_deploy.models.backbones.torchvision_weights import read_state_dict
    from lite_deploy.runtime import load_runtime
    from lite_deploy.train.classify import load_start_weights

    classifier = build_classifier("squeezenet1_1", num_classes=3)
    return {
        "lite_deploy.load_model": lambda: lite_deploy.load_model(path),
        "models.load_model": lambda: load_model(path),
        "read_checkpoint": lambda: read_checkpoint(path),
        "TorchRuntime": lambda: TorchRuntime(path),
        "load_runtime(.pt)": lambda: load_runtime(path),
        "export": lambda: export(path, "onnx", out=tmp / "out"),
        "read_state_dict": lambda: read_state_dict(path),
        "load_torchvision_backbone": lambda: load_torchvision_backbone(classifier, path),
        "load_start_weights": lambda: load_start_weights(classifier, str(path)),
    }


def test_torchscript_archive_is_refused_by_every_python_entry_point(torchscript, tmp_path):
    archive, marker = torchscript
    for name, call in _python_entry_points(archive, tmp_path).items():
        with pytest.raises(UnsafeCheckpointError, match="TorchScript archive") as info:
            call()
        one_sentence(info.value)
        assert not marker.exists(), f"{name} ran the archive's code"


def test_torchscript_archive_is_refused_by_every_command(torchscript, shapes_data, shapes_cls, tmp_path, capsys):
    archive, marker = torchscript
    image = next((shapes_data.parent / "images" / "val").iterdir())
    commands = {
        "info": ["info", str(archive)],
        "export": ["export", str(archive), "--target", "onnx", "--imgsz", "64", "--out", str(tmp_path / "exp")],
        "predict": ["predict", str(archive), "--source", str(image), "--imgsz", "64"],
        "val": ["val", str(archive), "--data", str(shapes_data), "--imgsz", "64"],
        "profile": ["profile", str(archive), "--imgsz", "64", "--runs", "1"],
        "predict a folder": ["predict", str(archive), "--source", str(image.parent), "--imgsz", "64"],
        "benchmark": ["benchmark", str(archive), "--data", str(shapes_data), "--imgsz", "64",
                      "--out", str(tmp_path / "bench")],
        "train --weights": ["train", "--data", str(shapes_data), "--weights", str(archive), "--epochs", "1",
                            "--imgsz", "64", "--project", str(tmp_path / "runs")],
        "train --resume": ["train", "--resume", str(archive)],
        "train --task classify --weights": ["train", "--task", "classify", "--data", str(shapes_cls),
                                            "--weights", str(archive), "--epochs", "1", "--imgsz", "32",
                                            "--project", str(tmp_path / "runs")],
    }
    for name, argv in commands.items():
        assert main(argv) == 2, name
        err = capsys.readouterr().err.strip().splitlines()
        assert err and err[-1].startswith("error: ") and "TorchScript archive" in err[-1], (name, err)
        assert not marker.exists(), f"{name} ran the archive's code"


def test_torch_zip_reader_is_asked_too(torchscript, monkeypatch):
    # second line of defence: were Python's zipfile fooled into a plain layout, torch's own reader (whose view
    # decides the dispatch to torch.jit.load) is asked before torch.load
    import lite_deploy.models.checkpoint as checkpoint

    archive, marker = torchscript
    monkeypatch.setattr(checkpoint, "check_weights_file", lambda path: None)
    with pytest.raises(UnsafeCheckpointError, match="torch's zip reader finds other entries"):
        load_model(archive)
    assert not marker.exists()


def _zip_with(src: Path, dst: Path, extra: dict, drop: Tuple[str, ...] = ()) -> Path:
    """Copy the torch.save zip ``src`` to ``dst``, adding entries (relative to its top folder) and dropping some."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        top = zin.namelist()[0].split("/")[0]
        for info in zin.infolist():
            if info.filename.split("/", 1)[1] not in drop:
                zout.writestr(info.filename, zin.read(info.filename))
        for name, data in extra.items():
            zout.writestr(f"{top}/{name}", data)
    return dst


@pytest.mark.parametrize("extra, drop, message", [
    ({"constants.pkl": b"\x80\x02}q\x00."}, (), "TorchScript archive"),
    ({"code/__torch__.py": b"def f(): pass\n"}, (), "TorchScript archive"),
    ({".data/version": b"3\n", "model.json": b"{}"}, (), "TorchScript archive"),
    ({"extra.pkl": b"\x80\x02}q\x00."}, (), "not a plain torch.save checkpoint"),
    ({"data/0/../../x": b"1"}, (), "not a plain torch.save checkpoint"),
    ({}, ("data.pkl",), "not exactly one data.pkl"),
], ids=["constants.pkl", "code/", "legacy-model.json", "extra-pickle", "odd-entry", "no-data.pkl"])
def test_other_zip_layouts_are_refused_before_torch(tmp_path, extra, drop, message, monkeypatch):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(3)}, plain)
    odd = _zip_with(plain, tmp_path / "odd.pt", extra, drop)
    monkeypatch.setattr(torch, "load", lambda *a, **k: pytest.fail("torch.load was reached"))
    with pytest.raises(UnsafeCheckpointError, match=message) as info:
        load_model(odd)
    one_sentence(info.value)


def test_compressed_zip_entries_are_refused(tmp_path):
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(1000)}, plain)
    packed = tmp_path / "packed.pt"
    with zipfile.ZipFile(plain) as zin, zipfile.ZipFile(packed, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    with pytest.raises(UnsafeCheckpointError, match="compressed"):
        load_model(packed)


# ==============================================================================================================
# 2. resource bombs: tensors, storages, yamls


@pytest.fixture(scope="module")
def own_checkpoint(tmp_path_factory) -> Tuple[dict, Path]:
    """(raw dict, path) of a small own-format checkpoint."""
    model = build_model("yolov5n", nc=2).eval()
    path = save_checkpoint(model, tmp_path_factory.mktemp("own") / "m.pt", imgsz=64)
    return torch.load(path, weights_only=True), path


def _resave(raw: dict, path: Path, **changes) -> Path:
    data = {**raw, **changes}
    torch.save(data, path)
    return path


def test_stride0_tensor_beyond_the_bound_is_refused_before_allocation(own_checkpoint, tmp_path):
    raw, _ = own_checkpoint
    state = dict(raw["state_dict"])
    # 25e9 FP16 elements on a 2-byte storage: casting it to float32 would allocate 100 GB
    state["model.0.conv.weight"] = torch.zeros(1, dtype=torch.float16).expand(25_000_000_000)
    path = _resave(raw, tmp_path / "bomb.pt", state_dict=state)
    assert path.stat().st_size < 10_000_000
    with memory_budget(1 << 30), time_budget(10):
        with pytest.raises(CheckpointError, match=r"25,000,000,000 elements, the limit is") as info:
            load_model(path)
    one_sentence(info.value)


def test_many_stride0_tensors_under_the_bound_are_refused_before_casting(own_checkpoint, tmp_path):
    raw, _ = own_checkpoint
    state = dict(raw["state_dict"])
    keys = [k for k in state if k.endswith("conv.weight")][:8]
    bomb = torch.zeros(1, dtype=torch.float16).expand(MAX_TENSOR_ELEMENTS)  # 1 GiB each once cast to float32
    state.update({k: bomb for k in keys})
    path = _resave(raw, tmp_path / "bombs.pt", state_dict=state)
    with memory_budget(1 << 30), time_budget(10):
        with pytest.raises(CheckpointError, match=r"weights do not fit the rebuilt model \(8 problems: "
                                                  r"model\.0\.conv\.weight: file \(268435456,\) vs model"):
            load_model(path)


def test_legacy_format_storage_bomb_is_refused(tmp_path):
    # legacy (pre-1.6) files allocate each storage at the size its pickle declares before reading it (zip files
    # are checked by torch against the record size)
    path = tmp_path / "legacy.pt"
    torch.save({"model": torch.zeros(70_000)}, path, _use_new_zipfile_serialization=False)
    data = path.read_bytes()
    old = b"J" + struct.pack("<i", 70_000)
    assert old in data
    bomb = tmp_path / "legacy-bomb.pt"
    bomb.write_bytes(data.replace(old, b"J" + struct.pack("<i", 2**31 - 1)))
    with memory_budget(1 << 30), time_budget(10):
        with pytest.raises(CheckpointError, match="more than the file's .* bytes hold"):
            read_checkpoint(bomb)


def _yolov5n(**changes) -> dict:
    cfg = load_yaml("yolov5n")
    cfg.update(changes)
    return cfg


def _with_layer(index: int, row: list) -> dict:
    cfg = _yolov5n()
    cfg["backbone"][index] = row
    return cfg


YAML_BOMBS = {
    "width_multiple-24": (_yolov5n(width_multiple=24), r"'width_multiple' must be a number in \(0, 4\]"),
    "depth_multiple-20000": (_yolov5n(depth_multiple=20000), r"'depth_multiple' must be a number in \(0, 4\]"),
    "channels-1e6": (_with_layer(1, [-1, 1, "Conv", [1_000_000, 3, 2]]), r"layer 1 \(Conv\) would have 250000 output"),
    "repeats-5000": (_with_layer(2, [-1, 5000, "C3", [128]]), r"layer 2 \(C3\) repeats 1650 times"),
    "params-at-width-4": (_yolov5n(width_multiple=4.0, depth_multiple=1.0), r"builds more than 300,000,000 param"),
    "nc-str": (_yolov5n(nc="2"), r"'nc' must be a whole number of classes in 1\.\.100000, got '2'"),
    "nc-0": (_yolov5n(nc=0), r"'nc' must be .* got 0"),
    "nc-bool": (_yolov5n(nc=True), r"'nc' must be .* got True"),
    "nc-huge": (_yolov5n(nc=10**9), r"'nc' must be .* got 1000000000"),
    "ch-0": (_yolov5n(ch=0), r"'ch' \(input channels\) must be a whole number in 1\.\.64, got 0"),
    "ch-str": (_yolov5n(ch="3"), r"'ch' .* got '3'"),
    "depth-str": (_yolov5n(depth_multiple="x"), r"'depth_multiple' must be a number"),
    "width-negative": (_yolov5n(width_multiple=-1), r"'width_multiple' must be a number"),
    "width-nan": (_yolov5n(width_multiple=float("nan")), r"'width_multiple' must be a number"),
    "anchors-odd": (_yolov5n(anchors=[[10, 13, 16], [30, 61, 62], [116, 90, 156]]), r"'anchors' level 0 has 3 numbers"),
    "anchors-ragged": (_yolov5n(anchors=[[10, 13, 16, 30], [30, 61], [116, 90]]), r"'anchors' level 1 has 2 numbers"),
    "anchors-negative": (_yolov5n(anchors=[[10, -13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119],
                                           [116, 90, 156, 198, 373, 326]]), r"'anchors' level 0 .* must be pixels"),
    "anchors-flat": (_yolov5n(anchors=[10, 13, 16, 30, 33, 23]), r"'anchors' must be a number of anchors per level"),
    "anchors-str": (_yolov5n(anchors="abc"), r"'anchors' must be a number of anchors per level"),
    "anchors-two-levels-for-three": (_yolov5n(anchors=[[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119]]),
                                     r"2 anchor levels for 3 inputs"),
    "number-str": (_with_layer(2, [-1, "3", "C3", [128]]), r"layer 2 \(C3\): 'number' must be a whole number"),
    "channels-str": (_with_layer(1, [-1, 1, "Conv", ["many", 3, 2]]), r"layer 1 \(Conv\): output channels must be"),
    "args-not-list": (_with_layer(1, [-1, 1, "Conv", 128]), r"layer 1 \(Conv\): args must be a list"),
    "backbone-int": (_yolov5n(backbone=5), r"needs a 'backbone' list"),
}


@pytest.mark.parametrize("name", list(YAML_BOMBS))
def test_yaml_bombs_and_bad_types_get_one_sentence(name):
    cfg, message = YAML_BOMBS[name]
    with memory_budget(1 << 30), time_budget(5):
        with pytest.raises(ConfigError, match=message) as info:
            build_model(copy.deepcopy(cfg))
    one_sentence(info.value)


def test_yaml_bomb_through_the_command_line(tmp_path, capsys):
    import yaml

    path = tmp_path / "bomb.yaml"
    path.write_text(yaml.safe_dump(YAML_BOMBS["depth_multiple-20000"][0]))
    with memory_budget(1 << 30), time_budget(5):
        assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model yaml 'depth_multiple' must be a number in (0, 4]")


@pytest.mark.parametrize("name", ["width_multiple-24", "nc-str", "anchors-negative"])
def test_yaml_bombs_inside_a_checkpoint_are_refused(own_checkpoint, tmp_path, name):
    raw, _ = own_checkpoint
    cfg, message = YAML_BOMBS[name]
    path = _resave(raw, tmp_path / "m.pt", yaml=cfg)
    with memory_budget(1 << 30), time_budget(5):
        with pytest.raises(CheckpointError, match="cannot rebuild its model from the stored yaml: .*" + message):
            load_model(path)


def test_checkpoint_names_as_list_or_dict_and_bad_names(own_checkpoint, tmp_path):
    raw, _ = own_checkpoint
    assert load_model(_resave(raw, tmp_path / "list.pt", names=["cat", "dog"])).names == {0: "cat", 1: "dog"}
    assert load_model(_resave(raw, tmp_path / "dict.pt", names={"0": "cat", "1": "dog"})).names[1] == "dog"
    with pytest.raises(CheckpointError, match="'names' must be a list of class names or an {id: name} dict"):
        load_model(_resave(raw, tmp_path / "bad.pt", names="cat,dog"))
    with pytest.raises(CheckpointError, match="its state_dict is a list"):
        load_model(_resave(raw, tmp_path / "state.pt", state_dict=[1, 2]))


def test_classifier_options_bombs_are_refused(tmp_path):
    from lite_deploy.models.backbones import build_classifier

    model = build_classifier("mobilenetv2", num_classes=3)
    path = save_checkpoint(model, tmp_path / "cls.pt", imgsz=64)
    raw = torch.load(path, weights_only=True)
    # 10**9 classes (a 1280 x 1e9 head) for 3 names; a width multiplier of 40 (about 3.6e9 parameters)
    many = _resave(raw, tmp_path / "many.pt", classifier={**raw["classifier"], "num_classes": 10**9})
    wide = _resave(raw, tmp_path / "wide.pt", classifier={**raw["classifier"], "width_mult": 40.0})
    with memory_budget(1 << 30), time_budget(10):
        with pytest.raises(CheckpointError, match="num_classes 1000000000 but 3 class names"):
            load_model(many)
        with pytest.raises(CheckpointError, match="build .* parameters, more than the limit of 300,000,000"):
            load_model(wide)


# ==============================================================================================================
# 3. a real mid-training YOLOv5 v7.0 checkpoint (last.pt before strip_optimizer)


def _yolov5_module_stand_ins() -> dict:
    """Throwaway ``models.yolo`` / ``models.common`` modules whose classes unpickle YOLOv5's (plain nn.Modules)."""
    modules = {}
    for name, classes in {"models": (), "models.yolo": ("DetectionModel", "Detect"),
                          "models.common": ("Conv", "C3", "Bottleneck", "SPPF", "Concat")}.items():
        mod = types.ModuleType(name)
        for cls in classes:
            setattr(mod, cls, type(cls, (torch.nn.Module,), {"__module__": name}))
        modules[name] = mod
    return modules


def _resaved_yolov5(src: Path, dst: Path, make_checkpoint) -> Path:
    """Unpickle the YOLOv5 checkpoint ``src`` with YOLOv5's module paths, then save ``make_checkpoint(its dict)``."""
    saved = {k: sys.modules.get(k) for k in ("models", "models.yolo", "models.common")}
    sys.modules.update(_yolov5_module_stand_ins())
    try:
        ckpt = make_checkpoint(torch.load(src, map_location="cpu", weights_only=False))  # trusted fixture
        buffer = io.BytesIO()
        torch.save(ckpt, buffer)
    finally:
        for k, v in saved.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v
    dst.write_bytes(buffer.getvalue())
    return dst


def _mid_training(src: Path, dst: Path, best_fitness) -> Path:
    """``src`` (a stripped YOLOv5 checkpoint) as train.py saves ``last.pt`` during training."""

    def last_pt(stripped: dict) -> dict:
        ema = stripped["model"]
        model = copy.deepcopy(ema).float()  # the raw training model differs from its average
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.937, nesterov=True)
        for p in model.parameters():
            p.grad = torch.full_like(p, 1e-3)
        optimizer.step()
        return {
            "epoch": 7,
            "best_fitness": best_fitness,
            "model": model.half(),
            "ema": ema,
            "updates": 1234,
            "optimizer": optimizer.state_dict(),
            "opt": {"weights": "yolov5n.pt", "epochs": 300, "save_dir": Path("runs/train/exp"),
                    "hyp": {"lr0": 0.01, "momentum": 0.937}},
            "git": {"remote": "https://github.com/ultralytics/yolov5", "branch": "master", "commit": "915bbf2"},
            "date": "2022-11-22T12:00:00",
        }

    return _resaved_yolov5(src, dst, last_pt)


def _renamed_numpy_core(path: Path) -> None:
    """numpy 1.x writes ``numpy.core.multiarray``; numpy 2 ``numpy._core.multiarray`` (GLOBAL is newline-ended)."""
    with zipfile.ZipFile(path) as zin:
        entries = {i.filename: zin.read(i.filename) for i in zin.infolist()}
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zout:
        for name, data in entries.items():
            if name.endswith("data.pkl"):
                assert b"numpy._core.multiarray\n" in data
                data = data.replace(b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
            zout.writestr(name, data)


@pytest.mark.parametrize("best_fitness, numpy1", [
    (np.float64(0.4375), False), (np.float64(0.4375), True), (np.array([0.4375]), False), (np.array([0.4375]), True),
], ids=["scalar-numpy2", "scalar-numpy1", "array-numpy2", "array-numpy1"])
def test_mid_training_yolov5_checkpoint_loads_and_matches_the_stripped_one(yolov5_fixtures, tmp_path, best_fitness,
                                                                           numpy1):
    src = yolov5_fixtures / "yolov5n-v7-nc80.pt"
    last = _mid_training(src, tmp_path / "last.pt", best_fitness)
    if numpy1:
        _renamed_numpy_core(last)
    raw = read_checkpoint(last)
    assert raw["best_fitness"] == best_fitness and raw["optimizer"]["state"][0]["momentum_buffer"].numel() > 0
    stripped, mid = load_model(src), load_model(last)
    x = torch.from_numpy(np.load(yolov5_fixtures / "yolov5n-v7-nc80.ref.npz")["x"])
    with torch.no_grad():
        assert torch.equal(mid(x)[0], stripped(x)[0])
    assert mid.names == stripped.names


def _cyclic(stripped: dict) -> dict:
    stripped["model"].model[0]._modules["loop"] = stripped["model"]  # the model is its own grandchild
    return stripped


def _text_weight(stripped: dict) -> dict:
    stripped["model"].model[0].conv._parameters["weight"] = "not a tensor"
    return stripped


def _list_of_modules(stripped: dict) -> dict:
    stripped["model"].model[0].__dict__["_modules"] = ["not", "a", "dict"]
    return stripped


@pytest.mark.parametrize("mutate, message", [
    (_cyclic, "module tree is cyclic or implausibly large"),
    (_text_weight, r"model\.0\.conv\.weight: file str vs model \(16, 3, 6, 6\)"),
    (_list_of_modules, "weights do not fit the rebuilt model"),
], ids=["cyclic-module-tree", "parameter-not-a-tensor", "modules-not-a-dict"])
def test_malformed_yolov5_module_trees_get_one_sentence(yolov5_fixtures, tmp_path, mutate, message):
    path = _resaved_yolov5(yolov5_fixtures / "yolov5n-v7-nc80.pt", tmp_path / "odd.pt", mutate)
    with time_budget(10), pytest.raises(CheckpointError, match=message) as info:
        load_model(path)
    one_sentence(info.value)


# ==============================================================================================================
# pickle payloads that the allowlist must refuse (besides test_checkpoint.py's os.system / subprocess.getoutput)


class _Reduce:
    def __init__(self, fn, *args):
        self.fn, self.args = fn, args

    def __reduce__(self):
        return self.fn, self.args


def _object_flagged_dtype():
    dtype = np.dtype("f8", False, True)
    dtype.__setstate__((3, "<", None, None, None, -1, -1, 63))  # NPY_ITEM_HASOBJECT and friends
    return dtype


def _payloads(marker: Path) -> dict:
    import builtins

    import numpy._core.multiarray as multiarray

    touch = f"open({str(marker)!r}, 'w').write('pwned')"
    return {
        "builtins.eval": _Reduce(builtins.eval, touch),
        "builtins.exec": _Reduce(builtins.exec, touch),
        "builtins.getattr": _Reduce(builtins.getattr, _Reduce(builtins.__import__, "os"), "system"),
        "builtins.__import__": _Reduce(builtins.__import__, "os"),
        "builtins.open": _Reduce(builtins.open, str(marker), "w"),
        "torch.load": _Reduce(torch.load, str(marker)),
        "torch.jit.load": _Reduce(torch.jit.load, str(marker)),
        "numpy.load": _Reduce(np.load, str(marker)),
        "pickle.loads": _Reduce(pickle.loads, b"cos\nsystem\n(S'true'\ntR."),
        "copyreg._reconstructor": _Reduce(__import__("copyreg")._reconstructor, object, object, None),
        "functools.partial": _Reduce(__import__("functools").partial, print),
        "_codecs.encode-rot13": _Reduce(__import__("_codecs").encode, "abc", "rot13"),
        "numpy.ndarray-call-1e12": _Reduce(np.ndarray, (10**12,)),
        "numpy.dtype-object": np.dtype("O"),
        "numpy.dtypes.ObjectDType": _Reduce(np.dtypes.ObjectDType),
        "numpy-object-array": np.array([1, "x"], dtype=object),
        "numpy-scalar-object-flags": _Reduce(multiarray.scalar, _object_flagged_dtype(), b"A" * 8),
        "numpy-_reconstruct-other-class": _Reduce(multiarray._reconstruct, torch.Size, (0,), b"b"),
        "numpy-_reconstruct-1e12": _Reduce(multiarray._reconstruct, np.ndarray, (10**12,), b"b"),
    }


def test_pickle_payload_corpus_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    outcomes = {}
    for name, payload in _payloads(marker).items():
        path = tmp_path / f"{name}.pt"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.save({"model": payload, "epoch": -1}, path)
        with pytest.raises(LiteDeployError) as info:
            load_model(path)
        outcomes[name] = type(info.value).__name__
        one_sentence(info.value)
        assert not marker.exists(), name
    # the globals are refused as unsafe; payloads of allowed globals with hostile values as corrupt / unsafe
    layout = {"numpy-scalar-object-flags", "numpy-_reconstruct-other-class", "numpy-_reconstruct-1e12",
              "_codecs.encode-rot13", "numpy.ndarray-call-1e12"}
    assert {n for n, kind in outcomes.items() if kind == "UnsafeCheckpointError"} | layout == set(outcomes), outcomes
