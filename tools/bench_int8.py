"""INT8 and FP16 against FP32: mAP50-95 drops per backend, and INT8 vs FP32 latency on OpenVINO CPU and ONNX Runtime.

    .venv/bin/python tools/bench_int8.py WEIGHTS --data data.yaml [--calib DIR_OR_YAML] [--imgsz 320]
                                         [--speed-imgsz 640]

1. Accuracy: exports WEIGHTS at --imgsz to each --target backend as INT8 (calibrated on --calib, default the
   data.yaml's train split) and FP16, each judged by the export's accuracy gate (mAP50-95 on the data.yaml's val
   split against the FP32 model, through the runtime's own pre- and post-processing), and prints the drops.
2. Speed: exports FP32 and INT8 ONNX and OpenVINO IR at --speed-imgsz (no gate) and times ``Runtime.infer`` on one
   fixed input, FP32 and INT8 alternating in rounds so that load on the machine hits both alike; prints the
   median milliseconds and the FP32/INT8 ratio measured in this one run.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np


def accuracy(args: argparse.Namespace, out: Path) -> List[str]:
    """INT8 and FP16 exports at ``--imgsz``, judged by the gate; one printable line per artifact."""
    from lite_deploy.export.each import export_each

    results = export_each(
        args.weights, args.target, "fp16,int8", imgsz=args.imgsz, data=args.data, out=out / "accuracy", name="model",
        skip=lambda target, options: "fp16 trt: judged on the device" if target.name == "trt"
        and options.precision == "fp16" else "",
        per_precision={"int8": {"calib": args.calib or args.data, "calib_size": args.calib_size}})
    return [f"{r.target:<9} {r.gate.line() if r.ok else f'FAILED: {r.error}'}" for r in results
            if r.gate is not None or r.error is not None]


def speed(args: argparse.Namespace, out: Path) -> List[str]:
    """FP32 and INT8 ONNX / OpenVINO at ``--speed-imgsz``: median ms of ``infer`` and the FP32/INT8 ratio."""
    from lite_deploy.export.each import export_each
    from lite_deploy.runtime import load_runtime

    paths: Dict[str, Dict[str, Path]] = {"fp32": {}, "int8": {}}
    for r in export_each(args.weights, "onnx,openvino", "fp32,int8", imgsz=args.speed_imgsz, verify=False,
                         name="model", out=out / "speed",
                         per_precision={"int8": {"calib": args.calib or args.data,
                                                 "calib_size": args.speed_calib_size}}):
        if r.error is not None:
            raise r.error
        paths[r.precision][r.target] = r.files[0]
    blob = np.random.default_rng(0).random((1, 3, args.speed_imgsz, args.speed_imgsz), dtype=np.float32)
    lines = []
    for target, label in (("openvino", "OpenVINO CPU"), ("onnx", "ONNX Runtime CPU")):
        runtimes = {p: load_runtime(paths[p][target]) for p in ("fp32", "int8")}
        times: Dict[str, List[float]] = {p: [] for p in runtimes}
        for rt in runtimes.values():
            for _ in range(5):
                rt.infer(blob)
        for _ in range(args.runs):
            for precision, rt in runtimes.items():
                start = time.perf_counter()
                rt.infer(blob)
                times[precision].append(1e3 * (time.perf_counter() - start))
        fp32, int8 = (float(np.median(times[p])) for p in ("fp32", "int8"))
        lines.append(f"{label:<17} {args.speed_imgsz}: FP32 {fp32:7.2f} ms  INT8 {int8:7.2f} ms  "
                     f"FP32/INT8 {fp32 / int8:.2f}x")
        for rt in runtimes.values():
            rt.close()
    return lines


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("weights", help="checkpoint (or bundled config name, random weights: speed only)")
    parser.add_argument("--data", required=True, help="YOLO data.yaml: val split judges, train split calibrates")
    parser.add_argument("--calib", help="calibration images (default: --data's train split)")
    parser.add_argument("--calib-size", type=int, default=300, help="calibration images for the accuracy part")
    parser.add_argument("--speed-calib-size", type=int, default=32, help="calibration images for the speed exports")
    parser.add_argument("--imgsz", type=int, default=320, help="input size of the accuracy part (default 320)")
    parser.add_argument("--speed-imgsz", type=int, default=640, help="input size of the speed part (default 640)")
    parser.add_argument("--target", default="onnx,openvino,tflite", help="accuracy part backends (comma-separated)")
    parser.add_argument("--runs", type=int, default=50, help="timed inferences per model (default 50)")
    parser.add_argument("--skip-accuracy", action="store_true", help="speed only")
    parser.add_argument("--skip-speed", action="store_true", help="accuracy only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("lite_deploy.quantize.gate").setLevel(logging.INFO)  # each verdict as it comes
    with tempfile.TemporaryDirectory(prefix="bench_int8.") as tmp:
        lines = [] if args.skip_accuracy else accuracy(args, Path(tmp))
        lines += [] if args.skip_speed else speed(args, Path(tmp))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
