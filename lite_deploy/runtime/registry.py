"""The registry of backends by file suffix, and opening an artifact with its backend.

A backend is registered by dotted name (``"package.module:Class"``) together with the Python module it needs and
how to install it (the pip extra, or for TensorRT JetPack / NVIDIA's wheels), so listing the backends imports
nothing. :func:`load_runtime` picks the backend from the file suffix, checks that its module is installed (saying
how to install it when it is not) and only then imports it.
"""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path
from typing import Any, Dict, NamedTuple, Tuple, Union

from ..errors import BackendUnavailableError, CheckpointError
from ..spec import ModelSpec, check_files, sidecar_path
from .backends.tensorrt.api import TENSORRT_INSTALL
from .base import Runtime


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
        raise BackendUnavailableError(
            f"{Path(path).name} needs {backend.module}, which failed to import ({exc}): {hint}") from exc
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


def load_spec(artifact: Union[str, Path]) -> ModelSpec:
    """The spec of ``artifact``: its sidecar if present, else what the artifact itself says.

    Raises:
        FileNotFoundError: ``artifact`` does not exist.
        SpecError: no sidecar, nothing embedded, and not a recognisable YOLOv5 export.
    """
    sidecar = sidecar_path(artifact)
    if sidecar.is_file():
        return ModelSpec.load(sidecar)
    with load_runtime(artifact) as runtime:
        return runtime.spec


_BACKENDS_PACKAGE = "lite_deploy.runtime.backends"
register_backend(".onnx", target=f"{_BACKENDS_PACKAGE}.onnxruntime.runtime:OnnxRuntime", module="onnxruntime",
                 extra="onnxruntime")
register_backend(".xml", target=f"{_BACKENDS_PACKAGE}.openvino.runtime:OpenVINORuntime", module="openvino",
                 extra="openvino")
register_backend(".tflite", target=f"{_BACKENDS_PACKAGE}.tflite.runtime:TFLiteRuntime", module="ai_edge_litert",
                 extra="tflite")
register_backend(".engine", ".plan", target=f"{_BACKENDS_PACKAGE}.tensorrt.engine:TensorRTRuntime", module="tensorrt",
                 install=TENSORRT_INSTALL)
# the PyTorch reference backend lives host-side (it needs torch and the models), registered by name only
register_backend(".pt", target="lite_deploy.export.torch_runtime:TorchRuntime", module="torch", extra="export")
