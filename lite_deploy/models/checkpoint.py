"""Checkpoints: this project's own format, and safe loading of YOLOv5 / slim-neck ``train.py`` checkpoints.

Own format (:func:`save_checkpoint`): a dict of plain data (state_dict, yaml dict, names, strides, anchors, training
input size ``imgsz``, serving input size ``serve_imgsz``, provenance, format version) that
``torch.load(path, weights_only=True)`` reads. Files written before ``serve_imgsz`` existed serve at ``imgsz``.

YOLOv5 v6.0-v7.0 and slim-neck fork checkpoints are pickles of whole modules. They are read with an allowlisted
unpickler: every global the pickle names is checked before anything is built. Known model classes become inert
stand-ins that only record their attributes; any other global raises :class:`UnsafeCheckpointError` before a single
object of the file is constructed. The model is then rebuilt from the pickled ``yaml`` dict with this project's
parser and the recorded state_dict is loaded strictly (anchors come from the checkpoint, never from the yaml).

Before any torch call, :func:`~lite_deploy.models.archive.check_weights_file` refuses TorchScript archives and any
other container than a plain ``torch.save`` file. While unpickling, every storage must fit in the file and every
tensor's declared shape stays under :data:`MAX_TENSOR_ELEMENTS`; the state is compared with the rebuilt model's
shapes before anything is cast or copied, so a hostile file cannot make the loader allocate more than the model.
Training checkpoints (``last.pt`` with optimizer state) may hold numpy scalars and arrays of numeric dtypes, as
torch's own ``weights_only`` loader allows; object dtypes stay refused.
"""

from __future__ import annotations

import collections
import copy
import io
import math
import pathlib
import pickle
import types
import zipfile
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

import torch
from torch import nn

from ..boxes import to_hw
from ..errors import CheckpointError, LiteDeployError, UnsafeCheckpointError
from ..io import atomic_write_bytes
from .archive import check_weights_file, is_plain_layout, is_zip
from .gsconv import SHUFFLES
from .heads import Detect
from .registry import MODULES
from .yolo import MAX_PARAMS, model_from_yaml

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
_BUILTINS = {"set": set, "frozenset": frozenset, "slice": slice, "complex": complex}

MAX_TENSOR_ELEMENTS = 1 << 28
"""Most elements one pickled tensor may declare (1 GiB of float32), far above any layer of a detector or classifier."""


def _refuse_layout(what: str) -> CheckpointError:
    return CheckpointError(
        f"refusing to load: {what}, which no real checkpoint holds; the file is corrupt or hostile"
    )


def _check_tensor_layout(size: Any, stride: Any, offset: Any) -> None:
    """Refuse a pickled tensor whose shape is malformed or declares more than :data:`MAX_TENSOR_ELEMENTS`."""
    ints = (isinstance(size, (tuple, list)) and isinstance(stride, (tuple, list)) and len(size) == len(stride)
            and all(type(v) is int and v >= 0 for v in (*size, *stride, offset)))
    if not ints:
        raise _refuse_layout(f"a tensor declares the shape {size!r} with strides {stride!r}")
    numel = math.prod(size)
    if numel > MAX_TENSOR_ELEMENTS:
        raise _refuse_layout(f"a tensor declares the shape {tuple(size)} ({numel:,} elements, the limit is "
                             f"{MAX_TENSOR_ELEMENTS:,})")


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None) -> torch.Tensor:
    _check_tensor_layout(size, stride, storage_offset)
    if backward_hooks:
        raise _refuse_layout("a tensor carries backward hooks")
    return torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, bool(requires_grad),
                                           collections.OrderedDict(), metadata)


def _rebuild_tensor(storage, storage_offset, size, stride) -> torch.Tensor:
    _check_tensor_layout(size, stride, storage_offset)
    return torch._utils._rebuild_tensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, state=None) -> torch.Tensor:
    if not isinstance(data, torch.Tensor) or backward_hooks:
        raise _refuse_layout("a parameter wraps something other than a plain tensor")
    return torch.nn.Parameter(data, bool(requires_grad))


_TORCH_FUNCTIONS = {"_rebuild_tensor_v2": _rebuild_tensor_v2, "_rebuild_tensor": _rebuild_tensor,
                    "_rebuild_parameter": _rebuild_parameter, "_rebuild_parameter_with_state": _rebuild_parameter}


# numpy in training checkpoints (YOLOv5's best_fitness): numeric scalars and arrays only, as torch's weights_only
def _ndarray(*args: Any, **kwargs: Any) -> Any:
    """Stands for ``numpy.ndarray``, which a pickle may only hand to ``_reconstruct``, never call."""
    raise _refuse_layout("the pickle calls numpy.ndarray directly")


def _numeric(dtype: Any) -> Any:
    import numpy

    if not isinstance(dtype, numpy.dtype) or dtype.kind not in "biufc" or dtype.hasobject or dtype.fields:
        raise UnsafeCheckpointError(
            f"refusing to load: the pickle asks for a numpy value of dtype {dtype!r}; only numeric numpy "
            "scalars and arrays are allowed, nothing from the file was executed"
        )
    return dtype


def _np_dtype(spec: Any, align: bool = False, copy: bool = False) -> Any:
    import numpy

    if not isinstance(spec, str):
        raise _refuse_layout(f"a numpy dtype is described by {type(spec).__name__}")
    return _numeric(numpy.dtype(spec, bool(align), bool(copy)))


def _np_scalar(dtype: Any, data: Any = None) -> Any:
    import numpy

    if not isinstance(data, bytes) or len(data) != _numeric(dtype).itemsize:
        raise _refuse_layout(f"a numpy scalar of {dtype!r} carries {type(data).__name__} data")
    return numpy._core.multiarray.scalar(dtype, data)


def _np_reconstruct(subtype: Any, shape: Any, dtype_code: Any) -> Any:
    import numpy

    # numpy pickles (ndarray, (0,), b'b')
    if subtype is not _ndarray or not isinstance(shape, tuple) or shape != (0,) or dtype_code != b"b":
        raise _refuse_layout(f"a numpy array is reconstructed as {shape!r:.40} of another class than ndarray or of "
                             "another shape than numpy's empty (0,)")
    return numpy._core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")


def _latin1(text: Any, encoding: str = "latin1") -> bytes:
    """``_codecs.encode`` as protocol-2 pickles use it for bytes (``encode(str, 'latin1')``)."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise _refuse_layout("a bytes value is encoded in another way than latin1")
    return text.encode("latin1")


def _numpy_global(module: str, name: str) -> Any:
    """The stand-in for an allowed numpy / _codecs global (None: not allowed)."""
    if module == "_codecs" and name == "encode":
        return _latin1
    allowed = {("numpy._core.multiarray", "scalar"): _np_scalar, ("numpy._core.multiarray", "_reconstruct"):
               _np_reconstruct, ("numpy", "dtype"): _np_dtype, ("numpy", "ndarray"): _ndarray}
    if (module, name) in allowed:
        return allowed[module, name]
    if module == "numpy.dtypes" and name.endswith("DType"):
        import numpy
        import numpy.dtypes

        cls = getattr(numpy.dtypes, name, None)
        if isinstance(cls, type) and issubclass(getattr(cls, "type", type), (numpy.number, numpy.bool_)):
            return cls
    return None


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
        return _TORCH_FUNCTIONS[name]
    if module == "torch" and (name == "Size" or isinstance(getattr(torch, name, None), torch.dtype)):
        return getattr(torch, name)
    if module == "collections" and name == "OrderedDict":
        return collections.OrderedDict
    if module == "builtins" and name in _BUILTINS:
        return _BUILTINS[name]
    if module == "pathlib" and name in {"PosixPath", "WindowsPath", "PurePosixPath", "PureWindowsPath", "Path"}:
        return _path_to_str
    allowed = _numpy_global(module, name)
    if allowed is not None:
        return allowed
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


def _bounded_persistent_load(inner: Any, limit: int) -> Any:
    """torch's ``persistent_load``, called only for storages whose declared size fits in ``limit`` bytes."""

    def load(pid: Any) -> Any:
        kind = pid[0] if isinstance(pid, tuple) and len(pid) in (5, 6) else None
        if kind not in ("storage", b"storage") or inner is None:
            raise _refuse_layout(f"the pickle references an unknown persistent record {str(pid)[:80]}")
        storage_type, numel = pid[1], pid[4]
        dtype = torch.uint8 if storage_type is torch.UntypedStorage else getattr(storage_type, "dtype", None)
        if not isinstance(dtype, torch.dtype) or type(numel) is not int or numel < 0:
            raise _refuse_layout(f"a storage is declared as {str(pid)[:80]}")
        if numel * torch._utils._element_size(dtype) > limit:
            raise _refuse_layout(f"a storage declares {numel:,} elements of {dtype}, more than the file's {limit:,} "
                                 "bytes hold")
        return inner(pid)

    return load


def _safe_pickle(limit: int) -> types.SimpleNamespace:
    """The ``pickle_module`` handed to torch.load: the allowlist, and storages of at most ``limit`` bytes.

    torch subclasses ``Unpickler`` (zip files) or calls ``load`` (legacy files), and sets ``persistent_load`` on
    the unpickler before loading; ``load`` wraps it with the size check.
    """

    class SafeUnpickler(pickle.Unpickler):
        def find_class(self, module: str, name: str) -> Any:
            return _resolve_global(module, name)

        def load(self) -> Any:
            self.persistent_load = _bounded_persistent_load(getattr(self, "persistent_load", None), limit)
            return super().load()

    return types.SimpleNamespace(
        __name__="lite_deploy_safe_pickle",
        Unpickler=SafeUnpickler,
        load=lambda f, **kw: SafeUnpickler(f, **kw).load(),
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
    serve_imgsz: Union[int, List[int], None] = None,
    provenance: Optional[Dict[str, Any]] = None,
    extra: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write ``model`` in this project's checkpoint format, atomically.

    Args:
        model: a model of this zoo: a yaml-built detector / classifier (has ``yaml``) or a
            :func:`~lite_deploy.models.backbones.build_classifier` classifier (has ``config``).
        path: destination file (``.pt``).
        imgsz: training input size, an int or [height, width] in pixels.
        serve_imgsz: the input size the model is meant to run at (what ``val``, ``predict`` and ``export`` use
            when not told), an int or [height, width] in pixels; default ``imgsz``.
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
    hw = list(to_hw(imgsz))
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
        "serve_imgsz": list(to_hw(serve_imgsz if serve_imgsz is not None else imgsz)),
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


def _torch_zip_records(path: Path) -> List[str]:
    """The records torch.load's own zip reader sees (it dispatches to torch.jit.load on ``constants.pkl``)."""
    try:
        return list(torch._C.PyTorchFileReader(str(path)).get_all_records())
    except RuntimeError as exc:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint (broken zip: {str(exc)[:200]})") from None


def read_checkpoint(path: Union[str, Path]) -> Any:
    """Unpickle a weights file through the allowlist (tensors on the CPU), after checking its container.

    Raises:
        CheckpointError: the file is missing, not a readable torch file, or declares tensors beyond the bounds.
        UnsafeCheckpointError: a TorchScript archive or other zip layout, or a pickle global outside the allowlist.
    """
    path = Path(path)
    check_weights_file(path)
    if is_zip(path) and not is_plain_layout(_torch_zip_records(path)):
        raise UnsafeCheckpointError(
            f"refusing to load {path}: torch's zip reader finds other entries in it than Python's zipfile does, "
            "which no torch.save file shows; give a checkpoint written by torch.save"
        )
    try:
        return torch.load(path, map_location="cpu", pickle_module=_safe_pickle(path.stat().st_size),
                          weights_only=False)
    except LiteDeployError:
        raise
    except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError, zipfile.BadZipFile, OSError, KeyError,
            AttributeError, TypeError, IndexError, ImportError) as exc:
        raise CheckpointError(
            f"{path} is not a readable PyTorch checkpoint ({type(exc).__name__}: {str(exc)[:200]})"
        ) from None


def serving_imgsz(path: Union[str, Path]) -> Optional[Tuple[int, int]]:
    """The ``(height, width)`` in pixels a checkpoint is meant to run at, or None when it does not say.

    This project's checkpoints record ``serve_imgsz``; those written before it serve at their training ``imgsz``.
    YOLOv5 / slim-neck checkpoints record neither (None).

    Raises:
        CheckpointError: the file is missing or not a readable checkpoint.
    """
    ckpt = read_checkpoint(path)
    if not (isinstance(ckpt, dict) and ckpt.get("format") == FORMAT):
        return None
    for key in ("serve_imgsz", "imgsz"):
        size = ckpt.get(key)
        if isinstance(size, (list, tuple)) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
            return int(size[0]), int(size[1])
    return None


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
            f"{type(ckpt).__name__}"
            f"{' with keys ' + ', '.join(map(str, list(ckpt)[:8])) if isinstance(ckpt, dict) else ''})"
        )
    return model.float().eval()


def _names(value: Any, path: Union[str, Path]) -> Dict[int, str]:
    """Class names as {id: name} from a list or a dict with integer keys (YOLOv5 writes either)."""
    if isinstance(value, (list, tuple)):
        value = dict(enumerate(value))
    if isinstance(value, Mapping) and all(isinstance(k, int) or (isinstance(k, str) and k.isdigit()) for k in value):
        return {int(k): str(v) for k, v in value.items()}
    raise CheckpointError(f"{path}: 'names' must be a list of class names or an {{id: name}} dict, got {value!r:.80}")


def _classifier(options: Any, names: Dict[int, str], path: Union[str, Path]) -> nn.Module:
    """The zoo classifier a checkpoint's ``classifier`` options describe, its size counted on the meta device first."""
    from .backbones import build_classifier

    options = dict(options)
    arch = options.pop("arch")
    if options.get("num_classes", 1000) != len(names):
        raise CheckpointError(f"{path}: its classifier has num_classes {options.get('num_classes')!r:.40} but "
                              f"{len(names)} class names; the file is corrupt")
    try:
        with torch.device("meta"):
            size = sum(p.numel() for p in build_classifier(arch, names=names, **options).parameters())
        if size > MAX_PARAMS:
            raise CheckpointError(f"{path}: its classifier options {options} build {size:,} parameters, more than the "
                                  f"limit of {MAX_PARAMS:,}; the file is corrupt or hostile")
        return build_classifier(arch, names=names, **options)
    except (TypeError, ValueError, KeyError, RuntimeError) as exc:
        raise CheckpointError(
            f"{path}: cannot rebuild its classifier {arch!r} from the options {options}: {exc}"
        ) from None


def _from_own(ckpt: Dict[str, Any], path: Union[str, Path], shuffle: Optional[str]) -> nn.Module:
    version = ckpt.get("format_version", 0)
    if not isinstance(version, int):
        raise CheckpointError(f"{path}: its format_version {version!r} is not a number; the file is corrupt")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} uses checkpoint format version {version}; this lite-deploy reads up to "
            f"{FORMAT_VERSION}, so upgrade lite-deploy"
        )
    names = _names(ckpt.get("names"), path)
    cfg, classifier = ckpt.get("yaml"), ckpt.get("classifier")
    if cfg is None and isinstance(classifier, Mapping) and classifier.get("arch"):
        model = _classifier(classifier, names, path)
    else:
        cfg = copy.deepcopy(cfg)
        if shuffle is not None and isinstance(cfg, dict):
            cfg["gsconv_shuffle"] = shuffle
        try:
            model = model_from_yaml(cfg)
        except LiteDeployError as exc:
            raise CheckpointError(f"{path}: cannot rebuild its model from the stored yaml: {exc}") from None
    _load_state(model, ckpt.get("state_dict"), path)
    model.names = names
    return model


def _items(d: Dict[str, Any], key: str) -> List[Any]:
    """``d[key].items()``, or nothing when a hostile pickle put something else than a dict there."""
    value = d.get(key)
    return list(value.items()) if isinstance(value, Mapping) else []


def _state_of(obj: _StandIn, prefix: str = "") -> Dict[str, Any]:
    """The state_dict a pickled module would have produced (non-tensors are kept for :func:`_load_state` to name)."""
    d = obj.__dict__
    out: Dict[str, Any] = {}
    for k, v in _items(d, "_parameters"):
        if v is not None:
            out[f"{prefix}{k}"] = v.detach() if isinstance(v, torch.Tensor) else v
    skip = d.get("_non_persistent_buffers_set")
    skip = skip if isinstance(skip, (set, frozenset)) else set()
    for k, v in _items(d, "_buffers"):
        if v is not None and k not in skip:
            out[f"{prefix}{k}"] = v
    for k, m in _items(d, "_modules"):
        if isinstance(m, _StandIn):
            out.update(_state_of(m, f"{prefix}{k}."))
    return out


def _check_tree(root: _StandIn, path: Union[str, Path]) -> None:
    """Refuse a pickled module graph that is cyclic, deeper than 64 levels or has more than 100,000 nodes."""
    stack, visits = [(root, 0)], 0
    while stack:
        module, depth = stack.pop()
        visits += 1
        if depth > 64 or visits > 100_000:
            raise CheckpointError(f"{path}: its pickled module tree is cyclic or implausibly large; the file is "
                                  "corrupt or hostile")
        stack.extend((m, depth + 1) for _, m in _items(module.__dict__, "_modules") if isinstance(m, _StandIn))


def _walk(obj: _StandIn):
    yield obj
    for _, m in _items(obj.__dict__, "_modules"):
        if isinstance(m, _StandIn):
            yield from _walk(m)


def _activation_name(root: _StandIn) -> Optional[str]:
    """The yaml ``activation`` matching the pickled ``Conv`` modules' activation (None: not determinable)."""
    counts: Dict[str, int] = collections.Counter()
    for m in _walk(root):
        if m.path.endswith(".Conv"):
            act = dict(_items(m.__dict__, "_modules")).get("act")
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
    _check_tree(root, path)
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
        model = model_from_yaml(cfg)
    except LiteDeployError as exc:
        raise CheckpointError(f"{path}: cannot rebuild its model from the pickled yaml: {exc}") from None
    state = {k: v for k, v in _state_of(root).items() if not k.endswith(".anchor_grid")}  # YOLOv5 <= v5 buffer
    _load_state(model, state, path)
    if "stride" in root.__dict__ and isinstance(root.stride, torch.Tensor):
        if root.stride.shape != model.stride.shape or not torch.allclose(root.stride.float(), model.stride):
            raise CheckpointError(f"{path}: pickled strides {root.stride.tolist()} differ from the rebuilt model's")
    names = root.__dict__.get("names")
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    if isinstance(names, dict) and len(names) == model.nc:
        model.names = {int(k): str(v) for k, v in names.items()}
    model.yaml = cfg
    return model


def _load_state(model: nn.Module, state: Any, path: Union[str, Path]) -> None:
    """``load_state_dict(strict=True)`` (values cast to float32), any mismatch as a CheckpointError.

    Keys and shapes are compared with the model's before anything is cast or copied: a tensor of a hostile file
    (e.g. a 1-element storage expanded to billions of elements) is refused before it is materialised.
    """
    expected = model.state_dict()
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{path}: its state_dict is a {type(state).__name__}, not a mapping of names to tensors")
    problems = [f"missing {k}" for k in expected if k not in state]
    problems += [f"unexpected {k}" for k in state if k not in expected]
    problems += [
        f"{k}: file {tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__} vs model "
        f"{tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and not (isinstance(v, torch.Tensor) and v.shape == expected[k].shape)
    ]
    if problems:
        raise CheckpointError(
            f"{path}: weights do not fit the rebuilt model ({len(problems)} problems: {'; '.join(problems[:3])})"
        )
    state = {k: (v.float() if v.is_floating_point() else v) for k, v in state.items()}
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).split("\n", 2)[:2]
        raise CheckpointError(f"{path}: weights do not fit the rebuilt model: {' '.join(first)[:400]}") from None
    for m in model.modules():
        if isinstance(m, Detect):
            m.reset_grids()
