"""Issue 19's numbers in one run: FP32 vs INT8 per backend, the Detector's overhead, the .pt path, export times.

Prints, on this machine and in this one run (every latency a median of runs taken in alternating blocks, so a busy
machine slows the compared models alike):

- the demo detector at 320 on a generated shapes set: per backend (ONNX Runtime, OpenVINO, TFLite) the export
  time of FP32 and INT8, bare-inference p50 of each, INT8 speed-up, mAP50-95 of each and the INT8 change;
- yolov5n (the v7.0 fixture) at 640: the same latencies per backend (random weights: no mAP);
- the Detector on YOLOv5 ``export.py``'s ONNX at 640 with a 1280x720 frame, then on this project's ONNX of the same
  checkpoint (boxes + scores outputs): pre / infer / post medians and end-to-end over bare ``session.run``;
- the ``.pt`` demo through the Detector: ms per image at 320;
- INT8 export of the demo per target on a quiet machine and while two busy processes keep both cores busy.

    .venv/bin/python tools/bench_perf.py [--calib-size 300] [--runs 30] [--target onnx,openvino,tflite]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "yolov5"


def interleaved_ms(calls: Dict[str, Callable[[], object]], runs: int, warmup: int = 3,
                   block: int = 5) -> Dict[str, float]:
    """Median wall time in ms of each call on one open model, the calls taking turns in blocks of ``block`` runs so
    load changes hit them alike (the Detector and the bare ``session.run`` of the same session)."""
    for _ in range(warmup):
        for call in calls.values():
            call()
    times: Dict[str, List[float]] = {name: [] for name in calls}
    for _ in range(-(-runs // block)):
        for name, call in calls.items():
            times[name] += timed_ms(call, block)
    return {name: statistics.median(values) for name, values in times.items()}


def alternating_ms(paths: Dict[str, Path], threads: int, runs: int, warmup: int = 3,
                   block: int = 5) -> Dict[str, float]:
    """Median bare-inference time in ms of each artifact, the artifacts taking turns in blocks of ``block`` runs, each
    block in a runtime opened for it and closed after it.

    One runtime at a time, as an application has: two ONNX Runtime sessions open in one process each keep a pool
    of worker threads that spin after a run, and the demo's FP32 ONNX timed beside its open INT8 session took
    6.9-10.9 ms per run where, alone, it takes 4.4-4.6 ms.
    """
    times: Dict[str, List[float]] = {name: [] for name in paths}
    for _ in range(-(-runs // block)):
        for name, path in paths.items():
            call, close = bare_infer(path, threads)
            try:
                for _ in range(warmup):
                    call()
                times[name] += timed_ms(call, block)
            finally:
                close()
    return {name: statistics.median(values) for name, values in times.items()}


def timed_ms(call: Callable[[], object], runs: int) -> List[float]:
    """Wall time in ms of each of ``runs`` calls."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return times


def bare_infer(path: Path, threads: int) -> Tuple[Callable[[], object], Callable[[], None]]:
    """``(one bare inference of the artifact on a fixed random blob, close)``: the blob has the runtime's own input
    dtype and shape."""
    from lite_deploy.runtime import load_runtime

    runtime = load_runtime(path, threads=threads)
    info = runtime.inputs[0]
    shape = tuple(d if d is not None else 1 for d in info.shape)
    blob = np.random.default_rng(0).random(shape).astype(info.dtype)
    if info.dtype == np.int8:
        blob = np.random.default_rng(0).integers(-128, 128, shape).astype(np.int8)
    return (lambda: runtime.infer(blob)), runtime.close


def export_pair(weights: Path, target: str, imgsz: int, out: Path, calib: Path, calib_size: int,
                data: Path = None, precisions: str = "fp32,int8") -> Dict[str, object]:
    """FP32 and INT8 (or ``precisions``) of one target: paths and export seconds (export + verify + gate)."""
    from lite_deploy.export.each import export_each

    result: Dict[str, object] = {}
    for r in export_each(weights, target, precisions, imgsz=imgsz, out=out,
                         per_precision={"int8": {"calib": calib, "calib_size": calib_size, "data": data}}):
        if r.error is not None:
            raise r.error
        result[f"{r.precision}_s"] = r.export_s + r.verify_s
        result[r.precision] = r.files[0]
    return result


def backend_table(title: str, weights: Path, imgsz: int, targets: Sequence[str], work: Path, calib: Path,
                  calib_size: int, runs: int, threads: int, data: Path = None) -> None:
    """Export, time and (with ``data``) score FP32 and INT8 per target; print one line per target."""
    from lite_deploy.eval.validate import validate

    print(f"\n{title}")
    print(f"{'target':<10}{'export fp32 s':>14}{'export int8 s':>14}{'fp32 ms':>9}{'int8 ms':>9}{'speed-up':>9}"
          f"{'mAP fp32':>10}{'mAP int8':>10}{'change':>8}")
    for target in targets:
        try:
            pair = export_pair(weights, target, imgsz, work / target, calib, calib_size, data)
            ms = alternating_ms({p: pair[p] for p in ("fp32", "int8")}, threads, runs)
        except Exception as exc:  # one failed target must not hide the others
            print(f"{target:<10}failed: {str(exc).splitlines()[0][:150]}")
            continue
        scores = {"fp32": float("nan"), "int8": float("nan")}
        if data is not None:
            for precision in scores:
                scores[precision] = 100 * validate(pair[precision], data, progress=False, verbose=False)["map50_95"]
        print(f"{target:<10}{pair['fp32_s']:14.1f}{pair['int8_s']:14.1f}{ms['fp32']:9.2f}{ms['int8']:9.2f}"
              f"{ms['fp32'] / ms['int8']:8.2f}x{scores['fp32']:10.2f}{scores['int8']:10.2f}"
              f"{scores['int8'] - scores['fp32']:+8.2f}")


def _spin(seconds: float) -> None:
    """Keep one core busy for ``seconds``."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def export_under_load(weights: Path, imgsz: int, targets: Sequence[str], work: Path, data: Path,
                      calib_size: int) -> None:
    """Wall time of each target's INT8 export (export, verification, gate) on a quiet machine, then again while two
    busy processes keep both cores busy."""
    import multiprocessing

    from lite_deploy.export.each import export_each

    def export_int8(out: Path) -> float:
        start = time.perf_counter()
        for r in export_each(weights, target, "int8", imgsz=imgsz, out=out,
                             per_precision={"int8": {"calib": data, "calib_size": calib_size, "data": data}}):
            if r.error is not None:
                raise r.error
        return time.perf_counter() - start

    print("\nINT8 export of the demo, quiet and while two busy processes keep both cores busy")
    print(f"{'target':<10}{'quiet s':>9}{'loaded s':>10}{'ratio':>8}")
    for target in targets:
        quiet = export_int8(work / "quiet" / target)
        spinners = [multiprocessing.get_context("spawn").Process(target=_spin, args=(1800.0,)) for _ in range(2)]
        for spinner in spinners:
            spinner.start()
        try:
            time.sleep(5)  # long enough for the runnable count the thread sizing reads
            loaded = export_int8(work / "loaded" / target)
        finally:
            for spinner in spinners:
                spinner.terminate()
                spinner.join()
        print(f"{target:<10}{quiet:9.1f}{loaded:10.1f}{loaded / quiet:7.2f}x")


def detector_split(models: Sequence[Path], runs: int, threads: int) -> None:
    """The Detector's pre / infer / post around each ONNX at 640 (YOLOv5 export.py's first, with the yolov5 output
    layout), against bare ``session.run``."""
    from lite_deploy.runtime import Detector
    from lite_deploy.runtime.profiling.profile import synthetic_frame

    frame = synthetic_frame()
    for model in models:
        print(f"\nDetector on {model.name} (640), 1280x720 frame, {threads} threads, medians of {runs} interleaved")
        # the fixture's random head scores objectness below 0.04: 0.385 keeps no row, 0.02 about 3% of them
        for conf in (0.385, 0.02):
            det = Detector.load(model, conf=conf, threads=threads)
            blob = det.preprocess([frame])[0].copy()
            session, name = det.runtime.session, det.runtime.inputs[0].name
            stages: Dict[str, List[float]] = {"pre": [], "infer": [], "post": []}

            def end_to_end() -> None:
                det(frame)
                for stage in stages:
                    stages[stage].append(det.timings[stage])

            ms = interleaved_ms({"bare": lambda: session.run(None, {name: blob}), "detector": end_to_end}, runs)
            pre, infer, post = (statistics.median(stages[s][-runs:]) for s in ("pre", "infer", "post"))
            past = ""
            if det.spec.output_layout == "yolov5":
                rows = int((det.runtime.infer(blob)[det.spec.output_names[0]][0, :, 4] > conf).sum())
                past = f" rows past objectness {rows:5d}:"
            print(f"conf {conf:<6}{past} pre {pre:.2f} ms  infer {infer:.2f} ms  post {post:.2f} ms  end-to-end "
                  f"{ms['detector']:.2f} ms / bare {ms['bare']:.2f} ms = {ms['detector'] / ms['bare']:.3f}x")
            det.close()


def pt_path(data: Path, images: int) -> None:
    """The demo .pt through the Detector at 320: ms per image over validation images, and torch's threads."""
    import cv2
    import torch

    from lite_deploy.assets import DEMO_IMGSZ, demo_weights
    from lite_deploy.runtime import Detector

    folder = data.parent / "images" / "val"
    frames = [cv2.imread(str(p)) for p in sorted(folder.iterdir())[:images]]
    det = Detector.load(demo_weights(), imgsz=DEMO_IMGSZ, conf=0.001)
    for frame in frames[:3]:
        det(frame)
    times = []
    for frame in frames:
        start = time.perf_counter()
        det(frame)
        times.append((time.perf_counter() - start) * 1e3)
    print(f"\n.pt demo at {DEMO_IMGSZ} through the Detector: {statistics.median(times):.1f} ms per image (median of "
          f"{len(times)}, p90 {np.percentile(times, 90):.1f}); torch threads {torch.get_num_threads()} intra-op, "
          f"{torch.get_num_interop_threads()} inter-op")


def main() -> None:
    """Run every part and print it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calib-size", type=int, default=300, help="calibration images per INT8 export")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per latency (in blocks of 5)")
    parser.add_argument("--threads", type=int, default=2, help="backend threads (default 2)")
    parser.add_argument("--target", default="onnx,openvino,tflite", help="demo targets (comma-separated)")
    parser.add_argument("--yolov5n-target", default="onnx,openvino,tflite", help="yolov5n targets ('' to skip)")
    parser.add_argument("--no-load", action="store_true", help="skip the INT8 export under load")
    args = parser.parse_args()

    from lite_deploy.assets import DEMO_DATA_IMGSZ, DEMO_IMGSZ, demo_weights
    from lite_deploy.data.shapes import generate_shapes
    from lite_deploy.export.targets import resolve_targets
    from lite_deploy.runtime.profiling.machine import device_facts, free_cores

    facts = device_facts()
    print(f"machine: {facts['cpu']}, {facts['cores']} cores, {free_cores()} free now")
    with tempfile.TemporaryDirectory(prefix="bench_perf.") as tmp:
        work = Path(tmp)
        data = generate_shapes(work / "shapes", train=args.calib_size, val=100, seed=0, imgsz=DEMO_DATA_IMGSZ,
                               progress=False)
        calib = data.parent / "images" / "train"
        own = export_pair(FIXTURES / "yolov5n-v7-nc80.pt", "onnx", 640, work / "yolov5n-onnx", None, 0,
                          precisions="fp32")["fp32"]
        detector_split([FIXTURES / "yolov5n-v7-nc80.export-opset12.onnx", own], args.runs, args.threads)
        pt_path(data, 50)
        backend_table(f"demo at {DEMO_IMGSZ}, INT8 calibrated on {args.calib_size} images, mAP50-95 on 100 "
                      "validation images (INT8 judged by --data)", demo_weights(), DEMO_IMGSZ,
                      resolve_targets(args.target), work / "demo", data, args.calib_size, args.runs, args.threads,
                      data)
        if not args.no_load:
            export_under_load(demo_weights(), DEMO_IMGSZ, resolve_targets(args.target), work / "load", data,
                              args.calib_size)
        if args.yolov5n_target:
            backend_table("yolov5n (v7.0 fixture, random weights) at 640, INT8 calibrated on the shapes images",
                          FIXTURES / "yolov5n-v7-nc80.pt", 640, resolve_targets(args.yolov5n_target),
                          work / "yolov5n", calib, args.calib_size, max(args.runs // 2, 5), args.threads)


if __name__ == "__main__":
    main()
