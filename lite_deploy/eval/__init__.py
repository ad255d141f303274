"""Evaluation: COCO-style detection metrics and validation of models and artifacts on a dataset."""
