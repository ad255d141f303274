"""Checkpoints: this project's own format, and safe loading of YOLOv5 / slim-neck ``train.py`` checkpoints.

Own format (:func:`save_checkpoint`): a dict of plain data (state_dict, yaml dict, names, strides, anchors, input
size, provenance, format version) that ``torch.load(path, weights_only=True)`` reads.

YOLOv5 v6.0-v7.0 and slim-neck fork checkpoints are pickles of whole modules. They are read with an allowlisted
unpickler: every global the pickle names is checked before anything is built. Known model classes become inert
stand-ins that only record their attributes; any other global raises :class:`UnsafeCheckpointError` before a single
object of the file is constructed. The model is then rebuilt from the pickled ``yaml`` dict with this project's
parser and the recorded state_dict is loaded strictly (anchors come from the checkpoint, never from the yaml).
"""

from __future__ import annotations

import collections
import copy
import io
import pathlib
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Union

import torch
from torch import nn

from ..errors import CheckpointError, LiteDeployError, UnsafeCheckpointError
from ..spec import atomic_write_bytes
from .gsconv import SHUFFLES
from .heads import Detect
from .registry import MODULES
from .yolo import model_from_yaml

FORMAT = "lite-deploy.checkpoint"
FORMAT_VERSION = 1

# --------------------------------------------------------------------------------------------------------------
# allowlist of the globals a YOLOv5 / slim-neck pickle may name

# model classes of YOLOv5 v6.0-v7.0, the slim-neck fork and YOLOv5-Lite: replaced by inert stand-ins
_MODEL_CLASSES = {
    "models.yolo": {"Model", "DetectionModel", "Detect", "Segment", "ClassificationModel", "BaseModel"},
    "models.common": {
        "Conv", "C3", "Bottleneck", "SPPF", "SPP", "Focus", "Concat", "BottleneckCSP", "DWConv", "GhostConv",
        "GhostBottleneck", "C3Ghost", "C3TR", "TransformerBlock", "TransformerLayer", "C3SPP", "C3x", "CrossConv",
        "Contract", "Expand", "Proto", "Classify", "DWConvTranspose2d", "AutoShape",
        "GSConv", "GSConvns", "GSBottleneck", "GSBottleneckC", "VoVGSCSP", "VoVGSCSPC",
    },
    "models.experimental": {"MixConv2d", "CrossConv", "Sum", "GhostConv", "GhostBottleneck", "Ensemble"},
    "utils.activations": {"MemoryEfficientMish", "Mish", "SiLU", "Hardswish", "FReLU"},
}
_TORCH_NN_CLASSES = {
    "Sequential", "ModuleList", "ModuleDict", "Conv2d", "ConvTranspose2d", "BatchNorm2d", "SiLU", "Mish", "ReLU",
    "ReLU6", "Hardswish", "Hardsigmoid", "Sigmoid", "LeakyReLU", "Tanh", "GELU", "Identity", "Linear", "Dropout",
    "MaxPool2d", "AvgPool2d", "AdaptiveAvgPool2d", "Upsample", "Flatten",
}
_TORCH_FUNCTIONS = {"_rebuild_tensor_v2", "_rebuild_parameter", "_rebuild_parameter_with_state", "_rebuild_tensor"}
_NUMPY = {
    ("numpy._core.multiarray", "scalar"), ("numpy._core.multiarray", "_reconstruct"), ("numpy", "dtype"),
    ("numpy", "ndarray"),
}
_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex}


def _path_to_str(*parts: str) -> str:
    """Unpickled ``pathlib`` paths become strings (pickles from another OS would not load otherwise)."""
    return str(pathlib.PurePath(*parts)) if parts else ""


class _StandIn:
    """Inert replacement of a pickled module: records its attributes, runs nothing."""

    path = ""

    def __new__(cls, *args: Any, **kwargs: Any) -> "_StandIn":
        return object.__new__(cls)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple) and len(state) == 2:  # (dict, slots)
            state = {**(state[0] or {}), **(state[1] or {})}
        if isinstance(state, dict):
            self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"<stand-in {self.path}>"


_STAND_INS: Dict[str, type] = {}


def _stand_in(path: str) -> type:
    if path not in _STAND_INS:
        _STAND_INS[path] = type(path.rsplit(".", 1)[-1], (_StandIn,), {"path": path})
    return _STAND_INS[path]


def _resolve_global(module: str, name: str) -> Any:
    """The object an allowlisted pickle global stands for.

    Raises:
        UnsafeCheckpointError: the global is not on the allowlist.
    """
    module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
    if module.startswith("numpy.core"):
        module = "numpy._core" + module[len("numpy.core"):]
    registered = {n for n in MODULES if "." not in n}
    if name in _MODEL_CLASSES.get(module, ()) or (module.startswith("models.") and name in registered):
        return _stand_in(f"{module}.{name}")
    if module.startswith("torch.nn.modules.") and name in _TORCH_NN_CLASSES:
        return _stand_in(f"{module}.{name}")
    if module.startswith("torchvision.") and _is_torchvision_module(module, name):
        return _stand_in(f"{module}.{name}")
    if module == "torch._utils" and name in _TORCH_FUNCTIONS:
        return getattr(torch._utils, name)
    if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
        return getattr(torch, name)
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "builtins" and name in _BUILTINS:
        return _BUILTINS[name]
    if module == "pathlib" and name in {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"}:
        return _path_to_str
    if (module, name) in _NUMPY:
        import numpy

        return getattr(numpy._core.multiarray, name) if module != "numpy" else getattr(numpy, name)
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy.dtypes

        return getattr(numpy.dtypes, name)
    raise UnsafeCheckpointError(
        f"refusing to load: the pickle asks for the global '{module}.{name}', which is not on the allowlist of "
        "YOLOv5 / slim-neck model classes; nothing from the file was executed"
    )


def _is_torchvision_module(module: str, name: str) -> bool:
    if not (module.startswith("torchvision.models.") or module.startswith("torchvision.ops.")):
        return False
    import importlib

    try:
        obj = getattr(importlib.import_module(module), name, None)
    except ImportError:
        return name in {"ConvNormActivation", "Conv2dNormActivation"}  # renamed across torchvision versions
    return isinstance(obj, type) and issubclass(obj, nn.Module)


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        return _resolve_global(module, name)


# the ``pickle_module`` handed to torch.load: torch subclasses ``Unpickler`` and calls ``load`` for legacy files
_safe_pickle = types.SimpleNamespace(
    __name__="lite_deploy_safe_pickle",
    Unpickler=_SafeUnpickler,
    load=lambda f, **kw: _SafeUnpickler(f, **kw).load(),
    UnpicklingError=pickle.UnpicklingError,
)


# --------------------------------------------------------------------------------------------------------------
# own format


def _plain(obj: Any) -> Any:
    """Deep copy of ``obj`` as plain data (dict/list/str/int/float/bool/None) for ``weights_only`` loading."""
    if isinstance(obj, Mapping):
        return {(_plain(k) if not isinstance(k, (str, int)) else k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    return str(obj)


def save_checkpoint(
    model: nn.Module,
    path: Union[str, Path],
    *,
    imgsz: Union[int, List[int]],
    provenance: Optional[Dict[str, Any]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model`` in this project's checkpoint format, atomically.

    Args:
        model: a model of this zoo: a yaml-built detector / classifier (has ``yaml``) or a
            :func:`~lite_deploy.models.backbones.build_classifier` classifier (has ``config``).
        path: destination file (``.pt``).
        imgsz: training / intended input size, an int or [height, width] in pixels.
        provenance: plain data about where the weights come from (source file, hash, dataset, epochs ...).
        extra: other plain data to keep.

    Returns:
        The written path.
    """
    cfg = getattr(model, "yaml", None)
    classifier = getattr(model, "config", None)
    if not isinstance(cfg, dict) and not (isinstance(classifier, dict) and classifier.get("arch")):
        raise ValueError(
            "save_checkpoint needs a model of this zoo: built by build_model (it has a 'yaml' config) or by "
            "build_classifier (it has a 'config' with 'arch')"
        )
    head = model.model[-1] if hasattr(model, "model") else None
    anchors = (head.anchors * head.stride.view(-1, 1, 1)).tolist() if isinstance(head, Detect) else None
    hw = [int(imgsz), int(imgsz)] if isinstance(imgsz, int) else [int(v) for v in imgsz]
    data = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "task": getattr(model, "task", "detect"),
        "yaml": _plain(cfg) if isinstance(cfg, dict) else None,
        "classifier": None if isinstance(cfg, dict) else _plain(classifier),
        "names": {int(k): str(v) for k, v in dict(model.names).items()},
        "stride": [float(s) for s in getattr(model, "stride", [])],
        "anchors": anchors,
        "imgsz": hw,
        "provenance": _plain(provenance or {}),
        "extra": _plain(extra or {}),
        "state_dict": {k: v.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
                       for k, v in model.state_dict().items()},
    }
    buffer = io.BytesIO()
    torch.save(data, buffer)
    atomic_write_bytes(path, buffer.getvalue())
    return Path(path)


# --------------------------------------------------------------------------------------------------------------
# loading


def read_checkpoint(path: Union[str, Path]) -> Any:
    """Unpickle a weights file through the allowlist (tensors on the CPU).

    Raises:
        CheckpointError: the file is missing or not a readable torch file.
        UnsafeCheckpointError: the pickle names a global outside the allowlist.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {str(path)!r} does not exist")
    try:
        return torch.load(path, map_location="cpu", pickle_module=_safe_pickle, weights_only=False)
    except LiteDeployError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError,
            AttributeError, TypeError, IndexError, ImportError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def load_checkpoint(path: Union[str, Path], *, shuffle: Optional[str] = None) -> nn.Module:
    """Load this project's, YOLOv5's or the slim-neck fork's checkpoint as a float32 model in eval mode.

    Args:
        path: the weights file.
        shuffle: GSConv shuffle (``"evenodd"`` / ``"interleave"``) when the checkpoint cannot tell.

    Raises:
        CheckpointError: missing, corrupt or unsupported file; state that does not fit the rebuilt model.
        UnsafeCheckpointError: the pickle names a global outside the allowlist.
    """
    if shuffle is not None and shuffle not in SHUFFLES:
        raise ValueError(f"shuffle must be one of {SHUFFLES}, got {shuffle!r}")
    ckpt = read_checkpoint(path)
    if isinstance(ckpt, dict) and ckpt.get("format") == FORMAT:
        model = _from_own(ckpt, path, shuffle)
    elif isinstance(ckpt, dict) and isinstance(ckpt.get("ema") or ckpt.get("model"), _StandIn):
        model = _from_yolov5(ckpt.get("ema") or ckpt["model"], path, shuffle)
    elif isinstance(ckpt, _StandIn):
        model = _from_yolov5(ckpt, path, shuffle)
    else:
        raise CheckpointError(
            f"{path} is neither a lite-deploy nor a YOLOv5 / slim-neck train.py checkpoint (found "
            f"{type(ckpt).__name__}{' with keys ' + ', '.join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else ''})"
        )
    return model.float().eval()


def _from_own(ckpt: Dict[str, Any], path: Union[str, Path], shuffle: Optional[str]) -> nn.Module:
    if int(ckpt.get("format_version", 0)) > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format version {ckpt['format_version']}; this lite-deploy reads up to "
            f"{FORMAT_VERSION}, so upgrade lite-deploy"
        )
    names = {int(k): str(v) for k, v in ckpt["names"].items()}
    if ckpt.get("yaml") is None and ckpt.get("classifier"):
        from .backbones import build_classifier

        options = dict(ckpt["classifier"])
        model = build_classifier(options.pop("arch"), names=names, **options)
    else:
        cfg = copy.deepcopy(ckpt["yaml"])
        if shuffle is not None:
            cfg["gsconv_shuffle"] = shuffle
        model = model_from_yaml(cfg, ch=int(cfg.get("ch", 3)))
    _load_state(model, ckpt["state_dict"], path)
    model.names = names
    return model


def _state_of(obj: _StandIn, prefix: str = "") -> Dict[str, torch.Tensor]:
    """The state_dict a pickled module would have produced."""
    d = obj.__dict__
    out: Dict[str, torch.Tensor] = {}
    for k, v in (d.get("_parameters") or {}).items():
        if v is not None:
            out[prefix + k] = v.detach()
    skip = d.get("_non_persistent_buffers_set") or set()
    for k, v in (d.get("_buffers") or {}).items():
        if v is not None and k not in skip:
            out[prefix + k] = v
    for k, m in (d.get("_modules") or {}).items():
        if isinstance(m, _StandIn):
            out.update(_state_of(m, f"{prefix}{k}."))
    return out


def _walk(obj: _StandIn):
    yield obj
    for m in (obj.__dict__.get("_modules") or {}).values():
        if isinstance(m, _StandIn):
            yield from _walk(m)


def _activation_name(root: _StandIn) -> Optional[str]:
    """The yaml ``activation`` matching the pickled ``Conv`` modules' activation (None: not determinable)."""
    counts: Dict[str, int] = collections.Counter()
    for m in _walk(root):
        if m.path.endswith(".Conv"):
            act = (m.__dict__.get("_modules") or {}).get("act")
            if isinstance(act, _StandIn) and not act.path.endswith(".Identity"):
                cls = act.path.rsplit(".", 1)[-1]
                if cls == "MemoryEfficientMish":
                    cls = "Mish"
                if cls == "LeakyReLU":
                    cls = f"LeakyReLU({act.__dict__.get('negative_slope', 0.01)})"
                counts[f"nn.{cls}"] += 1
    return max(counts, key=counts.get) if counts else None


def _gsconv_shuffle(root: _StandIn, activation: Optional[str], shuffle: Optional[str], path) -> Optional[str]:
    paths = {m.path for m in _walk(root)}
    if not any(p.rsplit(".", 1)[-1] in {"GSConv", "GSBottleneck", "VoVGSCSP", "VoVGSCSPC"} for p in paths):
        return shuffle
    if shuffle is not None:
        return shuffle
    if activation == "nn.Mish" and root.path == "models.yolo.Model" and "models.common.GSConv" in paths:
        return "evenodd"  # the slim-neck yolov5 fork
    raise CheckpointError(
        f"{path} contains GSConv layers whose channel shuffle cannot be inferred; pass shuffle='evenodd' (slim-neck "
        "yolov5 fork, 3-D shuffle) or shuffle='interleave' (paper code / ultralytics port, 5-D shuffle)"
    )


def _from_yolov5(root: _StandIn, path: Union[str, Path], shuffle: Optional[str]) -> nn.Module:
    cfg = root.__dict__.get("yaml")
    if not isinstance(cfg, dict):
        raise CheckpointError(f"{path}: the pickled model has no 'yaml' config dict, so it cannot be rebuilt")
    cfg = copy.deepcopy(cfg)
    cfg.pop("yaml_file", None)
    if not cfg.get("activation"):
        activation = _activation_name(root)
        if activation:
            cfg["activation"] = activation
    variant = _gsconv_shuffle(root, cfg.get("activation"), shuffle, path)
    if variant:
        cfg["gsconv_shuffle"] = variant
    try:
        model = model_from_yaml(cfg, ch=int(cfg.get("ch", 3)))
    except LiteDeployError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model from the pickled yaml: {exc}") from None
    state = {k: v for k, v in _state_of(root).items() if not k.endswith(".anchor_grid")}  # YOLOv5 <= v5 buffer
    _load_state(model, state, path)
    if "stride" in root.__dict__ and isinstance(root.stride, torch.Tensor):
        if not torch.allclose(root.stride.float(), model.stride):
            raise CheckpointError(f"{path}: pickled strides {root.stride.tolist()} differ from the rebuilt model's")
    names = root.__dict__.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if isinstance(names, dict) and len(names) == model.nc:
        model.names = {int(k): str(v) for k, v in names.items()}
    model.yaml = cfg
    return model


def _load_state(model: nn.Module, state: Mapping[str, torch.Tensor], path: Union[str, Path]) -> None:
    """``load_state_dict(strict=True)`` (values cast to float32), any mismatch as a CheckpointError."""
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n", 2)[:2]
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model: {' '.join(first)[:400]}") from None
    for m in model.modules():
        if isinstance(m, Detect):
            m.reset_grids()
