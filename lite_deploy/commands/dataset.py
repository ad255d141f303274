"""lite-deploy dataset: generate the synthetic shapes benchmark (detection, or shapes-cls classification), or check
a YOLO dataset for malformed files."""

from __future__ import annotations

import argparse
import time

from ..assets import DEMO_DATA_IMGSZ
from . import args as arg_types


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``dataset shapes`` and ``dataset check``."""
    parser = subparsers.add_parser("dataset", help="generate or check datasets", description=__doc__)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    shapes = actions.add_parser(
        "shapes", help="write the synthetic shapes detection benchmark as a YOLO dataset",
        description="Write the synthetic shapes benchmark (6 classes) as a YOLO dataset with data.yaml.",
    )
    shapes.add_argument("out", help="output folder")
    shapes.add_argument("--train", type=arg_types.positive_int, default=2000, help="training images (default 2000)")
    shapes.add_argument("--val", type=arg_types.positive_int, default=400, help="validation images (default 400)")
    shapes.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    arg_types.add_imgsz(shapes, "image side (the bundled demo detector was trained on this set's default)",
                        default=DEMO_DATA_IMGSZ, square=True)
    shapes.set_defaults(func=_shapes)

    shapes_cls = actions.add_parser(
        "shapes-cls", help="write a synthetic image-folder classification set (one shape per image)",
        description="Write the synthetic shapes classification set (6 classes) as OUT/{train,val}/<class>/*.jpg.",
    )
    shapes_cls.add_argument("out", help="output folder")
    shapes_cls.add_argument("--train", type=arg_types.positive_int, default=600, help="training images (default 600)")
    shapes_cls.add_argument("--val", type=arg_types.positive_int, default=120, help="validation images (default 120)")
    shapes_cls.add_argument("--seed", type=int, default=0, help="random seed; same seed, same files (default 0)")
    arg_types.add_imgsz(shapes_cls, "image side", default=96, square=True)
    shapes_cls.set_defaults(func=_shapes_cls)

    check = actions.add_parser(
        "check", help="list every problem of a YOLO dataset (labels, missing or corrupt images)",
        description="List every problem of a YOLO dataset: malformed label lines, missing or corrupt images.",
    )
    check.add_argument("data", help="the dataset's data.yaml")
    check.add_argument("--no-decode", action="store_true", help="do not decode images (faster)")
    check.set_defaults(func=_check)


def _shapes(args: argparse.Namespace) -> int:
    from ..data.shapes import generate_shapes

    start = time.perf_counter()
    path = generate_shapes(args.out, train=args.train, val=args.val, seed=args.seed, imgsz=args.imgsz[0])
    print(f"{args.train + args.val} images in {time.perf_counter() - start:.1f} s; dataset: {path}")
    return 0


def _shapes_cls(args: argparse.Namespace) -> int:
    from ..data.shapes_cls import generate_shapes_cls

    start = time.perf_counter()
    path = generate_shapes_cls(args.out, train=args.train, val=args.val, seed=args.seed, imgsz=args.imgsz[0])
    print(f"{args.train + args.val} images in {time.perf_counter() - start:.1f} s; dataset: {path}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from ..data.yolo import check_dataset

    issues = check_dataset(args.data, decode_images=not args.no_decode)
    for issue in issues:
        print(issue)
    print(f"{len(issues)} problem(s) found in {args.data}")
    return 1 if issues else 0
