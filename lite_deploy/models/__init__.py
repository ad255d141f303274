"""The model zoo (host side, needs torch): build models from yaml configs and load checkpoints.

Every model built here has ``task`` (``"detect"`` or ``"classify"``), ``names`` ({id: name}), ``stride`` and
``yaml`` (the config dict it was built from).

Example:
    >>> from lite_deploy.models import build_model, load_model
    >>> model = build_model("GSConv-yolov5n", nc=3)
    >>> model = load_model("runs/train/exp/weights/best.pt")   # YOLOv5, slim-neck or lite-deploy checkpoint
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Dict, List, Optional, Union

from torch import nn

from ..errors import ConfigError
from . import (
    backbones,  # noqa: F401  (registers the backbone modules for yaml use)
    centernet,  # noqa: F401  (registers CenterNetHead for yaml use)
)
from .yolo import ClassificationModel, DetectionModel, model_from_yaml

CFG_DIR = Path(__file__).resolve().parent / "cfg"

__all__ = ["build_model", "load_model", "list_configs", "load_yaml", "DetectionModel", "ClassificationModel"]


def list_configs() -> List[str]:
    """Names of the bundled model configs (``build_model`` accepts each), sorted."""
    return sorted(p.stem for p in CFG_DIR.glob("*.yaml"))


def load_yaml(cfg: Union[str, Path, Dict[str, Any]]) -> Dict[str, Any]:
    """A model config as a dict: from a dict (copied), a yaml file path, or a bundled config name.

    Raises:
        ConfigError: the file does not exist, is not valid yaml, or the name is not bundled.
    """
    if isinstance(cfg, dict):
        return copy.deepcopy(cfg)
    import yaml

    path = Path(cfg)
    if not path.suffix and not path.exists():
        path = CFG_DIR / f"{cfg}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown model config {str(cfg)!r}; bundled configs: {', '.join(list_configs())}")
    if not path.is_file():
        raise ConfigError(f"model config {str(cfg)!r} does not exist; give a yaml file or a bundled config name")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid yaml: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping with 'nc', 'backbone' and 'head'")
    data.setdefault("yaml_file", path.name)
    return data


def build_model(cfg: Union[str, Path, Dict[str, Any]], nc: Optional[int] = None, ch: int = 3) -> nn.Module:
    """Build a freshly initialised model (training mode, float32).

    Args:
        cfg: a yaml path, a bundled config name (see :func:`list_configs`, e.g. ``"yolov5n"``) or a config dict.
        nc: number of classes, overriding the config's ``nc``.
        ch: input channels.

    Raises:
        ConfigError: the config is missing or malformed.
    """
    return model_from_yaml(load_yaml(cfg), ch=ch, nc=nc)


def load_model(path: Union[str, Path], *, shuffle: Optional[str] = None) -> nn.Module:
    """Load any supported checkpoint as a float32 model in eval mode.

    Supported: this project's checkpoints (:func:`lite_deploy.models.checkpoint.save_checkpoint`), YOLOv5
    v6.0-v7.0 ``train.py`` checkpoints and slim-neck (GSConv) yolov5-fork checkpoints. Whole-module pickles are
    read through an allowlist; nothing else in them is executed.

    Args:
        path: the weights file.
        shuffle: GSConv shuffle variant (``"evenodd"`` or ``"interleave"``) for third-party checkpoints whose
            variant cannot be inferred.

    Raises:
        CheckpointError: missing, corrupt or unsupported file, or a GSConv shuffle that must be given.
        UnsafeCheckpointError: the pickle references a global outside the allowlist.
    """
    from .checkpoint import load_checkpoint

    return load_checkpoint(path, shuffle=shuffle)
