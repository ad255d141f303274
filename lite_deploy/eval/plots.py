"""Plots of validation results (matplotlib, drawn off-screen)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Union

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
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 5), tight_layout=True)
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=150)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, buffer.getvalue())
    return path
