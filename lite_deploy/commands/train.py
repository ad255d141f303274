"""``lite-deploy train``: train a detector of the zoo on a YOLO dataset (YOLOv5's recipe; CenterNet's loss for
CenterNet configs), or with ``--task classify`` a classifier on an image-folder dataset."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``train``."""
    parser = subparsers.add_parser("train", help="train a detector on a YOLO dataset", description=__doc__)
    parser.add_argument("--task", choices=("detect", "classify"), default="detect",
                        help="detect (default) or classify (mobilenetv2, shufflenetv2_x0_5, shufflenetv2_x1_0, "
                             "shufflenetv1_g3, squeezenet1_1 on an image folder)")
    parser.add_argument("--cfg", help="model config: bundled name (see `lite-deploy info --list`) or yaml file; "
                                      "classify: the architecture")
    parser.add_argument("--data", help="YOLO data.yaml; classify: image folder with train/ and val/, a sub-folder "
                                       "per class")
    parser.add_argument("--weights", help="starting checkpoint (lite-deploy, YOLOv5 or slim-neck); classes may differ; "
                                          "classify: torchvision .pth or lite-deploy checkpoint of the architecture")
    parser.add_argument("--epochs", type=int, default=100, help="epochs (default 100)")
    parser.add_argument("--imgsz", type=int, default=320, help="square input size in pixels (default 320)")
    parser.add_argument("--batch", type=int, default=16, help="images per iteration (default 16)")
    parser.add_argument("--workers", type=int, default=2, help="data loading processes (default 2)")
    parser.add_argument("--device", help="cpu, cuda, cuda:0 ... (default: CUDA when available)")
    parser.add_argument("--project", default="runs/train", help="folder of runs (default runs/train)")
    parser.add_argument("--name", default="exp", help="run name (default exp; exp2, exp3 ... when taken)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--optimizer", choices=("SGD", "AdamW"), default="SGD", help="optimizer (default SGD)")
    parser.add_argument("--lr0", type=float, default=0.01, help="initial learning rate (default 0.01; 0.002 suits AdamW)")
    parser.add_argument("--nominal-batch", type=int, default=64,
                        help="images accumulated into one optimizer step (default 64, as YOLOv5)")
    parser.add_argument("--warmup-epochs", type=float, default=3.0, help="warmup epochs (default 3)")
    parser.add_argument("--val-every", type=int, default=1,
                        help="validate every N epochs and after the last (default 1)")
    parser.add_argument("--cos-lr", action="store_true", help="cosine learning-rate decay instead of linear")
    parser.add_argument("--close-mosaic", type=int, default=0, help="no mosaic in the last N epochs (default 0)")
    parser.add_argument("--ema-tau", type=float, default=2000.0,
                        help="optimizer steps over which the weight average's decay ramps up (default 2000, as YOLOv5)")
    parser.add_argument("--resume", metavar="LAST", help="continue an interrupted run (its weights/last.pt or folder)")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.task == "classify":
        return _classify(args)
    from ..train.centernet import train_detector as train
    from ..train.trainer import TrainConfig

    if args.resume:
        results = train(resume=args.resume)
    else:
        if not args.data:
            raise SystemExit("lite-deploy train: --data is required (unless --resume)")
        config = TrainConfig(
            data=args.data, cfg=args.cfg, weights=args.weights, epochs=args.epochs, imgsz=args.imgsz,
            batch=args.batch, workers=args.workers, device=args.device, project=args.project, name=args.name,
            seed=args.seed, lr0=args.lr0, cos_lr=args.cos_lr, close_mosaic=args.close_mosaic,
            nominal_batch=max(args.nominal_batch, args.batch), warmup_epochs=args.warmup_epochs,
            val_every=args.val_every, optimizer=args.optimizer, ema_tau=args.ema_tau,
            warmup_bias_lr=0.0 if args.optimizer == "AdamW" else TrainConfig.warmup_bias_lr,
        )
        results = train(config)
    print(
        f"mAP50 {results['map50']:.3f}  mAP50-95 {results['map50_95']:.3f}  best: {results['best']}  "
        f"last: {results['last']}"
    )
    return 0


def _classify(args: argparse.Namespace) -> int:
    from ..train.classify import ClassifyConfig, train_classifier

    if args.resume or not args.data:
        raise SystemExit("lite-deploy train --task classify: --data is required and --resume is not available")
    config = ClassifyConfig(
        data=args.data, cfg=args.cfg or "mobilenetv2", weights=args.weights, epochs=args.epochs, imgsz=args.imgsz,
        batch=args.batch, workers=args.workers, device=args.device, project=args.project, name=args.name,
        seed=args.seed, lr0=args.lr0, optimizer=args.optimizer,
    )
    results = train_classifier(config)
    print(f"top-1 {results['top1']:.4f}  top-5 {results['top5']:.4f}  best top-1 {results['best_top1']:.4f}  "
          f"best: {results['best']}  last: {results['last']}")
    return 0
