"""Time the runtime's pre-processing, inference and post-processing around one model on ONNX Runtime.

Prints the median of many runs for each stage on a synthetic 1280x720 frame, the ratio (pre + post) / infer,
and the decode + NMS time on the model's raw output at two confidence thresholds. Targets on a 2-core x86:
ratio <= 0.10, decode + NMS <= 1 ms at conf 0.25 and <= 15 ms at conf 0.001.

    python tools/bench_runtime.py ../shared/fixtures/yolov5/yolov5n-v7-nc80.export-opset12.onnx
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable, List

import numpy as np

from lite_deploy.runtime import Detector
from lite_deploy.runtime.pipeline.postprocess import candidates_boxes_scores, candidates_yolov5, select


def median_ms(fn: Callable[[], object], runs: int, warmup: int = 3) -> float:
    """Median wall time of ``fn`` in milliseconds."""
    for _ in range(warmup):
        fn()
    times: List[float] = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    """Run the benchmark and print one line per figure."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", help="detector artifact (.onnx, .xml, .tflite)")
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure (default 50)")
    parser.add_argument("--threads", type=int, default=None, help="backend threads (default: the backend's)")
    parser.add_argument("--conf", type=float, nargs="+", default=[0.25, 0.001], help="thresholds for the NMS timing")
    args = parser.parse_args()

    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    with Detector.load(args.model, conf=args.conf[0], threads=args.threads) as det:
        stages = {"pre": [], "infer": [], "post": []}
        for i in range(args.runs + 3):
            det(frame)
            if i >= 3:
                for name in stages:
                    stages[name].append(det.timings[name])
        pre, infer, post = (statistics.median(stages[n]) for n in ("pre", "infer", "post"))
        spec = det.spec
        print(f"model {det.runtime.path.name} ({spec.output_layout}, {spec.imgsz[1]}x{spec.imgsz[0]}) on "
              f"{type(det.runtime).__name__}, 1280x720 frame, median of {args.runs}")
        print(f"pre {pre:.2f} ms  infer {infer:.2f} ms  post {post:.2f} ms  "
              f"(pre+post)/infer {(pre + post) / infer:.3f}")

        blob, _ = det.preprocess([frame])
        outputs = det._outputs(det.runtime.infer(blob))
        for conf in args.conf:
            if spec.output_layout == "yolov5":
                candidates = lambda: candidates_yolov5(outputs[0][0], conf)  # noqa: E731
            else:
                candidates = lambda: candidates_boxes_scores(outputs[0][0], outputs[1][0], conf)  # noqa: E731
            n = len(candidates()[1])
            kept = len(select(candidates(), det.iou, det.max_det)[1])
            ms = median_ms(lambda: select(candidates(), det.iou, det.max_det), args.runs)
            print(f"decode+NMS at conf {conf:g}: {ms:.2f} ms ({n} candidates, {kept} kept)")


if __name__ == "__main__":
    main()
