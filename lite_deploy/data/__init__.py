"""Datasets: YOLO-format and COCO JSON readers, COCO writers and the synthetic shapes benchmark (numpy + OpenCV)."""

from __future__ import annotations

from .coco import CocoDataset, to_coco_gt, to_coco_predictions
from .dataset import DetectionDataset, Sample, Targets
from .yolo import DataConfig, DatasetIssue, YoloDataset, check_dataset, load_data_config

__all__ = [
    "CocoDataset",
    "DataConfig",
    "DatasetIssue",
    "DetectionDataset",
    "Sample",
    "Targets",
    "YoloDataset",
    "check_dataset",
    "load_data_config",
    "to_coco_gt",
    "to_coco_predictions",
]
