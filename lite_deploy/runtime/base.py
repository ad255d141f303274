"""Runtime base class and the registry of backends by file suffix.

A backend is registered by dotted name (``"package.module:Class"``) together with the Python module it needs and
how to install it (the pip extra, or for TensorRT JetPack / NVIDIA's wheels), so listing the backends imports
nothing. :func:`load_runtime` picks the backend from the file suffix, checks that its module is installed (saying
how to install it when it is not) and only then imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, NamedTuple, Optional, Sequence, Tuple, Union

import numpy as np

from ..errors import BackendUnavailableError, CheckpointError
from ..spec import ModelSpec, check_files
from .tensorrt.api import TENSORRT_INSTALL

LOGGER = logging.getLogger(__name__)

Shape = Tuple[Optional[int], ...]


class TensorInfo(NamedTuple):
    """Name, shape and dtype of one model input or output.

    Attributes:
        name: tensor name in the artifact.
        shape: dimensions; ``None`` marks a dynamic one.
        dtype: numpy dtype the runtime takes (inputs) or returns (outputs).
    """

    name: str
    shape: Shape
    dtype: np.dtype


class LayerTime(NamedTuple):
    """Time one layer (node) of the model took in one inference, as its backend's profiler reports it.

    Attributes:
        name: layer or node name in the backend's (possibly fused) graph.
        op_type: the backend's operator or kernel type (``""`` where the backend gives none).
        ms: milliseconds.
    """

    name: str
    op_type: str
    ms: float


def mean_layer_times(runs: Sequence[Iterable[LayerTime]]) -> List[LayerTime]:
    """Per-layer mean over profiled inferences, slowest first; the first (warm-up) run is left out of several.

    Args:
        runs: the layer times of each inference, in order.
    """
    kept = runs[1:] if len(runs) > 1 else runs
    totals: Dict[Tuple[str, str], float] = {}
    for run in kept:
        for layer in run:
            key = (layer.name, layer.op_type)
            totals[key] = totals.get(key, 0.0) + layer.ms
    means = [LayerTime(name, op, ms / len(kept)) for (name, op), ms in totals.items()]
    return sorted(means, key=lambda t: -t.ms)


class Backend(NamedTuple):
    """A registered backend: where its class lives, the module it needs and how to install that module."""

    target: str
    module: str
    install: str


_BACKENDS: Dict[str, Backend] = {}


def register_backend(*suffixes: str, target: str, module: str, extra: str = "", install: str = "") -> None:
    """Register the runtime class ``target`` for files ending in ``suffixes``.

    Args:
        suffixes: file suffixes with the dot, e.g. ``".engine", ".plan"``.
        target: ``"package.module:Class"``; imported only when such a file is loaded.
        module: top-level module the backend needs (checked with ``importlib.util.find_spec``).
        extra: pip extra of lite-deploy that installs ``module``.
        install: how to install ``module`` where no pip extra does (TensorRT), instead of ``extra``.

    Raises:
        ValueError: a suffix is registered already.
    """
    for suffix in suffixes:
        suffix = suffix.lower()
        if suffix in _BACKENDS:
            raise ValueError(f"a backend for {suffix!r} is registered already ({_BACKENDS[suffix].target})")
        _BACKENDS[suffix] = Backend(target, module, install or f"pip install 'lite-deploy[{extra}]'")


def registered_suffixes() -> Tuple[str, ...]:
    """File suffixes that have a backend, sorted."""
    return tuple(sorted(_BACKENDS))


def backend_for(path: Union[str, Path]) -> Backend:
    """The backend registered for ``path``'s suffix.

    Raises:
        ValueError: no backend handles that suffix.
    """
    suffix = Path(path).suffix.lower()
    backend = _BACKENDS.get(suffix)
    if backend is None:
        raise ValueError(
            f"no runtime for {Path(path).name!r}: the file name must end in one of {', '.join(registered_suffixes())}"
        )
    return backend


def runtime_class(path: Union[str, Path]) -> type:
    """Import and return the runtime class for ``path``.

    Raises:
        ValueError: unknown suffix.
        BackendUnavailableError: the backend's module is not installed.
    """
    backend = backend_for(path)
    hint = backend.install
    if importlib.util.find_spec(backend.module) is None:
        raise BackendUnavailableError(
            f"{Path(path).name} needs the '{backend.module}' module, which is not installed: {hint}"
        )
    module_name, attr = backend.target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailableError(f"{Path(path).name} needs {backend.module}, which failed to import ({exc}): {hint}") from exc
    return getattr(module, attr)


def load_runtime(path: Union[str, Path], **options: Any) -> "Runtime":
    """Open ``path`` with the backend registered for its suffix.

    Args:
        path: model artifact (``.onnx``, ``.xml``, ``.tflite``, ``.engine``/``.plan``, ``.pt``).
        **options: backend options (e.g. ``providers`` and ``threads`` for ONNX Runtime, ``device`` for
            OpenVINO); see each backend's class.

    Returns:
        The loaded runtime; use it as a context manager to release it.

    Raises:
        CheckpointError: ``path`` does not exist, or the backend cannot read it (:func:`invalid_artifact`).
        ValueError: unknown suffix or bad options.
        BackendUnavailableError: the backend is not installed.
        ArtifactMismatchError: the artifact's files are not those its sidecar recorded (:func:`check_files`).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"model file {str(path)!r} does not exist (or is not a file): check the path")
    check_files(path)
    return runtime_class(path).load(path, **options)


def invalid_artifact(path: Union[str, Path], kind: str, cause: BaseException) -> CheckpointError:
    """The error for a file its backend cannot read (truncated, corrupt, or not a model).

    Args:
        path: the artifact.
        kind: what it should be, e.g. ``"ONNX"``, ``"OpenVINO"``, ``"TFLite"``.
        cause: the backend's exception; its last line (OpenVINO's reason follows source locations) goes into the
            message.
    """
    detail = ([line for line in str(cause).splitlines() if line.strip()] or [type(cause).__name__])[-1].strip()[:200]
    return CheckpointError(f"{Path(path).name} is not a valid {kind} model ({detail}): re-export it")


class Runtime:
    """One loaded model on one backend: validated ``infer`` over named numpy arrays.

    Subclasses set ``self._inputs`` / ``self._outputs`` (tuples of :class:`TensorInfo`) when they open the
    artifact and implement :meth:`_infer`; they may override :meth:`embedded_metadata` (metadata stored inside
    the artifact) and :meth:`close`. Backends with a per-layer profiler set :attr:`layer_profiling`, take a
    ``profiling=True`` option and implement :meth:`layer_times`.
    """

    layer_profiling = False

    def __init__(self, path: Union[str, Path], spec: Optional[ModelSpec] = None) -> None:
        """Remember the artifact and an optional known spec (otherwise found on first use of :attr:`spec`)."""
        self.path = Path(path)
        self._spec = spec
        self._inputs: Tuple[TensorInfo, ...] = ()
        self._outputs: Tuple[TensorInfo, ...] = ()

    @classmethod
    def load(cls, path: Union[str, Path], **options: Any) -> "Runtime":
        """Open ``path``; ``options`` are the subclass's constructor arguments."""
        return cls(path, **options)

    @property
    def inputs(self) -> Tuple[TensorInfo, ...]:
        """The model inputs."""
        return self._inputs

    @property
    def outputs(self) -> Tuple[TensorInfo, ...]:
        """The model outputs, in the artifact's order."""
        return self._outputs

    def embedded_metadata(self) -> Dict[str, str]:
        """Key/value metadata stored inside the artifact (empty when the format has none)."""
        return {}

    @property
    def spec(self) -> ModelSpec:
        """The artifact's :class:`ModelSpec`: sidecar, embedded, or inferred (see :func:`resolve_spec`)."""
        if self._spec is None:
            from .discovery import resolve_spec

            self._spec = resolve_spec(self.path, self.embedded_metadata(), self.inputs, self.outputs)
        return self._spec

    def infer(self, feed: Union[np.ndarray, Mapping[str, np.ndarray]]) -> Dict[str, np.ndarray]:
        """Run the model once.

        Args:
            feed: one array for a single-input model, or ``{input name: array}`` for every input; dtypes must
                match :attr:`inputs` and shapes must fit them.

        Returns:
            ``{output name: array}`` in the order of :attr:`outputs`.

        Raises:
            ValueError: missing, unknown, mistyped or misshapen inputs.
        """
        feeds = check_feed(feed, self.inputs)
        return self._infer(feeds)

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        raise NotImplementedError

    def layer_times(self) -> List[LayerTime]:
        """Mean time per layer over the inferences run since loading with ``profiling=True``, slowest first.

        The first inference (allocations, warm-up) is left out when there were several.

        Raises:
            NotImplementedError: the backend has no per-layer profiler (:attr:`layer_profiling` is False).
            ValueError: the runtime was not loaded with ``profiling=True``, or has not run yet.
        """
        raise NotImplementedError(f"{type(self).__name__} has no per-layer profiler")

    def close(self) -> None:
        """Release the backend's resources (a no-op by default)."""

    def __enter__(self) -> "Runtime":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r})"


def check_feed(feed: Union[np.ndarray, Mapping[str, np.ndarray]], inputs: Tuple[TensorInfo, ...]) -> Dict[str, np.ndarray]:
    """Check a feed against the model inputs and return it as a dict.

    Raises:
        ValueError: what is wrong and what was expected, e.g.
            ``"input 'images': got shape (1, 3, 320, 320), expected (1, 3, 640, 640)"``.
    """
    if isinstance(feed, np.ndarray):
        if len(inputs) != 1:
            names = ", ".join(repr(t.name) for t in inputs)
            raise ValueError(f"this model has {len(inputs)} inputs ({names}): pass a dict {{name: array}}")
        feeds = {inputs[0].name: feed}
    elif isinstance(feed, Mapping):
        feeds = dict(feed)
    else:
        raise ValueError(f"feed must be a numpy array or a dict of arrays, got {type(feed).__name__}")
    expected = {t.name: t for t in inputs}
    missing = [n for n in expected if n not in feeds]
    unknown = [n for n in feeds if n not in expected]
    if missing or unknown:
        raise ValueError(f"inputs {sorted(expected)} expected; missing {missing}, unknown {unknown}")
    for name, array in feeds.items():
        info = expected[name]
        if not isinstance(array, np.ndarray):
            raise ValueError(f"input {name!r}: expected a numpy array, got {type(array).__name__}")
        if array.dtype != info.dtype:
            raise ValueError(f"input {name!r}: got dtype {array.dtype}, expected {np.dtype(info.dtype)}")
        if not shape_fits(array.shape, info.shape):
            shown = tuple("?" if d is None else d for d in info.shape)
            raise ValueError(f"input {name!r}: got shape {tuple(array.shape)}, expected {shown} (? = any)")
    return feeds


def shape_fits(shape: Tuple[int, ...], expected: Shape) -> bool:
    """Whether a concrete ``shape`` matches ``expected`` (same rank, equal static dimensions)."""
    return len(shape) == len(expected) and all(e is None or e == s for s, e in zip(shape, expected))


def dynamic_dim(value: Any) -> Optional[int]:
    """A dimension as reported by a backend -> int, or ``None`` when symbolic, negative or unknown."""
    if isinstance(value, (int, np.integer)) and value >= 0:
        return int(value)
    return None


register_backend(".onnx", target="lite_deploy.runtime.onnxruntime:OnnxRuntime", module="onnxruntime", extra="onnxruntime")
register_backend(".xml", target="lite_deploy.runtime.openvino:OpenVINORuntime", module="openvino", extra="openvino")
register_backend(".tflite", target="lite_deploy.runtime.tflite:TFLiteRuntime", module="ai_edge_litert", extra="tflite")
register_backend(".engine", ".plan", target="lite_deploy.runtime.tensorrt.engine:TensorRTRuntime", module="tensorrt",
                 install=TENSORRT_INSTALL)
# the PyTorch reference backend lives host-side, next to the models, and needs torch
register_backend(".pt", target="lite_deploy.models.torch_runtime:TorchRuntime", module="torch", extra="export")
