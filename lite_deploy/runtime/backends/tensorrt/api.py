"""The ``tensorrt`` module, a logger routed to :mod:`logging`, and the standard plugins initialised.

``trt.init_libnvinfer_plugins(logger, "")`` registers TensorRT's bundled plugins (``EfficientNMS_TRT`` among them)
with the plugin registry. It must run before an ONNX holding a plugin node is parsed (from TensorRT 10 the parser
no longer registers them itself) and before an engine holding one is deserialised in a fresh process ("getPluginCreator
could not find plugin" otherwise). :func:`open_tensorrt` does both steps once per process.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Optional, Tuple

from ....errors import BackendUnavailableError

LOGGER = logging.getLogger("lite_deploy.tensorrt")

# where TensorRT comes from (no pip extra of lite-deploy installs it); also the runtime registry's install hint
TENSORRT_INSTALL = (
    "it comes with JetPack on a Jetson (python3-libnvinfer; a virtualenv needs --system-site-packages) or with "
    "NVIDIA's tensorrt wheels on an x86 GPU machine"
)
TENSORRT_MISSING = f"TensorRT is not installed here: {TENSORRT_INSTALL}; run `lite-deploy build-engine` on that device."

_OPENED: Optional[Tuple[ModuleType, Any]] = None  # (tensorrt module, its logger), plugins initialised


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or :class:`BackendUnavailableError` saying where TensorRT comes from."""
    try:
        import tensorrt
    except ImportError as exc:
        raise BackendUnavailableError(TENSORRT_MISSING) from exc
    return tensorrt


def make_logger(trt: ModuleType) -> Any:
    """A ``trt.ILogger`` that routes TensorRT's messages to :mod:`logging` (errors, warnings; the rest at debug)."""

    class TrtLogger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity in (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR):
                LOGGER.error("TensorRT: %s", msg)
            elif severity == trt.ILogger.Severity.WARNING:
                LOGGER.warning("TensorRT: %s", msg)
            else:
                LOGGER.debug("TensorRT: %s", msg)

    return TrtLogger()


def init_plugins(trt: ModuleType, logger: Any) -> None:
    """Register TensorRT's standard plugins (``libnvinfer_plugin``) under the default namespace.

    Raises:
        BackendUnavailableError: the plugin library could not be initialised.
    """
    if not trt.init_libnvinfer_plugins(logger, ""):
        raise BackendUnavailableError(
            "TensorRT could not initialise its plugin library (libnvinfer_plugin): install it with TensorRT "
            "(on JetPack: apt install libnvinfer-plugin*)"
        )


def open_tensorrt() -> Tuple[ModuleType, Any]:
    """``(tensorrt module, logger)`` with the standard plugins initialised (once per process and module).

    Raises:
        BackendUnavailableError: TensorRT or its plugin library is missing.
    """
    global _OPENED
    trt = import_tensorrt()
    if _OPENED is None or _OPENED[0] is not trt:
        logger = make_logger(trt)
        init_plugins(trt, logger)
        _OPENED = (trt, logger)
    return _OPENED
