"""Build the :class:`~lite_deploy.spec.ModelSpec` of an artifact from the torch model it was exported from."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

from torch import nn

from ..spec import ModelSpec, file_sha256
from ..version import __version__

# The output tensor names every export uses, per output layout.
OUTPUT_NAMES = {
    "boxes_scores": ("boxes", "scores"),
    "logits": ("logits",),
    "nms": ("num_dets", "det_boxes", "det_scores", "det_classes"),
    "centernet": ("hm", "wh", "reg"),
}
INPUT_NAME = "images"

# distribution name -> key in ModelSpec.tool_versions
_TOOLS = {
    "torch": "torch",
    "onnx": "onnx",
    "onnxslim": "onnxslim",
    "onnxsim": "onnxsim",
    "openvino": "openvino",
    "litert-torch": "litert_torch",
    "tensorrt": "tensorrt",
}


def detect_head(model: nn.Module) -> Optional[nn.Module]:
    """The detection head of ``model``: its last submodule carrying ``anchors`` and ``stride``, or ``None``."""
    head = None
    for module in model.modules():
        if hasattr(module, "anchors") and hasattr(module, "stride") and module is not model:
            head = module
    return head


def class_names(model: nn.Module) -> Tuple[str, ...]:
    """Class names of ``model`` in id order (``.names`` as a dict id -> name or a list), else ``class0..``."""
    names = getattr(model, "names", None)
    if isinstance(names, Mapping):
        return tuple(str(names[k]) for k in sorted(names, key=int))
    if names:
        return tuple(str(n) for n in names)
    nc = int(getattr(model, "nc", 0) or getattr(detect_head(model), "nc", 0))
    return tuple(f"class{i}" for i in range(nc))


def output_layout(model: nn.Module) -> str:
    """The spec output layout of ``model``'s exports without in-graph NMS: ``logits`` for classifiers, the model's
    own ``output_layout`` where it declares one (``centernet``), else ``boxes_scores``."""
    if getattr(model, "task", None) == "classify":
        return "logits"
    return getattr(model, "output_layout", "boxes_scores")


def anchors_px(model: nn.Module) -> Tuple[Tuple[Tuple[Tuple[float, float], ...], ...], Tuple[int, ...]]:
    """Anchors in input pixels per level and the level strides, read from the model's detection head.

    Returns:
        ``(anchors, strides)``: anchors as ``((w, h), ...)`` per level (grid units times the level stride) and
        the strides of the ``nl`` levels; both empty for a model without a detection head.
    """
    head = detect_head(model)
    if head is None:
        return (), ()
    strides = [float(s) for s in head.stride.reshape(-1).tolist()]
    anchors = head.anchors.detach().float().reshape(len(strides), -1, 2).tolist()
    levels = tuple(tuple((w * s, h * s) for w, h in level) for level, s in zip(anchors, strides))
    return levels, tuple(int(round(s)) for s in strides)


def tool_versions(tools: Iterable[str]) -> Dict[str, str]:
    """Installed versions of ``tools`` (distribution names) that are installed, plus lite-deploy's own."""
    versions = {"lite_deploy": __version__}
    for dist in tools:
        try:
            versions[_TOOLS.get(dist, dist)] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe(
    model: nn.Module,
    *,
    imgsz: Sequence[int],
    target: str,
    batch: Optional[int] = 1,
    precision: str = "fp32",
    layout: str = "NCHW",
    nms: bool = False,
    source: Optional[Union[str, Path]] = None,
    tools: Iterable[str] = ("torch",),
    extra: Optional[Dict[str, Any]] = None,
) -> ModelSpec:
    """The spec of an artifact exported from ``model``.

    Args:
        model: the loaded torch model (before or after the export rewrites): ``.task``, ``.names``, ``.stride``,
            a detection head with ``.anchors`` in grid units (nl, na, 2) and ``.stride``; classifiers ``.mean`` /
            ``.std``.
        imgsz: network input (height, width) in pixels.
        target: ``onnx``, ``openvino``, ``tflite`` or ``tensorrt``.
        batch: fixed batch size, ``None`` for a dynamic batch axis.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``.
        layout: ``NCHW`` or ``NHWC`` of the image input.
        nms: the artifact ends in NMS (outputs ``num_dets``, ``det_boxes``, ``det_scores``, ``det_classes``).
        source: the weights file the model was loaded from (its name and hash are recorded), or ``None`` for a
            bundled config with random weights.
        tools: distribution names whose versions the artifact depends on.
        extra: format-specific facts.

    Returns:
        The :class:`ModelSpec`.
    """
    task = getattr(model, "task", None) or ("detect" if detect_head(model) is not None else "classify")
    source_name, source_hash = "", ""
    if source is not None and Path(source).is_file():
        source_name, source_hash = Path(source).name, file_sha256(source)
    elif source is not None:
        source_name = str(source)
    common = dict(
        names=class_names(model),
        imgsz=tuple(int(v) for v in imgsz),
        batch=batch,
        input_name=INPUT_NAME,
        layout=layout,
        precision=precision,
        source=source_name,
        source_sha256=source_hash,
        tool_versions=tool_versions(tools),
        target=target,
        extra=dict(extra or {}),
    )
    if task == "classify":
        return ModelSpec(
            task="classify",
            output_layout="logits",
            output_names=OUTPUT_NAMES["logits"],
            preprocess="center_crop",
            mean=tuple(getattr(model, "mean", (0.0, 0.0, 0.0))),
            std=tuple(getattr(model, "std", (1.0, 1.0, 1.0))),
            **common,
        )
    anchors, strides = anchors_px(model)
    stride = int(max(strides)) if strides else _max_stride(model)
    layout_name = "nms" if nms else output_layout(model)
    return ModelSpec(
        task="detect",
        output_layout=layout_name,
        output_names=OUTPUT_NAMES[layout_name],
        stride=stride,
        anchors=anchors,
        strides=strides or tuple(getattr(model, "output_strides", ())),
        **common,
    )


def _max_stride(model: nn.Module) -> int:
    stride = getattr(model, "stride", None)
    if stride is None:
        return 32
    return int(max(stride.reshape(-1).tolist())) if hasattr(stride, "reshape") else int(max(stride))
