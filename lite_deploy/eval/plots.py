"""Plots of validation and training results (matplotlib, drawn off-screen)."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Tuple, Union

from ..io import atomic_write_bytes
from .metrics import RECALL_THRESHOLDS, DetectionMetrics


def plot_pr_curve(metrics: DetectionMetrics, path: Union[str, Path]) -> Path:
    """Precision-recall curves at IoU 0.50 (COCO's interpolated precision), one per class and their mean.

    Args:
        metrics: result of :meth:`DetectionEvaluator.compute`.
        path: PNG file to write.

    Returns:
        ``path``.
    """
    fig = new_figure(figsize=(7, 5))
    ax = fig.add_subplot()
    curves = metrics.pr_precision[0]  # (R, K) at IoU 0.50
    many = len(metrics.per_class) > 20
    for k, cls in enumerate(metrics.per_class):
        if cls.instances:
            label = None if many else f"{cls.name} {cls.map50:.3f}"
            ax.plot(RECALL_THRESHOLDS, curves[:, k], linewidth=1, label=label)
    has_gt = [k for k, c in enumerate(metrics.per_class) if c.instances]
    if has_gt:
        ax.plot(RECALL_THRESHOLDS, curves[:, has_gt].mean(axis=1), color="blue", linewidth=3,
                label=f"all classes {metrics.map50:.3f} mAP@0.5")
    ax.set(xlabel="Recall", ylabel="Precision", xlim=(0, 1), ylim=(0, 1.01), title="Precision-Recall (IoU 0.50)")
    ax.legend(loc="lower left", fontsize=8)
    return save_png(fig, path)


def plot_results(csv_path: Union[str, Path], path: Union[str, Path]) -> Path:
    """A training run's curves, as YOLOv5's ``results.png``: one panel per column of its ``results.csv`` (losses,
    validation metrics, learning rate) against the epoch; ``train_seconds`` is left out.

    Args:
        csv_path: the run's ``results.csv`` (an ``epoch`` column, then numbers; at least one row).
        path: PNG file to write.

    Returns:
        ``path``.
    """
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    columns = [c for c in rows[0] if c not in ("epoch", "train_seconds")]
    epochs = [int(r["epoch"]) for r in rows]
    ncols = min(len(columns), 5)
    nrows = math.ceil(len(columns) / ncols)
    fig = new_figure(figsize=(3.2 * ncols, 2.6 * nrows))
    for i, column in enumerate(columns):
        ax = fig.add_subplot(nrows, ncols, i + 1)
        ax.plot(epochs, [float(r[column]) for r in rows], marker=".", linewidth=1.5)
        ax.set_title(column, fontsize=10)
        ax.set_xlabel("epoch", fontsize=8)
        ax.tick_params(labelsize=8)
    return save_png(fig, path)


def new_figure(figsize: Tuple[float, float]) -> Any:
    """An off-screen matplotlib ``Figure`` of ``figsize`` inches with a tight layout.

    Raises:
        ImportError: matplotlib is not installed.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, tight_layout=True)


def save_png(fig: Any, path: Union[str, Path], dpi: int = 150) -> Path:
    """Write ``fig`` as a PNG of ``dpi`` dots per inch, atomically, creating the folder; returns ``path``."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
