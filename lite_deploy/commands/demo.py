"""lite-deploy demo: the whole job on the bundled demo detector, in a few minutes on a laptop-class CPU.

Generates a small synthetic shapes validation set and a calibration set, exports the demo detector to every target
and precision this machine can run (each verified against PyTorch), scores and times every artifact, prints the
benchmark table and writes one annotated image through the fastest FP32 artifact.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ
from . import args as arg_types
from .outputs import add_out, run_dir

VAL_IMAGES = 100
CALIB_IMAGES = 100
SEED = 0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register ``demo``."""
    p = subparsers.add_parser(
        "demo",
        help="export, score and time the bundled demo detector on every target",
        description="Export the bundled demo detector to every target and precision this machine runs (each "
        "verified against PyTorch), score and time each on a generated shapes set, print the benchmark table and "
        "write one annotated image.",
    )
    add_out(p, "demo", "the shapes set, the artifacts, the table, the chart and the annotated image")
    # another checkpoint for the shapes set, run at DEMO_IMGSZ
    p.add_argument("--weights", type=arg_types.existing_file, help=argparse.SUPPRESS)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo and say where everything went."""
    import cv2
    import numpy as np

    from ..assets import demo_weights
    from ..benchmarking import benchmark
    from ..data.shapes import generate_shapes, render_image
    from ..errors import LiteDeployError
    from ..io import atomic_write_bytes
    from ..runtime import Detector

    out = run_dir("demo", args.out)
    weights = Path(args.weights) if args.weights else demo_weights()
    if args.weights:  # refuse an unreadable checkpoint before anything is written
        from ..models import load_model

        load_model(weights)
    print(f"1/3 generating {VAL_IMAGES} validation and {CALIB_IMAGES} calibration images at {DEMO_DATA_IMGSZ} px")
    data = generate_shapes(out / "shapes", train=CALIB_IMAGES, val=VAL_IMAGES, seed=SEED, imgsz=DEMO_DATA_IMGSZ)
    calib = data.parent / "images" / "train"
    print(f"2/3 exporting {weights.name} to every target x fp32/fp16/int8, verifying, scoring and timing each")
    report = benchmark(weights, targets="all", precisions="fp32,fp16,int8", data=data, calib=calib,
                       calib_size=CALIB_IMAGES, imgsz=DEMO_IMGSZ, out=out, runs=50)
    print(report.table())
    fastest = report.fastest("fp32")
    if fastest is None:
        raise LiteDeployError(f"no FP32 artifact could be timed; see the status column above and {report.csv}")
    print(f"3/3 detecting on a new shapes image with the fastest FP32 artifact, {Path(fastest.file).name}")
    image, _ = render_image(np.random.default_rng([SEED, 99]), DEMO_DATA_IMGSZ)  # in neither generated split
    with Detector.load(fastest.file) as detector:
        detections = detector(image)
    ok, encoded = cv2.imencode(".jpg", detections.draw(image))
    if not ok:
        raise LiteDeployError("OpenCV could not encode the annotated image")
    annotated = out / "detections.jpg"
    atomic_write_bytes(annotated, encoded.tobytes())
    print(f"\n{len(detections)} objects found: {', '.join(detections.label(i) for i in range(len(detections))) or '-'}")
    print(f"artifacts (each with its <artifact>.json spec): {out / 'artifacts'}")
    print(f"benchmark table: {report.csv}" + (f"   chart: {report.chart}" if report.chart else ""))
    print(f"annotated image: {annotated}")
    print(f"validation / calibration images: {data.parent}")
    return 0
