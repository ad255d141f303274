"""Load a local torchvision ImageNet state_dict into a zoo classifier or a detector's torchvision-style backbone.

The zoo's MobileNetV2, ShuffleNetV2 and SqueezeNet layers use torchvision's attribute names. A detector yaml
holds them as :class:`TorchvisionSlice` layers (``MobileNetV2Features`` …) whose own state_dict keys *are*
torchvision keys (``features.4.conv.0.0.weight``, ``stage3.0.branch1.0.weight``); loading strips the layer prefix
(``model.1.``) and matches the rest by name and shape. Nothing is downloaded: the caller passes a state_dict or
the path of a ``.pth`` file saved from torchvision.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Mapping, Tuple, Union

import torch
from torch import Tensor, nn

from ...errors import CheckpointError
from ..archive import check_weights_file
from .classifier import ImageClassifier

StateDictSource = Union[Mapping[str, Tensor], str, "os.PathLike[str]"]


class TorchvisionSlice(nn.Module):
    """Marker base of yaml backbone layers that hold a contiguous part of a torchvision model.

    Subclasses set ``torchvision_arch`` (e.g. ``"mobilenet_v2"``) and build their submodules under the same
    attribute names torchvision uses, so ``self.state_dict()`` keys are torchvision keys.
    """

    torchvision_arch: str = ""


@dataclass(frozen=True)
class TorchvisionLoadReport:
    """What :func:`load_torchvision_backbone` did, in torchvision key names.

    Attributes:
        matched: keys copied from the file into the model.
        missing: backbone keys of the model that the file lacks.
        mismatched: ``"key: file (shape) vs model (shape)"`` for backbone keys whose shapes differ.
        unexpected: keys of the file nothing in the model uses (e.g. the ImageNet classifier of a detector
            backbone, or torchvision layers beyond the detector's last backbone slice); a classifier head that
            ``new`` replaces is not repeated here.
        new: model parameters that are not torchvision's and keep their initialisation: a classifier head
            for another ``num_classes``, or a detector's neck and detection head (counted per layer prefix).
    """

    matched: Tuple[str, ...]
    missing: Tuple[str, ...]
    mismatched: Tuple[str, ...]
    unexpected: Tuple[str, ...]
    new: Tuple[str, ...]

    @property
    def ok(self) -> bool:
        """True when every backbone tensor was found with the right shape."""
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        """One paragraph for logs and the CLI."""
        lines = [f"loaded {len(self.matched)} torchvision tensors"]
        if self.new:
            lines.append(f"new (not in torchvision, left initialised): {', '.join(self.new)}")
        if self.unexpected:
            lines.append(f"unused from the file: {len(self.unexpected)} tensors ({_prefixes(self.unexpected)})")
        if self.missing:
            lines.append(f"missing from the file: {len(self.missing)} tensors ({_prefixes(self.missing)})")
        if self.mismatched:
            lines.append("shape mismatches: " + "; ".join(self.mismatched[:5]))
        return "\n".join(lines)


def _prefixes(keys: Tuple[str, ...]) -> str:
    """Distinct leading ``a.b`` parts of ``keys``, in order, for compact messages."""
    seen: Dict[str, None] = {}
    for key in keys:
        seen.setdefault(".".join(key.split(".")[:2]), None)
    return ", ".join(seen)


def read_state_dict(source: StateDictSource) -> Dict[str, Tensor]:
    """Return a state_dict given one, or read it from a ``.pth`` file without unpickling arbitrary objects.

    Raises:
        CheckpointError: the file is missing, is not a plain state_dict, or cannot be read safely.
    """
    if isinstance(source, Mapping):
        state = dict(source)
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise CheckpointError(f"{path} does not exist; pass the path of a torchvision .pth state_dict")
        check_weights_file(path)  # refuses TorchScript archives before torch sees the file
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # torch raises several types for corrupt or unsafe pickles
            raise CheckpointError(
                f"{path} could not be read as a tensor-only state_dict ({exc.__class__.__name__}); "
                "save it with torch.save(model.state_dict(), path)"
            ) from exc
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError("expected a torchvision state_dict (a mapping of names to tensors)")
    return dict(state)


def _targets(model: nn.Module) -> List[Tuple[str, nn.Module, Tuple[str, ...]]]:
    """(model prefix, module whose keys are torchvision keys, head prefixes allowed to differ)."""
    if isinstance(model, ImageClassifier):
        return [("", model, model.head_prefixes)]
    slices = [(f"{name}.", m, ()) for name, m in model.named_modules() if isinstance(m, TorchvisionSlice)]
    if not slices:
        raise ValueError(
            f"{type(model).__name__} has no torchvision-compatible layers; torchvision weights load into the zoo "
            "classifiers and into detectors built with MobileNetV2Features, ShuffleNetV2Features or "
            "SqueezeNetFeatures backbones"
        )
    archs = {m.torchvision_arch for _, m, _ in slices}
    if len(archs) > 1:
        raise ValueError(f"the model mixes torchvision backbones {sorted(archs)}; load each part separately")
    return slices


def load_torchvision_backbone(
    model: nn.Module, state_dict: StateDictSource, strict: bool = True
) -> TorchvisionLoadReport:
    """Copy torchvision ImageNet weights into a zoo classifier or into a detector's torchvision backbone slices.

    Args:
        model: an :class:`ImageClassifier` (its keys equal torchvision's; a head for another ``num_classes``
            stays new), or a detector whose backbone layers are :class:`TorchvisionSlice` modules (every other
            layer stays new).
        state_dict: the torchvision state_dict, or the path of a ``.pth`` file holding one.
        strict: raise when a backbone tensor is missing or has another shape (e.g. weights of another width);
            then nothing is copied.

    Returns:
        The report of matched, missing, mismatched, unexpected and new tensors.

    Raises:
        CheckpointError: ``strict`` and the file does not fit the backbone; the message is the report.
        ValueError: the model has no torchvision-compatible layers.
    """
    source = read_state_dict(state_dict)
    matched: List[str] = []
    missing: List[str] = []
    mismatched: List[str] = []
    new: List[str] = []
    replaced: List[str] = []  # file keys of a classifier head that a head for another num_classes replaces
    loads: List[Tuple[nn.Module, Dict[str, Tensor]]] = []
    for prefix, module, head_prefixes in _targets(model):
        chunk: Dict[str, Tensor] = {}
        for key, own in module.state_dict().items():
            is_head = key.startswith(head_prefixes) if head_prefixes else False
            theirs = source.get(key)
            if theirs is not None and theirs.shape == own.shape:
                chunk[key] = theirs
                matched.append(key)
            elif is_head:
                new.append(prefix + key)
                replaced.append(key)
            elif theirs is None:
                missing.append(key)
            else:
                mismatched.append(f"{key}: file {tuple(theirs.shape)} vs model {tuple(own.shape)}")
        loads.append((module, chunk))
    used = set(matched) | set(replaced)
    unexpected = tuple(k for k in source if k not in used)
    if not isinstance(model, ImageClassifier):
        backbone = {id(m) for m, _ in loads}
        for name, layer in _top_layers(model):
            if id(layer) not in backbone and any(p.numel() for p in layer.parameters()):
                new.append(name)
    report = TorchvisionLoadReport(tuple(matched), tuple(missing), tuple(mismatched), unexpected, tuple(new))
    if strict and not report.ok:
        raise CheckpointError(
            "the torchvision weights do not fit this backbone (wrong architecture or width?):\n" + report.summary()
        )
    for module, chunk in loads:
        module.load_state_dict(chunk, strict=False)
    return report


def _top_layers(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """The layers of a detector: the children of its ``model`` Sequential (YOLOv5 layout) or its children."""
    root = getattr(model, "model", None)
    if isinstance(root, nn.Sequential):
        return [(f"model.{name}", m) for name, m in root.named_children()]
    return list(model.named_children())
