"""Measure which TFLite input layout XNNPACK runs faster: the model's NCHW input, or NHWC permuted inside the graph.

    python tools/tflite_layout.py [--cfg yolov5n] [--imgsz 320] [--threads 2] [--runs 50]

Converts the export-mode model twice with litert-torch (identical weights), runs both with ai-edge-litert's
interpreter (XNNPACK delegate), interleaving the runs, and prints the median and best latency of each.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cfg", default="yolov5n", help="bundled config name")
    parser.add_argument("--imgsz", type=int, default=320)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()

    from ai_edge_litert.interpreter import Interpreter

    from lite_deploy.export.describe import describe
    from lite_deploy.export.tflite import torch_to_tflite
    from lite_deploy.models import build_model
    from lite_deploy.models.deploy import prepare_for_export

    torch.manual_seed(0)
    model = build_model(args.cfg)
    export_model = prepare_for_export(model)
    runners = {}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("NCHW", "NHWC"):
            spec = describe(model, imgsz=(args.imgsz, args.imgsz), target="tflite", layout=layout)
            path = torch_to_tflite(export_model, Path(tmp) / f"{layout}.tflite", spec)
            interpreter = Interpreter(model_path=str(path), num_threads=args.threads)
            interpreter.allocate_tensors()
            shape = (1, args.imgsz, args.imgsz, 3) if layout == "NHWC" else (1, 3, args.imgsz, args.imgsz)
            sample = np.random.default_rng(0).random(shape, dtype=np.float32)
            runners[layout] = (interpreter.get_signature_runner(), sample)
    times = {layout: [] for layout in runners}
    for _ in range(5):
        for runner, x in runners.values():
            runner(images=x)
    for _ in range(args.runs):  # interleaved, so load from other processes hits both layouts alike
        for layout, (runner, x) in runners.items():
            start = time.perf_counter()
            runner(images=x)
            times[layout].append((time.perf_counter() - start) * 1e3)
    rows = [(layout, statistics.median(t), min(t)) for layout, t in times.items()]
    print(f"{args.cfg} at {args.imgsz}, {args.threads} threads, {args.runs} runs (XNNPACK)")
    print(f"{'input':6} {'median ms':>10} {'min ms':>8}")
    for layout, median, best in rows:
        print(f"{layout:6} {median:10.2f} {best:8.2f}")


if __name__ == "__main__":
    main()
