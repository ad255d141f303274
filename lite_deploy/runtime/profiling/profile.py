"""Latency profile of any artifact the runtime loads, on the machine it runs on.

:func:`profile` times the whole frame -> result path (``Detector`` or ``Classifier``) on a generated 1280x720 BGR
frame, split into the pre-processing, inference and post-processing stages the model wrapper times itself; then
the backend's per-layer profiler (ONNX Runtime's trace, OpenVINO's performance counters, TensorRT's
``IProfiler``) on a separately loaded copy, so the profiler's overhead never enters the latency figures; the
model's GFLOPs from its graph against the machine's measured float32 matrix-multiply rate; and device facts.

Device side: numpy, OpenCV and the model's backend (``onnx`` to count an ONNX graph's GFLOPs and matplotlib for
the histogram are optional).
"""

from __future__ import annotations

import io
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import cv2
import numpy as np

from ...errors import LiteDeployError
from ...io import atomic_write_bytes
from ..base import LayerTime
from ..pipeline.detector import Classifier, Detector
from ..registry import backend_for, load_runtime, runtime_class
from .flops import model_gflops
from .latency import LatencyStats
from .machine import device_facts, matmul_peak_gflops, peak_rss_mb

STAGES = ("pre", "infer", "post")
FRAME_SHAPE = (720, 1280)  # height, width of the generated frame
TOP_LAYERS = 10


@dataclass
class ProfileResult:
    """What :func:`profile` measured.

    Attributes:
        model: the artifact's path.
        backend: runtime class (and providers / device where the backend has them).
        backend_version: version of the backend's Python module.
        precision: the artifact's declared precision.
        input_shape: the network input blob's shape.
        batch: frames per call.
        threads: backend threads asked for (``None``: the backend's default).
        runs, warmup: timed and untimed calls.
        latency: one call, frames in -> results out (ms).
        stages: ``pre`` / ``infer`` / ``post`` per call (ms), as the model wrapper times them.
        fps: frames per second at the mean latency.
        peak_rss_mb: peak resident memory of the process after the timed runs (MB), ``None`` where unknown.
        layers: the slowest layers (mean ms per inference), at most :data:`TOP_LAYERS`.
        layers_total_ms: sum over every profiled layer (ms per inference).
        layer_note: why there are no layer times (empty when there are).
        gflops: model GFLOPs per frame, ``None`` when unknown.
        gflops_source: where ``gflops`` comes from, or why it is unknown.
        achieved_gflops: ``gflops`` x frames / mean inference time (GFLOP/s).
        sgemm_gflops: the machine's measured float32 matrix-multiply rate (GFLOP/s).
        device: :func:`~lite_deploy.runtime.profiling.machine.device_facts`.
        samples_ms: every timed call's latency (ms), in order.
    """

    model: str
    backend: str
    backend_version: str
    precision: str
    input_shape: List[int]
    batch: int
    threads: Optional[int]
    runs: int
    warmup: int
    latency: LatencyStats
    stages: Dict[str, LatencyStats]
    fps: float
    peak_rss_mb: Optional[float]
    layers: List[LayerTime] = field(default_factory=list)
    layers_total_ms: float = 0.0
    layer_note: str = ""
    gflops: Optional[float] = None
    gflops_source: str = ""
    achieved_gflops: Optional[float] = None
    sgemm_gflops: Optional[float] = None
    device: Dict[str, str] = field(default_factory=dict)
    samples_ms: List[float] = field(default_factory=list)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dict (layers as ``{name, op_type, ms, share}``)."""
        data = {k: v for k, v in vars(self).items() if k not in ("latency", "stages", "layers")}
        data["latency"] = vars(self.latency)
        data["stages"] = {k: vars(v) for k, v in self.stages.items()}
        data["layers"] = [dict(t._asdict(), share=self.share(t)) for t in self.layers]
        return json.loads(json.dumps(data))

    def save_json(self, path: Union[str, Path]) -> Path:
        """Write :meth:`to_dict` to ``path`` atomically and return it."""
        atomic_write_bytes(path, json.dumps(self.to_dict(), indent=1).encode())
        return Path(path)

    def share(self, layer: LayerTime) -> float:
        """``layer``'s fraction of the summed layer time."""
        return layer.ms / self.layers_total_ms if self.layers_total_ms > 0 else 0.0

    def table(self) -> str:
        """A readable report: stage latencies, FPS, memory, GFLOPs, top layers, device."""
        lat, st = self.latency, self.stages
        shape = "x".join(str(d) for d in self.input_shape)
        threads = "default" if self.threads is None else str(self.threads)
        lines = [
            f"{Path(self.model).name} on {self.backend} {self.backend_version}, {self.precision}, input {shape}, "
            f"{FRAME_SHAPE[1]}x{FRAME_SHAPE[0]} frame x{self.batch}, threads {threads}: "
            f"{self.runs} runs after {self.warmup} warm-up",
            "",
            f"{'latency ms':<14}" + "".join(f"{k:>9}" for k in ("mean", "p50", "p90", "p99", "min", "max")),
        ]
        for label, s in [("end-to-end", lat)] + [(f"  {k}", st[k]) for k in STAGES]:
            lines.append((f"{label:<14}" + "".join(f"{v:9.2f}" for v in (s.mean, s.p50, s.p90, s.p99, s.min, s.max))
                          + f"  {s.flag()}").rstrip())
        rss = "unknown" if self.peak_rss_mb is None else f"{self.peak_rss_mb:.0f} MB"
        lines += [
            "",
            f"FPS {self.fps:.1f}   end-to-end / infer (p50) {lat.p50 / st['infer'].p50:.3f}   peak RSS {rss}",
            self._compute_line(),
            "device: " + ", ".join(f"{k} {v}" for k, v in self.device.items()),
        ]
        if self.layers:
            lines += ["", f"top {len(self.layers)} layers (mean ms per inference, share of all layers' time)"]
            width = min(max(len(t.name) for t in self.layers), 60)
            for t in self.layers:
                share = 100 * self.share(t)
                lines.append(f"  {t.name[-width:]:<{width}}  {t.op_type[:24]:<24} {t.ms:8.3f} {share:6.1f}%")
        else:
            lines += ["", f"per-layer times: {self.layer_note}"]
        return "\n".join(lines)

    def _compute_line(self) -> str:
        if self.gflops is None:
            text = f"GFLOPs unknown ({self.gflops_source})"
        else:
            text = f"{self.gflops:.3g} GFLOPs per frame ({self.gflops_source})"
            if self.achieved_gflops is not None:
                text += f" -> {self.achieved_gflops:.3g} GFLOP/s achieved in inference"
        if self.sgemm_gflops is not None:
            text += f"; numpy float32 matmul peak {self.sgemm_gflops:.1f} GFLOP/s (measured once here, cached)"
            if self.achieved_gflops is not None:
                text += f" ({100 * self.achieved_gflops / self.sgemm_gflops:.0f}% of it)"
        return text


def synthetic_frame(height: int = FRAME_SHAPE[0], width: int = FRAME_SHAPE[1], seed: int = 0) -> np.ndarray:
    """A deterministic camera-like BGR test frame (H, W, 3) uint8: smooth gradient, filled shapes, sensor noise."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    frame = np.stack([60 + 120 * x / width, 80 + 100 * y / height, 150 - 70 * x / width], axis=-1)
    for _ in range(12):
        colour = tuple(float(c) for c in rng.uniform(0, 255, 3))
        cx, cy = int(rng.uniform(0, width)), int(rng.uniform(0, height))
        size = int(rng.uniform(30, 200))
        if rng.random() < 0.5:
            cv2.rectangle(frame, (cx - size, cy - size // 2), (cx + size, cy + size // 2), colour, -1)
        else:
            cv2.circle(frame, (cx, cy), size // 2, colour, -1)
    frame += rng.normal(0, 4, frame.shape).astype(np.float32)
    return np.clip(frame, 0, 255).astype(np.uint8)


def profile(
    model: Union[str, Path],
    *,
    runs: int = 200,
    warmup: int = 20,
    batch: int = 1,
    threads: Optional[int] = None,
    imgsz: Optional[int] = None,
    layers: bool = True,
    layer_runs: int = 20,
    peak: bool = True,
    facts: bool = True,
    gflops: Optional[float] = None,
    gflops_source: str = "given",
    frame: Optional[np.ndarray] = None,
    **runtime_options: Any,
) -> ProfileResult:
    """Profile an artifact end to end on this machine.

    Args:
        model: any artifact :func:`~lite_deploy.runtime.load_runtime` opens (``.onnx``, ``.xml``, ``.tflite``,
            ``.engine``, ``.pt``).
        runs: timed calls.
        warmup: untimed calls first.
        batch: frames per call (models with a fixed batch run them in chunks of their batch).
        threads: backend threads (CPU backends); ``None`` keeps the backend's default.
        imgsz: network input size for models with a dynamic height/width (detectors and classifiers).
        layers: run the backend's per-layer profiler (ONNX Runtime, OpenVINO, TensorRT).
        layer_runs: inferences profiled per layer (after one untimed inference).
        peak: give the numpy float32 matrix-multiply rate (measured about a second once per machine, then cached;
            see :func:`~lite_deploy.runtime.profiling.machine.matmul_peak_gflops`).
        facts: read the device facts.
        gflops: the model's GFLOPs per frame when known otherwise; default: counted from its graph.
        gflops_source: where a given ``gflops`` comes from, for the report.
        frame: the BGR frame to run (default: :func:`synthetic_frame`, 1280x720).
        **runtime_options: backend options (``providers``, ``device``, ``precision`` ...).

    Returns:
        The :class:`ProfileResult`.

    Raises:
        ValueError: ``runs`` < 1, ``warmup`` < 0, ``batch`` < 1 or ``layer_runs`` < 1.
        FileNotFoundError, BackendUnavailableError: as :func:`~lite_deploy.runtime.load_runtime`.
    """
    if runs < 1 or warmup < 0 or batch < 1 or layer_runs < 1:
        raise ValueError(
            f"need runs >= 1, warmup >= 0, batch >= 1, layer_runs >= 1; got {runs}, {warmup}, {batch}, {layer_runs}"
        )
    path = Path(model)
    options = dict(runtime_options)
    if threads is not None:
        options["threads"] = int(threads)
    frames = [synthetic_frame() if frame is None else frame] * batch
    wrapper = _open(path, imgsz, options)
    with wrapper:
        for _ in range(warmup):
            wrapper(frames)
        totals: List[float] = []
        stages: Dict[str, List[float]] = {k: [] for k in STAGES}
        for _ in range(runs):
            tic = time.perf_counter()
            wrapper(frames)
            totals.append((time.perf_counter() - tic) * 1e3)
            for k in STAGES:
                stages[k].append(wrapper.timings[k])
        rss = peak_rss_mb()
        blob = wrapper.preprocess(frames[:1] * (wrapper.batch or batch))[0].copy()  # what one inference takes
        spec, runtime = wrapper.spec, wrapper.runtime
        if gflops is None:
            gflops, source = model_gflops(path, spec, runtime.model if path.suffix.lower() == ".xml" else None)
        else:
            source = gflops_source
        backend = type(runtime).__name__
        if hasattr(runtime, "providers"):
            backend += f" ({', '.join(runtime.providers)})"
    latency = LatencyStats.of(totals)
    stage_stats = {k: LatencyStats.of(v) for k, v in stages.items()}
    result = ProfileResult(
        model=str(path), backend=backend, backend_version=_backend_version(path), precision=spec.precision,
        input_shape=list(blob.shape), batch=batch, threads=threads, runs=runs, warmup=warmup, latency=latency,
        stages=stage_stats, fps=1e3 * batch / latency.mean, peak_rss_mb=rss, gflops=gflops, gflops_source=source,
        samples_ms=totals,
    )
    if gflops is not None:
        result.achieved_gflops = gflops * batch / (stage_stats["infer"].mean / 1e3)
    if layers:
        all_layers, result.layer_note = _layer_profile(path, options, blob, layer_runs)
        result.layers = all_layers[:TOP_LAYERS]
        result.layers_total_ms = sum(t.ms for t in all_layers)
    else:
        result.layer_note = "not measured"
    if peak:
        result.sgemm_gflops = matmul_peak_gflops()
    if facts:
        result.device = device_facts()
    return result


def plot_histogram(result: ProfileResult, path: Union[str, Path]) -> Path:
    """Write a latency histogram PNG of ``result.samples_ms`` with its p50 and p99 marked.

    Raises:
        LiteDeployError: matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        from matplotlib.figure import Figure
    except ImportError:
        raise LiteDeployError("the latency histogram needs matplotlib: pip install matplotlib") from None
    fig = Figure(figsize=(7, 4), tight_layout=True)
    ax = fig.add_subplot()
    ax.hist(result.samples_ms, bins=min(50, max(10, len(result.samples_ms) // 4)), color="steelblue")
    for value, label, style in ((result.latency.p50, "p50", "-"), (result.latency.p99, "p99", "--")):
        ax.axvline(value, color="black", linestyle=style, label=f"{label} {value:.2f} ms")
    ax.set(xlabel="frame -> result latency (ms)", ylabel="runs",
           title=f"{Path(result.model).name} on {result.backend.split(' ')[0]}, {result.runs} runs")
    ax.legend()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


def _open(path: Path, imgsz: Optional[int], options: Dict[str, Any]) -> Union[Detector, Classifier]:
    """The artifact in a Detector (or a Classifier, for classification models)."""
    runtime = load_runtime(path, **options)
    try:
        if runtime.spec.task == "classify":
            return Classifier(runtime, imgsz=imgsz)
        return Detector(runtime, imgsz=imgsz)
    except BaseException:
        runtime.close()
        raise


def _layer_profile(path: Path, options: Dict[str, Any], blob: np.ndarray, runs: int) -> Tuple[List[LayerTime], str]:
    """Every layer's mean time over ``runs`` profiled inferences (after one more, left out), and a note if none."""
    cls = runtime_class(path)
    if not cls.layer_profiling:
        return [], f"{cls.__name__} has no per-layer profiler"
    runtime = cls.load(path, profiling=True, **options)
    with runtime:
        for _ in range(runs + 1):
            runtime.infer(blob)
        times = runtime.layer_times()
    return times, "" if times else "the profiler reported no layers"


def _backend_version(path: Path) -> str:
    module = sys.modules.get(backend_for(path).module)
    return str(getattr(module, "__version__", "")).split("-")[0]
