"""lite-deploy train: train a detector of the zoo on a YOLO dataset (YOLOv5's recipe; CenterNet's loss for CenterNet
configs), or with --task classify a classifier on an image-folder dataset.

Both train on one CPU or GPU, or with DDP on several: --device 0,1,2,3 starts one process per GPU through
torchrun, and "torchrun ... -m lite_deploy train ..." (multi-node too) runs it directly; --batch is the global
batch. Runs go to runs/train/exp, exp2, ... (classifiers: runs/train-cls/exp ...; --project, --name)."""

from __future__ import annotations

import argparse
from typing import List

from ..errors import LiteDeployError
from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    parser = subparsers.add_parser("train", help="train a detector on a YOLO dataset", description=__doc__)
    parser.add_argument("--task", choices=("detect", "classify"), default="detect",
                        help="detect (default) or classify (mobilenetv2, mobilenetv2_x0_35 ... _x1_4, "
                             "shufflenetv2_x0_5 ... _x2_0, shufflenetv1_g3, squeezenet1_1 on an image folder)")
    parser.add_argument("--cfg", help="model config: bundled name (see `lite-deploy info --list`) or yaml file; "
                                      "classify: the architecture")
    parser.add_argument("--data",
                        help="YOLO data.yaml; classify: image folder with train/ and val/, a sub-folder "
                                       "per class")
    parser.add_argument("--weights", type=arg_types.existing_file,
                        help="starting checkpoint (lite-deploy, YOLOv5 or slim-neck); classes may differ; "
                                          "classify: torchvision .pth or lite-deploy checkpoint of the architecture")
    parser.add_argument("--epochs", type=arg_types.positive_int, default=100, help="epochs (default 100)")
    arg_types.add_imgsz(parser, "training input size, also the size the checkpoint serves at", default=320,
                        square=True)
    parser.add_argument("--batch", type=arg_types.positive_int, default=16,
                        help="images per iteration over all processes (the global batch; default 16)")
    parser.add_argument("--workers", type=arg_types.non_negative_int, default=2,
                        help="data loading processes (default 2)")
    parser.add_argument("--device", help="cpu, 0, cuda:0, or 0,1,2,3 for DDP on those GPUs via torchrun "
                                         "(default: CUDA when available)")
    parser.add_argument("--backbone-weights", type=arg_types.existing_file, metavar="PTH",
                        help="torchvision ImageNet state_dict (.pth) for the backbone of --cfg (detect)")
    parser.add_argument("--freeze", metavar="N|backbone",
                        help="do not train the first N yaml layers, or the backbone (detect)")
    parser.add_argument("--freeze-epochs", type=arg_types.non_negative_int, default=0,
                        help="unfreeze after this many epochs (default 0: frozen for the whole run)")
    parser.add_argument("--sync-bn", action="store_true", help="SyncBatchNorm across DDP processes (GPUs only)")
    parser.add_argument("--project", help="folder of runs (default runs/train; runs/train-cls with --task classify)")
    parser.add_argument("--name", default="exp", help="run name (default exp; exp2, exp3 ... when taken)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--optimizer", choices=("SGD", "AdamW"), default="SGD", help="optimizer (default SGD)")
    parser.add_argument("--lr0", type=arg_types.non_negative_float, default=0.01,
                        help="initial learning rate (default 0.01; 0.002 suits AdamW)")
    parser.add_argument("--nominal-batch", type=arg_types.positive_int, default=64,
                        help="images accumulated into one optimizer step (default 64, as YOLOv5)")
    parser.add_argument("--warmup-epochs", type=arg_types.non_negative_float, default=3.0,
                        help="warmup epochs (default 3)")
    parser.add_argument("--val-every", type=arg_types.positive_int, default=1,
                        help="validate every N epochs and after the last (default 1)")
    parser.add_argument("--cos-lr", action="store_true", help="cosine learning-rate decay instead of linear")
    parser.add_argument("--close-mosaic", type=arg_types.non_negative_int, default=0,
                        help="no mosaic in the last N epochs (default 0)")
    parser.add_argument("--ema-tau", type=arg_types.non_negative_float, default=2000.0,
                        help="optimizer steps over which the weight average's decay ramps up (default 2000, as YOLOv5)")
    parser.add_argument("--resume", type=arg_types.existing_path, metavar="LAST",
                        help="continue an interrupted run (its weights/last.pt or folder)")
    parser.set_defaults(func=_run, parser=parser)


def _argv(args: argparse.Namespace) -> List[str]:
    """The command line of ``args`` without ``--device`` (for the torchrun processes)."""
    argv: List[str] = []
    for action in args.parser._actions:
        value = getattr(args, action.dest, None)
        if not action.option_strings or action.dest in ("help", "device") or value == action.default:
            continue
        flag = action.option_strings[-1]
        values = value if isinstance(value, tuple) else (value,)  # --imgsz is (height, width)
        argv += [flag] if isinstance(action, argparse._StoreTrueAction) else [flag, *map(str, values)]
    return argv


def _run(args: argparse.Namespace) -> int:
    if args.task == "classify":
        return _classify(args)
    if args.data and not args.resume:  # a bad data.yaml is refused before torch and the model load
        from ..data.yolo import load_data_config

        load_data_config(args.data)
    from ..train.centernet import train_detector as train
    from ..train.distributed import context_from_env, launch, parse_devices
    from ..train.trainer import TrainConfig

    devices = parse_devices(args.device)
    if devices and len(devices) > 1 and not context_from_env().distributed:
        return launch(_argv(args), devices)

    if args.resume:
        results = train(resume=args.resume)
    else:
        if not args.data:
            raise LiteDeployError("lite-deploy train: --data is required (unless --resume)")
        config = TrainConfig(
            data=args.data, cfg=args.cfg, weights=args.weights, epochs=args.epochs, imgsz=args.imgsz[0],
            batch=args.batch, workers=args.workers, device=args.device, project=args.project or TrainConfig.project,
            name=args.name, seed=args.seed, lr0=args.lr0, cos_lr=args.cos_lr, close_mosaic=args.close_mosaic,
            nominal_batch=max(args.nominal_batch, args.batch), warmup_epochs=args.warmup_epochs,
            val_every=args.val_every, optimizer=args.optimizer, ema_tau=args.ema_tau,
            warmup_bias_lr=0.0 if args.optimizer == "AdamW" else TrainConfig.warmup_bias_lr,
            backbone_weights=args.backbone_weights, freeze=args.freeze, freeze_epochs=args.freeze_epochs,
            sync_bn=args.sync_bn,
        )
        results = train(config)
    if not results:  # a DDP rank other than 0
        return 0
    print(
        f"mAP50 {results['map50']:.3f}  mAP50-95 {results['map50_95']:.3f}  best: {results['best']}  "
        f"last: {results['last']}"
    )
    return 0


def _classify(args: argparse.Namespace) -> int:
    from ..data.image_folder import ImageFolder
    from ..train.classify import ClassifyConfig, train_classifier
    from ..train.distributed import context_from_env, launch, parse_devices

    if not args.data and not args.resume:
        raise LiteDeployError("lite-deploy train --task classify: --data is required (unless --resume)")
    if not args.resume:
        ImageFolder(args.data, "train")  # a bad dataset is refused before any process starts
    devices = parse_devices(args.device)
    if devices and len(devices) > 1 and not context_from_env().distributed:
        return launch(_argv(args), devices)
    if args.resume:
        results = train_classifier(resume=args.resume)
    else:
        results = train_classifier(ClassifyConfig(
            data=args.data, cfg=args.cfg or "mobilenetv2", weights=args.weights, epochs=args.epochs,
            imgsz=args.imgsz[0], batch=args.batch, workers=args.workers, device=args.device,
            project=args.project or ClassifyConfig.project, name=args.name, seed=args.seed, lr0=args.lr0,
            optimizer=args.optimizer,
        ))
    if not results:  # a DDP rank other than 0
        return 0
    print(f"top-1 {results['top1']:.4f}  top-5 {results['top5']:.4f}  best top-1 {results['best_top1']:.4f}  "
          f"best: {results['best']}  last: {results['last']}")
    return 0
