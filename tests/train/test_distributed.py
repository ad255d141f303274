"""DDP training on CPU (gloo, two processes started with torch.multiprocessing), detectors and classifiers: shards,
equality with one process, rank-0-only files, resume; and the ``--device`` values."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from typing import Any, Dict, Optional

import pytest
import torch
import torch.multiprocessing as mp

from lite_deploy.data.image_folder import ImageFolder
from lite_deploy.data.shapes import generate_shapes
from lite_deploy.errors import CheckpointError, ConfigError
from lite_deploy.models import load_model
from lite_deploy.models.backbones import build_classifier
from lite_deploy.train.classify import ClassifyConfig, train_classifier
from lite_deploy.train.data import AugmentConfig
from lite_deploy.train.distributed import DistContext, parse_devices, resolve_device
from lite_deploy.train.trainer import TrainConfig, Trainer

NO_AUGMENT = AugmentConfig(hsv_h=0, hsv_s=0, hsv_v=0, translate=0, scale=0, fliplr=0, mosaic=0)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _join(rank: int, world: int, port: int, log_dir: str) -> Path:
    """Make this process rank ``rank`` of ``world`` as torchrun would, one thread, its sampler's indices of each
    epoch recorded; returns its log file (JSON lines)."""
    from torch.utils.data import DistributedSampler

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    log = Path(log_dir) / f"rank{rank}.jsonl"
    real_iter = DistributedSampler.__iter__

    def iterate(self):
        indices = list(real_iter(self))
        with log.open("a") as f:
            f.write(json.dumps({"epoch": self.epoch, "indices": indices}) + "\n")
        return iter(indices)

    DistributedSampler.__iter__ = iterate
    return log


def _rank_main(rank: int, world: int, port: int, config: Optional[Dict[str, Any]], resume: Optional[str],
               log_dir: str, crash_after_epoch: int) -> None:
    """One DDP process: records its sampler's indices and its checkpoint writes, then trains."""
    log = _join(rank, world, port, log_dir)
    real_save = Trainer._save

    def save(self, ema, model, optimizer, epoch, results, improved):
        with log.open("a") as f:
            f.write(json.dumps({"saved": epoch}) + "\n")
        real_save(self, ema, model, optimizer, epoch, results, improved)
        if epoch == crash_after_epoch:
            raise RuntimeError("stopped after the first epoch")

    Trainer._save = save
    trainer = Trainer.resume(resume, progress=False) if resume else Trainer(TrainConfig.from_dict(config),
                                                                           progress=False)
    trainer.run()


def _spawn(log_dir: Path, config: Optional[Dict[str, Any]] = None, resume: Optional[str] = None,
           crash_after_epoch: int = -1) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_rank_main, args=(2, _free_port(), config, resume, str(log_dir), crash_after_epoch), nprocs=2)


def _records(path: Path):
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def _parameters(checkpoint: str) -> Dict[str, torch.Tensor]:
    model = load_model(checkpoint)
    return {k: v.detach() for k, v in model.named_parameters()}


def test_ddp_two_processes_match_one_process_and_resume(tmp_path: Path) -> None:
    data = generate_shapes(tmp_path / "data", train=4, val=2, seed=3, imgsz=64, progress=False)
    common = dict(data=str(data), cfg="yolov5n", epochs=2, imgsz=64, workers=0, warmup_epochs=0, val_every=9,
                  val_batch=2, nominal_batch=2, augment=NO_AUGMENT, seed=1)
    ddp = TrainConfig(**common, batch=2, project=str(tmp_path / "ddp"), name="run").to_dict()
    _spawn(tmp_path / "log-ddp", ddp)

    # shards: disjoint, together the whole set, reshuffled each epoch
    shards = [[r for r in _records(tmp_path / "log-ddp" / f"rank{k}.jsonl") if "epoch" in r] for k in (0, 1)]
    assert [r["epoch"] for r in shards[0]] == [r["epoch"] for r in shards[1]] == [0, 1]
    for a, b in zip(*shards):
        assert not set(a["indices"]) & set(b["indices"]) and sorted(a["indices"] + b["indices"]) == [0, 1, 2, 3]
    assert shards[0][0]["indices"] + shards[1][0]["indices"] != shards[0][1]["indices"] + shards[1][1]["indices"]
    # rank 0 alone writes: one run folder, no checkpoint write from rank 1
    assert not [r for r in _records(tmp_path / "log-ddp" / "rank1.jsonl") if "saved" in r]
    assert [r["saved"] for r in _records(tmp_path / "log-ddp" / "rank0.jsonl") if "saved" in r] == [0, 1, 1]
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["run"]

    # one process, batch 1 accumulated to 2: the same global batches (each process's BatchNorm also sees one
    # image, so batch statistics agree; the running statistics are rank 0's under DDP, so only parameters compare)
    single = Trainer(TrainConfig(**common, batch=1, project=str(tmp_path / "one"), name="run"), progress=False)
    torch.set_num_threads(1)
    single.run()
    reference = _parameters(str(tmp_path / "one" / "run" / "weights" / "last.pt"))
    distributed = _parameters(str(tmp_path / "ddp" / "run" / "weights" / "last.pt"))
    start = _parameters_of_fresh_model(common)
    assert any(not torch.equal(reference[k], start[k]) for k in reference)  # it did train
    for key, value in reference.items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-4, atol=1e-5, msg=key)

    # stopped after epoch 1, resumed by both ranks from last.pt: the same end point
    stopped = TrainConfig(**common, batch=2, project=str(tmp_path / "stop"), name="run").to_dict()
    with pytest.raises(Exception, match="stopped after the first epoch"):
        _spawn(tmp_path / "log-stop", stopped, crash_after_epoch=0)
    assert (tmp_path / "stop" / "run" / "weights" / "last.state.pt").is_file()
    _spawn(tmp_path / "log-resume", resume=str(tmp_path / "stop" / "run"))
    resumed = [r for r in _records(tmp_path / "log-resume" / "rank1.jsonl") if "epoch" in r]
    assert [r["epoch"] for r in resumed] == [1]
    continued = _parameters(str(tmp_path / "stop" / "run" / "weights" / "last.pt"))
    for key, value in distributed.items():
        torch.testing.assert_close(continued[key], value, rtol=1e-5, atol=1e-6, msg=key)


def _parameters_of_fresh_model(common: Dict[str, Any]) -> Dict[str, torch.Tensor]:
    from lite_deploy.data.shapes import CLASSES

    torch.manual_seed(common["seed"])
    model = Trainer(TrainConfig(**common)).build_model(CLASSES)
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def _classify_rank(rank: int, world: int, port: int, config: Optional[Dict[str, Any]], resume: Optional[str],
                   log_dir: str, crash_after_epoch: int) -> None:
    """One DDP process of a classifier run, set up as :func:`_independent_images` says; records its sampler's
    indices and its checkpoint writes, and stops with an error once the state of ``crash_after_epoch`` is saved."""
    import lite_deploy.models.checkpoint as checkpoint
    import lite_deploy.train.classify as classify

    log = _join(rank, world, port, log_dir)
    real_save = checkpoint.save_checkpoint

    def save(model, path, **kwargs):
        with log.open("a") as f:
            f.write(json.dumps({"saved": Path(path).name}) + "\n")
        real_save(model, path, **kwargs)

    def write_state(path, state):
        real_write_state(path, state)
        if state["epoch"] == crash_after_epoch:
            raise RuntimeError("stopped after the first epoch")

    checkpoint.save_checkpoint, real_write_state, classify.write_state = save, classify.write_state, write_state
    with pytest.MonkeyPatch.context() as patch:
        _independent_images(patch)
        if resume:
            train_classifier(resume=resume, progress=False)
        else:
            train_classifier(ClassifyConfig(**config), progress=False)


def _spawn_classify(log_dir: Path, config: Optional[Dict[str, Any]] = None, resume: Optional[str] = None,
                    crash_after_epoch: int = -1) -> None:
    log_dir.mkdir(parents=True, exist_ok=True)
    mp.spawn(_classify_rank, args=(2, _free_port(), config, resume, str(log_dir), crash_after_epoch), nprocs=2)


def _independent_images(patch: pytest.MonkeyPatch) -> None:
    """Every module in eval mode (BatchNorm on its running statistics, no dropout) and no augmentation: each image's
    gradient is then the same whichever batch or process it is in, so a DDP step and one process's step on the same
    global batch must agree."""
    import lite_deploy.train.classify as classify

    real_train, real_dataset = torch.nn.Module.train, classify.ClassifyDataset
    patch.setattr(torch.nn.Module, "train", lambda self, mode=True: real_train(self, False))
    patch.setattr(classify, "ClassifyDataset",
                  lambda folder, imgsz, augment, **kwargs: real_dataset(folder, imgsz, False, **kwargs))


def test_classifier_ddp_two_processes_match_one_process_and_resume(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from lite_deploy.data.shapes_cls import generate_shapes_cls

    data = generate_shapes_cls(tmp_path / "data", train=6, val=6, seed=2, imgsz=48, progress=False)  # 1 train/class
    common = dict(data=str(data), cfg="mobilenetv2_x0_35", epochs=2, imgsz=32, workers=0, seed=1, lr0=0.05)
    ddp = dict(common, batch=2, project=str(tmp_path / "ddp"), name="run")
    _spawn_classify(tmp_path / "log", ddp)

    shards = [[r for r in _records(tmp_path / "log" / f"rank{k}.jsonl") if "epoch" in r] for k in (0, 1)]
    assert [r["epoch"] for r in shards[0]] == [r["epoch"] for r in shards[1]] == [0, 1]
    for a, b in zip(*shards):
        assert not set(a["indices"]) & set(b["indices"]) and sorted(a["indices"] + b["indices"]) == list(range(6))
    assert shards[0][0]["indices"] != shards[0][1]["indices"]  # reshuffled each epoch
    assert not [r for r in _records(tmp_path / "log" / "rank1.jsonl") if "saved" in r]
    assert [r["saved"] for r in _records(tmp_path / "log" / "rank0.jsonl") if "saved" in r][:2] == ["last.pt",
                                                                                                     "best.pt"]
    assert [p.name for p in (tmp_path / "ddp").iterdir()] == ["run"]
    assert len((tmp_path / "ddp" / "run" / "results.csv").read_text().splitlines()) == 3  # header + 2 epochs
    assert not (tmp_path / "ddp" / "run" / "weights" / "last.state.pt").exists()  # a finished run is not resumed

    _independent_images(monkeypatch)
    torch.set_num_threads(1)
    train_classifier(ClassifyConfig(**common, batch=2, project=str(tmp_path / "one"), name="run"), progress=False)
    reference = _parameters(str(tmp_path / "one" / "run" / "weights" / "last.pt"))
    distributed = _parameters(str(tmp_path / "ddp" / "run" / "weights" / "last.pt"))
    torch.manual_seed(1)  # the run's initialisation
    start = dict(build_classifier("mobilenetv2_x0_35", num_classes=6, names=ImageFolder(data, "train").names)
                 .named_parameters())
    assert any(not torch.equal(reference[k], start[k].detach()) for k in reference)  # it did train
    for key, value in reference.items():
        torch.testing.assert_close(distributed[key], value, rtol=1e-4, atol=1e-5, msg=key)

    # stopped after epoch 1, resumed by both ranks from the run folder: the same end point, one results.csv
    stopped = dict(common, batch=2, project=str(tmp_path / "stop"), name="run")
    with pytest.raises(Exception, match="stopped after the first epoch"):
        _spawn_classify(tmp_path / "log-stop", stopped, crash_after_epoch=0)
    with pytest.raises(CheckpointError, match="is the last.pt of a classify run: resume it with lite-deploy train "
                                              "--task classify --resume"):
        Trainer.resume(str(tmp_path / "stop" / "run"))
    _spawn_classify(tmp_path / "log-resume", resume=str(tmp_path / "stop" / "run"))
    assert [r["epoch"] for r in _records(tmp_path / "log-resume" / "rank1.jsonl") if "epoch" in r] == [1]
    continued = _parameters(str(tmp_path / "stop" / "run" / "weights" / "last.pt"))
    for key, value in distributed.items():
        torch.testing.assert_close(continued[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert [line.split(",")[0] for line in (tmp_path / "stop" / "run" / "results.csv").read_text().splitlines()] == [
        "epoch", "1", "2"]
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="--batch 3 is the global batch: make it a multiple of the 2 training"):
        train_classifier(ClassifyConfig(**dict(common, device="cpu"), batch=3), progress=False)


def test_device_values() -> None:
    assert parse_devices("cpu") is None and parse_devices("cuda:1") is None and parse_devices(None) is None
    assert parse_devices("0") == [0] and parse_devices("0,1,3") == [0, 1, 3]
    for bad in ("0,0", "gpu", "0,-1"):
        with pytest.raises(ConfigError, match="distinct GPU indices"):
            parse_devices(bad)
    assert resolve_device("cpu", DistContext()) == torch.device("cpu")
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="sees no CUDA GPU; use --device cpu"):
            resolve_device("0,1", DistContext(0, 0, 2))


def test_device_list_launches_torchrun_with_the_same_arguments(capsys: pytest.CaptureFixture, tmp_path) -> None:
    from lite_deploy.cli import build_parser, main
    from lite_deploy.commands.train import _argv
    from lite_deploy.data.shapes import generate_shapes
    from lite_deploy.data.shapes_cls import generate_shapes_cls

    args = build_parser().parse_args(["train", "--cfg", "yolov5n", "--data", "d.yaml", "--batch", "64", "--sync-bn",
                                      "--freeze", "backbone", "--device", "0,1", "--lr0", "0.02"])
    assert _argv(args) == ["--cfg", "yolov5n", "--data", "d.yaml", "--batch", "64", "--freeze", "backbone",
                           "--sync-bn", "--lr0", "0.02"]
    assert main(["train", "--cfg", "yolov5n", "--data", "d.yaml", "--device", "0,1"]) == 2  # data first: no process
    assert "d.yaml: dataset yaml not found" in capsys.readouterr().err
    if not torch.cuda.is_available():  # refused before any process starts
        data = generate_shapes(tmp_path / "shapes", train=1, val=1, imgsz=64)
        assert main(["train", "--cfg", "yolov5n", "--data", str(data), "--device", "0,1"]) == 2
        assert "sees no CUDA GPU; use --device cpu" in capsys.readouterr().err
    classify = ["train", "--task", "classify", "--cfg", "mobilenetv2_x0_35", "--device", "0,1"]
    assert _argv(build_parser().parse_args(classify + ["--data", "folder"])) == [
        "--task", "classify", "--cfg", "mobilenetv2_x0_35", "--data", "folder"]
    assert main(classify + ["--data", str(tmp_path / "folder")]) == 2  # the dataset first: no process
    assert "no train/ folder" in capsys.readouterr().err
    if not torch.cuda.is_available():
        folder = generate_shapes_cls(tmp_path / "cls", train=6, val=6, imgsz=48, progress=False)
        assert main(classify + ["--data", str(folder)]) == 2
        assert "sees no CUDA GPU; use --device cpu" in capsys.readouterr().err
