"""Check ``lite-deploy profile`` against independent timings, and the runtime's overhead over bare inference.

1. On MODEL: a plain timing loop over the bare backend (``Runtime.infer`` on one pre-processed tensor) and
   ``profile``'s inference stage, in alternating rounds so that load on a shared machine hits both alike; prints
   the medians and the median of the per-round ratios (target: within 15%). For an OpenVINO IR, also OpenVINO's
   ``benchmark_app`` (synchronous, latency hint, the runtime's inference precision) when it is beside Python.
2. End-to-end frame -> Detections latency on a 1280x720 frame over the inference latency for a yolov5n at 640 on
   ONNX Runtime (target: <= 1.10), twice: from ``profile``'s stage split, and from Detector calls alternating call
   by call with bare ``Runtime.infer`` calls on the same session. Without ``--e2e-model`` the bundled yolov5n
   config (random weights) is exported to a temporary folder first.

    python tools/check_profile.py yolov5n_export/yolov5n.xml
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import List, NamedTuple, Optional, Tuple

import numpy as np

from lite_deploy.runtime import Detector, load_runtime
from lite_deploy.runtime.pipeline.preprocess import Preprocessor
from lite_deploy.runtime.profiling.profile import profile, synthetic_frame

TOLERANCE = 0.15
E2E_TARGET = 1.10
BENCHMARK_APP = Path(sys.executable).parent / "benchmark_app"


def bare_latencies(runtime, blob: np.ndarray, runs: int, warmup: int) -> List[float]:
    """Wall time of ``runtime.infer(blob)``, ms per run."""
    for _ in range(warmup):
        runtime.infer(blob)
    times = []
    for _ in range(runs):
        tic = time.perf_counter()
        runtime.infer(blob)
        times.append((time.perf_counter() - tic) * 1e3)
    return times


class Round(NamedTuple):
    """Medians (ms) of one round: bare loop, profile's inference stage and end-to-end, benchmark_app (or None)."""

    bare: float
    infer: float
    e2e: float
    app: Optional[float]


def rounds_of(model: Path, runs: int, rounds: int, threads: Optional[int], with_app: bool) -> List[Round]:
    """Alternate the bare loop, ``profile`` (and benchmark_app) ``rounds`` times on ``model``.

    Each method has the machine to itself: the bare loop's runtime is closed before ``profile`` loads its own
    (an idle ONNX Runtime session's spinning threads would otherwise slow the other one down).
    """
    options = {} if threads is None else {"threads": threads}
    results = []
    for _ in range(rounds):
        with load_runtime(model, **options) as runtime:
            blob = Preprocessor(runtime.spec, runtime.inputs[0].dtype)([synthetic_frame()])[0].copy()
            precision = getattr(runtime, "precision_hint", "f32")
            bare = statistics.median(bare_latencies(runtime, blob, runs, warmup=5))
        result = profile(model, runs=runs, warmup=5, threads=threads, layers=False, peak=False, facts=False)
        app = benchmark_app(model, runs, threads, precision) if with_app else None
        with_app = app is not None  # a benchmark_app that failed once is not asked again
        results.append(Round(bare, result.stages["infer"].p50, result.latency.p50, app))
    return results


def benchmark_app(model: Path, runs: int, threads: Optional[int], precision: str) -> Optional[float]:
    """Median latency (ms) OpenVINO's benchmark_app reports for an IR (synchronous, latency hint, ``precision``)."""
    command = [str(BENCHMARK_APP), "-m", str(model), "-d", "CPU", "-api", "sync", "-niter", str(runs),
               "-infer_precision", precision]
    # the runtime's LATENCY hint is one stream; benchmark_app takes a thread count only without a hint
    if threads is None:
        command += ["-hint", "latency"]
    else:
        command += ["-hint", "none", "-nstreams", "1", "-nthreads", str(threads)]
    output = subprocess.run(command, capture_output=True, text=True, timeout=600).stdout
    found = re.search(r"Median:\s*([0-9.]+)\s*ms", output)
    if found is None:
        print(f"benchmark_app printed no median latency:\n{output[-2000:]}")
        return None
    return float(found.group(1))


def verdict(ratios: List[float], tolerance: float) -> str:
    """Median ratio and whether it lies within ``tolerance`` of 1."""
    ratio = statistics.median(ratios)
    return f"ratio {ratio:.3f} ({'within' if abs(ratio - 1) <= tolerance else 'OUTSIDE'} {tolerance:.0%})"


def interleaved(model: Path, runs: int, threads: Optional[int]) -> Tuple[float, float]:
    """Medians (ms) of frame -> Detections and of bare ``Runtime.infer``, alternating call by call on one session."""
    options = {} if threads is None else {"threads": threads}
    frame = synthetic_frame()
    with Detector(load_runtime(model, **options)) as detector:
        blob = detector.preprocess([frame])[0].copy()
        e2e, bare = [], []
        for i in range(runs + 5):
            tic = time.perf_counter()
            detector.runtime.infer(blob)
            middle = time.perf_counter()
            detector(frame)
            if i >= 5:
                bare.append((middle - tic) * 1e3)
                e2e.append((time.perf_counter() - middle) * 1e3)
    return statistics.median(e2e), statistics.median(bare)


def yolov5n_onnx(folder: Path) -> Path:
    """The bundled yolov5n config (random weights) exported to ONNX at 640."""
    from lite_deploy.export.exporter import export

    return export("yolov5n", "onnx", imgsz=640, out=folder, verify=False)["onnx"]


def main() -> None:
    """Run both checks and print their numbers."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="artifact to check profile on (.onnx, .xml, .tflite ...)")
    parser.add_argument("--runs", type=int, default=20, help="timed runs per round and method (default 20)")
    parser.add_argument("--rounds", type=int, default=7, help="alternating rounds (default 7)")
    parser.add_argument("--threads", type=int, help="backend threads (default: the backend's)")
    parser.add_argument("--e2e-model", help="yolov5n ONNX at 640 (default: export the bundled config)")
    args = parser.parse_args()

    model = Path(args.model)
    with_app = model.suffix.lower() == ".xml" and BENCHMARK_APP.is_file()
    rounds = rounds_of(model, args.runs, args.rounds, args.threads, with_app)
    bare, infer = statistics.median(r.bare for r in rounds), statistics.median(r.infer for r in rounds)
    print(f"{model.name}, {args.rounds} rounds of {args.runs} runs, medians: bare Runtime.infer loop {bare:.2f} ms, "
          f"profile inference stage p50 {infer:.2f} ms, "
          f"per-round {verdict([r.infer / r.bare for r in rounds], TOLERANCE)}")
    apps = [r.app for r in rounds if r.app is not None]
    if apps:
        app = statistics.median(apps)
        print(f"{model.name}: OpenVINO benchmark_app median {app:.2f} ms, profile inference stage p50 {infer:.2f} ms, "
              f"per-round {verdict([r.infer / r.app for r in rounds if r.app is not None], TOLERANCE)}")

    with tempfile.TemporaryDirectory() as tmp:
        e2e_model = Path(args.e2e_model) if args.e2e_model else yolov5n_onnx(Path(tmp))
        result = profile(e2e_model, runs=args.runs * args.rounds, warmup=5, threads=args.threads, layers=False,
                         peak=False, facts=False)
        e2e, bare = interleaved(e2e_model, args.runs * args.rounds, args.threads)
    stages = result.stages
    for label, ratio in (
        (f"profile's stage split (pre {stages['pre'].p50:.2f}, infer {stages['infer'].p50:.2f}, post "
         f"{stages['post'].p50:.2f} ms p50)", result.latency.p50 / stages["infer"].p50),
        (f"Detector call vs bare Runtime.infer, alternating ({e2e:.2f} vs {bare:.2f} ms p50)", e2e / bare),
    ):
        print(f"{e2e_model.name} (640, ONNX Runtime) end-to-end / inference, {label}: {ratio:.3f} "
              f"(target <= {E2E_TARGET:.2f}: {'met' if ratio <= E2E_TARGET else 'MISSED'})")


if __name__ == "__main__":
    main()
