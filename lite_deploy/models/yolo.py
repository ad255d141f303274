"""Model yaml parser with YOLOv5's ``parse_model`` semantics (no ``eval``) and the models built from it.

A model yaml is YOLOv5's: ``nc``, ``depth_multiple``, ``width_multiple``, ``anchors``, ``backbone`` and ``head``
lists of ``[from, number, module, args]``, plus two optional keys:

- ``activation``: the activation of every conv, e.g. ``nn.SiLU`` (default), ``nn.Mish``, ``nn.LeakyReLU(0.1)``.
  It is passed to the modules as their ``act`` argument; nothing global changes.
- ``gsconv_shuffle``: ``evenodd`` (default, the slim-neck yolov5 fork) or ``interleave`` (the paper code).

Numbers are checked before anything is built (:func:`check_config`, and each layer's channels and repeats), and
the model is first built on the ``meta`` device (no memory, no initialisation) to count its parameters, so a
hostile or mistyped yaml (``width_multiple: 24``, ``depth_multiple: 20000``) is refused in milliseconds.
"""

from __future__ import annotations

import ast
import contextlib
import copy
import functools
import inspect
import math
import re
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ..errors import ConfigError
from . import common, gsconv, heads  # noqa: F401  (register the yaml modules)
from .heads import Classify, Detect
from .registry import ModuleEntry, get_module

ACTIVATIONS = ("SiLU", "Mish", "ReLU", "ReLU6", "LeakyReLU", "Hardswish", "Hardsigmoid", "Sigmoid", "Tanh", "GELU",
               "ELU", "Identity")
_ACTIVATION_RE = re.compile(r"^\s*nn\.(\w+)\s*(?:\((.*)\))?\s*$")

# bounds of a model yaml (YOLOv5x6: 141M parameters, 1280 channels, 12 repeats, multiples 1.33 / 1.25)
MAX_PARAMS = 300_000_000
MAX_CHANNELS = 16_384
MAX_REPEATS = 100
MAX_LAYERS = 1_000
MAX_MULTIPLE = 4.0
MAX_CLASSES = 100_000
MAX_INPUT_CHANNELS = 64
MAX_ANCHORS = 16  # per level
MAX_ANCHOR_PX = 100_000.0


def make_divisible(x: float, divisor: int = 8) -> int:
    """Smallest multiple of ``divisor`` >= ``x`` (YOLOv5's channel rounding)."""
    return math.ceil(x / divisor) * divisor


def parse_activation(spec: Optional[str]) -> Callable[[], nn.Module]:
    """Module factory for a yaml ``activation`` value such as ``nn.Mish``, ``nn.SiLU()`` or ``nn.LeakyReLU(0.1)``.

    Raises:
        ConfigError: not one of the supported torch activations, or its arguments are not literals.
    """
    if spec is None:
        return nn.SiLU
    match = _ACTIVATION_RE.match(str(spec))
    if not match or match.group(1) not in ACTIVATIONS:
        known = ", ".join(f"nn.{a}" for a in ACTIVATIONS)
        raise ConfigError(f"unsupported activation {spec!r} in the model yaml; use one of {known}")
    cls = getattr(nn, match.group(1))
    args: Tuple[Any, ...] = ()
    if match.group(2):
        try:
            args = ast.literal_eval(f"({match.group(2)},)")
        except (ValueError, SyntaxError):
            raise ConfigError(f"activation {spec!r}: arguments must be literals such as 0.1") from None
    return functools.partial(cls, *args) if args else cls


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _check_anchors(anchors: Any) -> None:
    """YOLOv5's ``anchors``: a number of anchors per level, or one list of w,h pixel pairs per level."""
    if anchors is None or (_is_int(anchors) and 1 <= anchors <= MAX_ANCHORS):
        return
    rows = anchors if isinstance(anchors, (list, tuple)) and anchors else None
    if rows is None or not all(isinstance(r, (list, tuple)) for r in rows):
        raise ConfigError(
            f"model yaml 'anchors' must be a number of anchors per level or a list of [w1, h1, w2, h2, ...] lists "
            f"(one per detection level), got {anchors!r}"
        )
    for level, row in enumerate(rows):
        if not row or len(row) % 2 or len(row) != len(rows[0]) or len(row) > 2 * MAX_ANCHORS:
            raise ConfigError(
                f"model yaml 'anchors' level {level} has {len(row)} numbers; every level needs the same even number "
                f"of them (w, h pairs, at most {MAX_ANCHORS} anchors)"
            )
        if not all(_is_real(v) and 0 < v <= MAX_ANCHOR_PX for v in row):
            raise ConfigError(f"model yaml 'anchors' level {level} {list(row)!r}: sizes must be pixels in "
                              f"(0, {MAX_ANCHOR_PX:g}]")


def check_config(d: Dict[str, Any]) -> None:
    """Refuse a model yaml dict whose numbers are of the wrong type or beyond sane bounds (nothing is built).

    Raises:
        ConfigError: the sentence names the key, what it holds and what is allowed.
    """
    nc = d.get("nc")
    if not _is_int(nc) or not 1 <= nc <= MAX_CLASSES:
        raise ConfigError(f"model yaml 'nc' must be a whole number of classes in 1..{MAX_CLASSES}, got {nc!r}")
    for key in ("depth_multiple", "width_multiple"):
        value = d.get(key, 1.0)
        if not _is_real(value) or not 0 < value <= MAX_MULTIPLE:
            raise ConfigError(f"model yaml '{key}' must be a number in (0, {MAX_MULTIPLE:g}] "
                              f"(YOLOv5 uses 0.33 to 1.33), got {value!r}")
    ch = d.get("ch", 3)
    if not _is_int(ch) or not 1 <= ch <= MAX_INPUT_CHANNELS:
        raise ConfigError(f"model yaml 'ch' (input channels) must be a whole number in 1..{MAX_INPUT_CHANNELS}, "
                          f"got {ch!r}")
    _check_anchors(d.get("anchors"))
    layers = [d.get("backbone"), d.get("head", [])]
    if not all(isinstance(part, list) for part in layers) or not d.get("backbone"):
        raise ConfigError("model yaml needs a 'backbone' list (and usually a 'head' list) of "
                          "[from, number, module, args] rows")
    if len(layers[0]) + len(layers[1]) > MAX_LAYERS:
        raise ConfigError(f"model yaml has {len(layers[0]) + len(layers[1])} layers; at most {MAX_LAYERS} are allowed")


def _resolve_arg(a: Any, nc: int, anchors: Any) -> Any:
    """YOLOv5 evaluates string args; only these names and Python literals are understood here."""
    if not isinstance(a, str):
        return a
    names = {"nc": nc, "anchors": anchors, "None": None, "True": True, "False": False}
    if a in names:
        return names[a]
    with contextlib.suppress(ValueError, SyntaxError):
        return ast.literal_eval(a)
    return a  # e.g. 'nearest'


@functools.lru_cache(maxsize=None)
def _keyword_slots(factory: Callable) -> Dict[str, Optional[int]]:
    """Which of ``act`` / ``shuffle`` ``factory`` accepts, with their positional index (None: keyword-only)."""
    try:
        params = list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):
        return {}
    slots = {}
    for index, p in enumerate(params):
        if p.name in ("act", "shuffle"):
            slots[p.name] = index if p.kind is p.POSITIONAL_OR_KEYWORD else None
    return slots


def _context_kwargs(entry: ModuleEntry, args: List[Any], act: Callable, shuffle: str) -> Dict[str, Any]:
    """The model-wide ``act`` / ``shuffle`` to pass by keyword, unless the yaml gave them positionally."""
    kwargs: Dict[str, Any] = {}
    for name, value in (("act", act), ("shuffle", shuffle)):
        slots = _keyword_slots(entry.factory)
        if name not in slots:
            continue
        index = slots[name]
        if index is not None and index < len(args):
            if name == "act" and args[index] is True:  # YOLOv5: act=True means the model's default activation
                args[index] = act
            continue
        kwargs[name] = value
    return kwargs


def _check_from(i: int, name: str, f: Any) -> List[int]:
    """The ``from`` indices of layer ``i`` as a list, validated against the layers before it."""
    indices = [f] if isinstance(f, int) else f
    if not isinstance(indices, (list, tuple)) or not indices or not all(isinstance(j, int) for j in indices):
        raise ConfigError(f"layer {i} ({name}): 'from' must be an int or a list of ints, got {f!r}")
    for j in indices:
        if not (j == -1 or (i > 0 and -i <= j < i)):
            raise ConfigError(
                f"layer {i} ({name}): 'from' index {j} does not refer to an earlier layer "
                f"(valid: -1..-{max(i, 1)} or 0..{i - 1}); check the layer numbers in the yaml"
            )
    return list(indices)


def _build_layer(i: int, name: str, entry: ModuleEntry, n: int, args: List[Any], kwargs: Dict[str, Any]) -> nn.Module:
    """One yaml layer: ``n`` copies of ``entry``'s module (an ``nn.Sequential`` when ``n > 1``)."""
    try:
        if n > 1:
            return nn.Sequential(*(entry.factory(*args, **kwargs) for _ in range(n)))
        return entry.factory(*args, **kwargs)
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"layer {i} ({name}): arguments {args} were rejected: {exc}") from None


def parse_model(d: Dict[str, Any], ch: Sequence[int]) -> Tuple[nn.Sequential, List[int]]:
    """Build the layers of a model yaml dict exactly as YOLOv5's ``parse_model`` does.

    Args:
        d: the yaml as a dict (not modified).
        ch: input channels, e.g. ``[3]``.

    Returns:
        The layers as an ``nn.Sequential`` (each with attributes ``i``, ``f``, ``type``, ``np``) and the sorted
        indices of the layers whose outputs later layers read.

    Raises:
        ConfigError: a missing key, an unknown module, a bad ``from`` index or arguments a module rejects.
    """
    try:
        nc, gd, gw = d["nc"], d.get("depth_multiple", 1.0), d.get("width_multiple", 1.0)
        layers_cfg = list(d["backbone"]) + list(d.get("head", []))
    except (KeyError, TypeError) as exc:
        raise ConfigError(f"model yaml needs 'nc' and a 'backbone' list (missing {exc})") from None
    anchors = d.get("anchors")
    na = (len(anchors[0]) // 2 if isinstance(anchors, list) else anchors) if anchors else 0
    no = na * (nc + 5)
    act = parse_activation(d.get("activation"))
    shuffle = d.get("gsconv_shuffle", "evenodd")
    if shuffle not in gsconv.SHUFFLES:
        raise ConfigError(f"gsconv_shuffle must be one of {gsconv.SHUFFLES}, got {shuffle!r}")

    ch = list(ch)
    layers, save = [], []
    total = 0  # parameters so far
    for i, row in enumerate(layers_cfg):
        if not isinstance(row, (list, tuple)) or len(row) != 4:
            raise ConfigError(f"layer {i}: expected [from, number, module, args], got {row!r}")
        f, n, name, args = row
        entry = get_module(str(name))
        indices = _check_from(i, str(name), f)
        if not isinstance(args, (list, tuple, type(None))):
            raise ConfigError(f"layer {i} ({name}): args must be a list, got {args!r}")
        args = [_resolve_arg(a, nc, anchors) for a in (args or [])]
        if not _is_int(n) or n < 1:
            raise ConfigError(f"layer {i} ({name}): 'number' must be a whole number >= 1, got {n!r}")
        n = max(round(n * gd), 1) if n > 1 else n  # banker's rounding, as Python round
        if n > MAX_REPEATS:
            raise ConfigError(f"layer {i} ({name}) repeats {n} times after depth_multiple; at most {MAX_REPEATS}")
        c_in = [ch[j] for j in indices]

        if entry.channels == "scaled":
            if len(indices) != 1 or not args:
                raise ConfigError(f"layer {i} ({name}): needs one input and the output channels as first arg")
            c1, c2 = c_in[0], args[0]
            if not _is_int(c2) or c2 < 1:
                raise ConfigError(f"layer {i} ({name}): output channels must be a whole number >= 1, got {c2!r}")
            if c2 != no:
                c2 = make_divisible(c2 * gw, 8)
            args = [c1, c2, *args[1:]]
            if entry.repeat:
                args.insert(2, n)
                n = 1
        elif entry.channels == "fixed":
            c2 = args[0]
        elif entry.channels == "concat":
            c2 = sum(c_in)
        elif entry.channels == "batchnorm":
            args, c2 = [c_in[0]], c_in[0]
        elif entry.channels == "head":
            args.append(c_in)
            levels = args[1] if len(args) > 2 and isinstance(args[1], (list, tuple)) else indices
            if len(levels) != len(indices):
                raise ConfigError(f"layer {i} ({name}): {len(levels)} anchor levels for {len(indices)} inputs; give "
                                  "one anchor list per input")
            if len(args) > 1 and isinstance(args[1], int):  # number of anchors -> placeholder anchors
                args[1] = [list(range(args[1] * 2))] * len(indices)
            c2 = c_in[0]
        elif entry.channels == "prepend":
            args = [c_in[0] if len(c_in) == 1 else sum(c_in), *args]
            c2 = args[1]
        else:  # "same"
            c2 = c_in[0]
        if not _is_int(c2) or not 1 <= c2 <= MAX_CHANNELS:
            raise ConfigError(f"layer {i} ({name}) would have {c2!r} output channels; allowed: 1..{MAX_CHANNELS} "
                              "(check its args and width_multiple)")

        kwargs = _context_kwargs(entry, args, act, shuffle)
        m_ = _build_layer(i, str(name), entry, n, args, kwargs)
        m_.i, m_.f = i, f
        m_.type = f"{entry.factory.__module__}.{entry.factory.__qualname__}"
        m_.np = sum(x.numel() for x in m_.parameters())
        total += m_.np
        if total > MAX_PARAMS:
            raise ConfigError(
                f"the model yaml builds more than {MAX_PARAMS:,} parameters ({total:,} by layer {i}, {name}); "
                "check depth_multiple, width_multiple and the channel numbers"
            )
        save.extend(x % i for x in indices if x != -1)
        layers.append(m_)
        if i == 0:
            ch = []
        ch.append(c2)
    return nn.Sequential(*layers), sorted(set(save))


def initialize_weights(model: nn.Module) -> None:
    """YOLOv5's post-build settings: BatchNorm eps 1e-3 / momentum 0.03, in-place activations."""
    for m in model.modules():
        t = type(m)
        if t is nn.BatchNorm2d:
            m.eps = 1e-3
            m.momentum = 0.03
        elif t in (nn.Hardswish, nn.LeakyReLU, nn.ReLU, nn.ReLU6, nn.SiLU):
            m.inplace = True


class BaseModel(nn.Module):
    """Layers from a yaml run in order, keeping the outputs that later layers read."""

    task = ""

    def __init__(self, cfg: Dict[str, Any], ch: int = 3, nc: Optional[int] = None):
        super().__init__()
        self.yaml = copy.deepcopy(cfg)
        ch = self.yaml["ch"] = self.yaml.get("ch", ch)
        if nc is not None and nc != self.yaml.get("nc"):
            self.yaml["nc"] = nc
        check_config(self.yaml)
        with torch.device("meta"):  # a first build without memory refuses a model beyond MAX_PARAMS
            parse_model(self.yaml, ch=[ch])
        self.model, self.save = parse_model(self.yaml, ch=[ch])
        self.nc = self.yaml["nc"]
        self.names: Dict[int, str] = {i: str(i) for i in range(self.nc)}
        self.inplace = self.yaml.get("inplace", True)

    def forward(self, x: torch.Tensor):
        y: List[Optional[torch.Tensor]] = []
        for m in self.model:
            if m.f != -1:
                x = y[m.f] if isinstance(m.f, int) else [x if j == -1 else y[j] for j in m.f]
            x = m(x)
            y.append(x if m.i in self.save else None)
        return x


class DetectionModel(BaseModel):
    """YOLOv5 detector built from a yaml dict whose last layer is a :class:`Detect`.

    ``forward(x)`` with x (B, ch, H, W), H and W multiples of the largest stride: in training the list of raw
    per-level (B, na, ny, nx, 5+nc) tensors; in eval ``(decoded (B, N, 5+nc), raw list)`` exactly as YOLOv5.
    """

    task = "detect"

    def __init__(self, cfg: Dict[str, Any], ch: int = 3, nc: Optional[int] = None):
        super().__init__(cfg, ch, nc)
        m = self.model[-1]
        if not isinstance(m, Detect):
            raise ConfigError("a detection model yaml must end with a Detect layer")
        m.inplace = self.inplace
        s = 256
        was_training = self.training
        self.train()
        with torch.no_grad():
            raw = self.forward(torch.zeros(1, ch, s, s))
        self.train(was_training)
        m.stride = torch.tensor([s / x.shape[-2] for x in raw])
        self.check_anchor_order(m)
        m.anchors /= m.stride.view(-1, 1, 1)
        self.register_buffer("stride", m.stride.clone(), persistent=False)
        self._initialize_biases()
        initialize_weights(self)

    @staticmethod
    def check_anchor_order(m: Detect) -> None:
        """Flip the anchor order if it disagrees with the stride order (YOLOv5's ``check_anchor_order``)."""
        a = m.anchors.prod(-1).mean(-1).view(-1)
        da = a[-1] - a[0]
        ds = m.stride[-1] - m.stride[0]
        if da and (da.sign() != ds.sign()):
            m.anchors[:] = m.anchors.flip(0)

    def _initialize_biases(self) -> None:
        """Objectness / class bias priors of YOLOv5 v7.0 (8 objects per 640 image, class prior 0.6/nc)."""
        m = self.model[-1]
        for mi, s in zip(m.m, m.stride):
            b = mi.bias.view(m.na, -1)
            b.data[:, 4] += math.log(8 / (640 / s) ** 2)
            b.data[:, 5 : 5 + m.nc] += math.log(0.6 / (m.nc - 0.99999))
            mi.bias = nn.Parameter(b.view(-1), requires_grad=True)


class ClassificationModel(BaseModel):
    """Classifier built from a yaml dict whose last layer is a :class:`Classify`; forward -> (B, nc) logits."""

    task = "classify"

    def __init__(self, cfg: Dict[str, Any], ch: int = 3, nc: Optional[int] = None):
        super().__init__(cfg, ch, nc)
        if not isinstance(self.model[-1], Classify):
            raise ConfigError("a classification model yaml must end with a Classify layer")
        self.register_buffer("stride", torch.tensor([float(cfg.get("stride", 32))]), persistent=False)
        initialize_weights(self)


def model_class(cfg: Dict[str, Any]) -> type:
    """:class:`DetectionModel`, :class:`ClassificationModel` or the ``model_class`` of the yaml's last layer."""
    if not isinstance(cfg, dict):
        raise ConfigError(
            f"a model config must be a mapping with 'nc', 'backbone' and 'head', got {type(cfg).__name__}"
        )
    layers = [row for part in (cfg.get("backbone"), cfg.get("head")) if isinstance(part, list) for row in part]
    if not layers or not isinstance(layers[-1], (list, tuple)) or len(layers[-1]) != 4:
        raise ConfigError("model yaml has no layers; it needs 'backbone' (and usually 'head') lists")
    factory = get_module(str(layers[-1][2])).factory
    if isinstance(factory, type) and issubclass(factory, Detect):
        return DetectionModel
    if isinstance(factory, type) and issubclass(factory, Classify):
        return ClassificationModel
    if getattr(factory, "model_class", None) is not None:  # other heads name the model they end (CenterNetHead)
        return factory.model_class
    raise ConfigError(
        f"the last layer of a model yaml must be Detect, Classify or CenterNetHead, got {layers[-1][2]!r}")


def model_from_yaml(cfg: Dict[str, Any], ch: int = 3, nc: Optional[int] = None) -> Union[DetectionModel,
                                                                                       ClassificationModel]:
    """Build the detector or classifier a yaml dict describes (training mode, float32)."""
    return model_class(cfg)(cfg, ch=ch, nc=nc)
