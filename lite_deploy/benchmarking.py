"""Benchmark a checkpoint across deployment targets and precisions: export, verify, validate, profile, one table.

For each target x precision the checkpoint is exported (the loop :func:`lite_deploy.export.each.export_each`, whose
exports verify every artifact against PyTorch), scored on a dataset and timed
(:func:`lite_deploy.runtime.profiling.profile.profile` on a 1280x720 frame). The task the checkpoint declares (its
spec's ``task``) picks the score: a detector (YOLO or CenterNet) gets mAP50-95 on a YOLO data.yaml or COCO JSON
(:func:`lite_deploy.eval.validate.validate`) and is timed frame -> Detections; a classifier gets top-1 accuracy on
an image folder's val split (:func:`lite_deploy.eval.classify.validate_classifier`) and is timed frame -> top-k.
Every score is also given as its change against the FP32 ``.pt`` model. A failure in one row is written into its
status; the other rows go on. Targets whose tools are not installed are listed as skipped with the reason. The table
is printed and saved as CSV, with a latency-vs-score chart.
"""

from __future__ import annotations

import csv
import io
import logging
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, List, Optional, Sequence, Union

from .errors import CheckpointError, DatasetError, VerificationError
from .export.each import export_each
from .export.options import PRECISIONS, ExportOptions, parse_precisions
from .export.prepare import input_size
from .export.targets import TARGET_NAMES, Target, resolve_targets
from .io import atomic_write_bytes
from .spec import ModelSpec

LOGGER = logging.getLogger(__name__)

REFERENCE = "pytorch"
METRICS = {"detect": "mAP50-95", "classify": "top-1"}  # the score of each task


@dataclass
class BenchmarkRow:
    """One artifact's line of the table (``None``: not measured).

    Attributes:
        target: ``pytorch`` (the reference ``.pt``), ``onnx``, ``openvino``, ``tflite`` or ``trt``.
        precision: ``fp32``, ``fp16`` or ``int8``.
        size_mb: artifact size on disk (an IR's ``.xml`` + ``.bin``), MB.
        metric: what ``score`` is: ``mAP50-95`` (COCO, detectors) or ``top-1`` (accuracy, classifiers).
        score: ``metric`` on the dataset, a fraction in [0, 1].
        change: ``score`` minus the FP32 ``.pt`` model's.
        p50_ms, p99_ms: frame -> Detections (or top-k classes) latency percentiles on a 1280x720 frame, ms.
        fps: frames per second at the mean latency.
        status: ``ok`` (``ok, timing unstable (p99/p50 N.N)`` when p99 > 3x p50), ``skipped: <reason>``,
            ``int8 export not available``, or ``<stage> failed: <message>``.
        file: the artifact.
    """

    target: str
    precision: str
    size_mb: Optional[float] = None
    metric: str = METRICS["detect"]
    score: Optional[float] = None
    change: Optional[float] = None
    p50_ms: Optional[float] = None
    p99_ms: Optional[float] = None
    fps: Optional[float] = None
    status: str = "ok"
    file: str = ""


COLUMNS = tuple(f.name for f in fields(BenchmarkRow))


@dataclass
class BenchmarkReport:
    """The rows (reference first) and the files written."""

    rows: List[BenchmarkRow]
    csv: Path
    chart: Optional[Path]

    def table(self) -> str:
        """The rows as an aligned text table."""
        header = ("target", "precision", "size MB", self.metric, "change", "p50 ms", "p99 ms", "FPS", "status")
        body = [
            (r.target, r.precision, _fmt(r.size_mb, "{:.2f}"), _fmt(r.score, "{:.4f}"), _fmt(r.change, "{:+.4f}"),
             _fmt(r.p50_ms, "{:.2f}"), _fmt(r.p99_ms, "{:.2f}"), _fmt(r.fps, "{:.1f}"), r.status)
            for r in self.rows
        ]
        widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header) - 1)]
        return "\n".join(
            "  ".join(cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths)))
            + "  " + line[-1]
            for line in [header] + body
        )

    @property
    def metric(self) -> str:
        """The score every row gives (the reference row's ``metric``)."""
        return self.rows[0].metric

    def fastest(self, precision: str = "fp32") -> Optional[BenchmarkRow]:
        """The exported artifact of ``precision`` with the lowest p50 latency, if any was timed."""
        timed = [r for r in self.rows if r.target != REFERENCE and r.precision == precision and r.p50_ms is not None]
        return min(timed, key=lambda r: r.p50_ms) if timed else None


def benchmark(
    weights: Union[str, Path],
    *,
    targets: Union[str, Sequence[str]] = "onnx,openvino,tflite,trt",
    precisions: Union[str, Sequence[str]] = PRECISIONS,
    data: Optional[Union[str, Path]] = None,
    out: Optional[Union[str, Path]] = None,
    runs: int = 50,
    warmup: int = 5,
    threads: Optional[int] = None,
    progress: bool = True,
    options: Optional[ExportOptions] = None,
    **overrides: Any,
) -> BenchmarkReport:
    """Export ``weights`` to every target x precision, verify, validate and profile each; write CSV and chart.

    Args:
        weights: a checkpoint file (the FP32 reference).
        targets: ``onnx``, ``openvino``, ``tflite``, ``trt``, comma-separated, or ``all``.
        precisions: ``fp32``, ``fp16``, ``int8``, comma-separated or a list.
        data: what the scores come from (without it the score columns stay empty): for a detector a YOLO
            data.yaml or COCO JSON (mAP50-95 on its val split), for a classifier an image-folder dataset root
            holding ``train/`` and ``val/`` (top-1 on ``val/``). With a detection data.yaml, INT8 is also judged
            by mAP on it (the exporter's gate and per-layer fallback).
        out: output folder (default ``<weights folder>/<weights stem>_benchmark``); the artifacts go into its
            ``artifacts/``.
        runs, warmup: timed and untimed calls of each profile.
        threads: backend threads for the profiles (default: each backend's).
        progress: show progress bars.
        options, overrides: how to export (:class:`~lite_deploy.export.options.ExportOptions` and its fields:
            ``imgsz`` (also the reference's input size), ``calib`` (INT8 rows are skipped without it),
            ``calib_size`` ...); ``precision`` and ``data`` are set per row.

    Returns:
        The :class:`BenchmarkReport`; ``benchmark.csv`` and ``benchmark.png`` are in ``out``.

    Raises:
        CheckpointError: ``weights`` is not a file or not a readable checkpoint.
        DatasetError: ``data`` is not a dataset of the checkpoint's task.
        ValueError: unknown target, precision or export option.
    """
    from tqdm import tqdm

    weights = Path(weights)
    options = ExportOptions.build(options, **overrides)
    target_list, precision_list = resolve_targets(targets), parse_precisions(precisions)
    if not weights.is_file():
        raise CheckpointError(f"weights file {str(weights)!r} does not exist")
    out = Path(out) if out is not None else weights.parent / f"{weights.stem}_benchmark"
    h, w = input_size(options.imgsz, weights)
    imgsz = h if h == w else (h, w)
    spec = _reference_spec(weights, imgsz)
    dataset = None if data is None else _open_data(data, spec.task)
    settings = dict(task=spec.task, data=dataset, imgsz=imgsz, runs=runs, warmup=warmup, threads=threads,
                    progress=progress)
    metric = METRICS[spec.task]
    # INT8 judged by mAP on the same labelled set the rows are scored on (a detection data.yaml)
    judge = str(data) if spec.task == "detect" and data is not None and str(data).endswith((".yaml", ".yml")) else None
    reference = BenchmarkRow(REFERENCE, "fp32", metric=metric, file=str(weights), size_mb=weights.stat().st_size / 1e6)
    _measure(reference, weights, None, **settings)
    rows = [reference]
    export_logger = logging.getLogger("lite_deploy.export")  # its verification tables: shown with -v only
    level = export_logger.level
    if not LOGGER.isEnabledFor(logging.DEBUG):
        export_logger.setLevel(logging.WARNING)
    results = export_each(weights, target_list, precision_list, options.replace(imgsz=(h, w), data=None),
                          out=out / "artifacts",
                          skip=_skip, per_precision={"int8": {"data": judge}})
    try:
        for result in tqdm(results, total=len(target_list) * len(precision_list), desc="benchmark", unit="artifact",
                           disable=not progress):
            row = BenchmarkRow(result.target, result.precision, metric=metric, status=_status(result))
            rows.append(row)
            if result.ok:
                row.file, row.size_mb = str(result.files[0]), _size_mb(result.files[0])
                _measure(row, result.files[0], reference.score, **settings)
            LOGGER.info("%s %s: %s", row.target, row.precision, row.status)
    finally:
        export_logger.setLevel(level)
    rows[1:] = sorted(rows[1:], key=lambda r: (TARGET_NAMES.index(r.target), PRECISIONS.index(r.precision)))
    report = BenchmarkReport(rows, _write_csv(rows, out / "benchmark.csv"), None)
    try:
        report.chart = plot_benchmark(rows, out / "benchmark.png")
    except ImportError:
        LOGGER.warning("no chart: matplotlib is not installed (pip install matplotlib)")
    return report


def _skip(target: Target, options: ExportOptions) -> str:
    """Why a row is not exported: its tools are missing here, or INT8 has no calibration images."""
    reason = target.unavailable()
    if reason:
        return f"skipped: {reason}"
    if options.precision == "int8" and options.calib is None:
        return "skipped: int8 needs calibration images (calib)"
    return ""


def _status(result: Any) -> str:
    """A row's status from its export: ``ok``, the skip reason, or which stage failed and why."""
    if result.skipped or result.error is None:
        return result.skipped or "ok"
    stage = "verify" if isinstance(result.error, VerificationError) else "export"
    return f"{stage} failed: {_short(result.error)}"


def _reference_spec(weights: Path, imgsz: int) -> ModelSpec:
    """The spec the ``.pt`` reference runs with at ``imgsz``: its ``task`` says how every row is scored and timed."""
    from .runtime import load_runtime

    with load_runtime(weights, imgsz=imgsz) as runtime:
        return runtime.spec


def _open_data(data: Union[str, Path], task: str) -> Any:
    """The val split ``task`` is scored on: an :class:`~lite_deploy.data.image_folder.ImageFolder` or a dataset.

    Raises:
        DatasetError: ``data`` is not a dataset of that task, or is malformed.
    """
    if task == "classify":
        from .data.image_folder import ImageFolder

        if not Path(data).is_dir():
            raise DatasetError(f"{data}: a classifier is scored on an image-folder dataset; pass its root folder "
                               "(holding train/ and val/, one sub-folder of images per class)")
        return ImageFolder(data, "val")
    from .eval.validate import open_dataset

    try:
        return open_dataset(data, "val")
    except ValueError:
        raise DatasetError(f"{data}: a detector is scored on a YOLO data.yaml or a COCO instances .json; pass one "
                           "of those (an image folder scores classifiers)") from None


def _measure(row: BenchmarkRow, path: Path, reference_score: Optional[float], *, task: str, data: Any, imgsz: int,
             runs: int, warmup: int, threads: Optional[int], progress: bool) -> None:
    """Score (when there is data) and profile one model into ``row``; a failure goes into its status."""
    from .runtime.profiling.profile import profile

    model_imgsz = imgsz if path.suffix.lower() == ".pt" else None
    if data is not None:
        try:
            row.score = _score(path, data, task, model_imgsz, progress)
        except Exception as exc:
            LOGGER.debug("%s validation failed", path, exc_info=True)
            row.status = f"val failed: {_short(exc)}"
        if row.score is not None and reference_score is not None:
            row.change = row.score - reference_score
    try:
        result = profile(path, runs=runs, warmup=warmup, threads=threads, imgsz=model_imgsz, layers=False,
                         peak=False, facts=False)
    except Exception as exc:
        LOGGER.debug("%s profile failed", path, exc_info=True)
        if row.status == "ok":
            row.status = f"profile failed: {_short(exc)}"
        return
    row.p50_ms, row.p99_ms, row.fps = result.latency.p50, result.latency.p99, result.fps
    if result.latency.unstable and row.status == "ok":
        row.status = f"ok, timing {result.latency.flag()}"


def _score(path: Path, data: Any, task: str, imgsz: Optional[int], progress: bool) -> float:
    """mAP50-95 of a detector or top-1 of a classifier on ``data`` (opened by :func:`_open_data`)."""
    if task == "classify":
        from .eval.classify import validate_classifier

        return validate_classifier(path, data, imgsz=imgsz, progress=progress, verbose=False)["top1"]
    from .eval.validate import validate

    return validate(path, data, imgsz=imgsz, progress=progress, verbose=False)["map50_95"]


def plot_benchmark(rows: Sequence[BenchmarkRow], path: Union[str, Path]) -> Path:
    """Latency (p50) against the score (mAP50-95 or top-1), one labelled marker per model; without scores, a bar
    chart of latency.

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.ticker import ScalarFormatter

    from .eval.plots import new_figure, save_png

    timed = [r for r in rows if r.p50_ms is not None]
    scored = [r for r in timed if r.score is not None]
    metric = rows[0].metric if rows else METRICS["detect"]
    fig = new_figure(figsize=(8, 5))
    ax = fig.add_subplot()
    markers = dict(zip((REFERENCE, *TARGET_NAMES), "*os^Dv<>p"))
    colours = {"fp32": "tab:blue", "fp16": "tab:orange", "int8": "tab:green"}
    if scored:
        for i, r in enumerate(sorted(scored, key=lambda row: row.p50_ms)):
            ax.scatter(r.p50_ms, r.score, marker=markers[r.target], color=colours[r.precision], s=70,
                       label=f"{r.target} {r.precision}", alpha=0.8)
            # neighbours in latency get their labels at three heights, so close points stay readable
            ax.annotate(f"{r.target} {r.precision}", (r.p50_ms, r.score), xytext=(6, (-11, 0, 11)[i % 3]),
                        textcoords="offset points", fontsize=7, va="center")
        scores = [r.score for r in scored]
        ax.set_ylim(max(0.0, min(scores) - 0.02), min(1.0, max(scores) + 0.02))
        ax.set_xscale("log")  # a slow .pt next to ms-fast artifacts: ratios stay readable
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(ScalarFormatter())
        ax.legend(fontsize=8, loc="best")
        ax.set(xlabel="p50 latency, frame -> result (ms, log scale)", ylabel=metric, title=f"latency vs {metric}")
    else:
        labels = [f"{r.target} {r.precision}" for r in timed]
        ax.barh(labels, [r.p50_ms for r in timed], color=[colours[r.precision] for r in timed])
        ax.set(xlabel="p50 latency, frame -> result (ms)", title=f"latency (no dataset given: no {metric})")
    ax.grid(alpha=0.3)
    return save_png(fig, path, dpi=130)


def _write_csv(rows: Sequence[BenchmarkRow], path: Path) -> Path:
    text = io.StringIO()
    writer = csv.writer(text)
    writer.writerow(COLUMNS)
    for r in rows:
        writer.writerow(["" if getattr(r, c) is None else getattr(r, c) for c in COLUMNS])
    atomic_write_bytes(path, text.getvalue().encode())
    return path


def _size_mb(path: Path) -> float:
    files = [path] + ([path.with_suffix(".bin")] if path.suffix.lower() == ".xml" else [])
    return sum(f.stat().st_size for f in files if f.is_file()) / 1e6


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return text if len(text) <= 160 else text[:157] + "..."


def _fmt(value: Optional[float], pattern: str) -> str:
    return "-" if value is None else pattern.format(value)
