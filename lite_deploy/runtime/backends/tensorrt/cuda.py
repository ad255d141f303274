"""Device memory, copies and a stream for the TensorRT backend, over whichever CUDA binding works here.

Tried in order: cuda-python's ``cuda.bindings.runtime`` (cuda-python >= 12.6, what TensorRT >= 10.14 samples use),
its older spelling ``cuda.cudart``, then ``pycuda`` (what JetPack 5 era samples use). A binding that imports but
fails at its first CUDA call (cuda-bindings 13 on a CUDA 12 driver gives ``cudaErrorInsufficientDriver``;
cuda-python 12 on JetPack 5's CUDA 11.4 likewise) is skipped like one that does not import. All three expose the
same few operations: allocate, free, host->device and device->host copies on one stream, synchronise, and the
device's name and compute capability (which the engine compatibility check compares).
"""

from __future__ import annotations

import importlib
import logging
from typing import Any, List, Tuple

import numpy as np

from ....errors import BackendUnavailableError

LOGGER = logging.getLogger(__name__)


class CudaMemory:
    """The CUDA operations the TensorRT runtime needs (see :func:`open_cuda`)."""

    stream_handle: int

    def alloc(self, nbytes: int) -> int:
        """Allocate ``nbytes`` of device memory; returns its address."""
        raise NotImplementedError

    def free(self, address: int) -> None:
        """Free memory from :meth:`alloc`."""
        raise NotImplementedError

    def to_device(self, address: int, array: np.ndarray) -> None:
        """Copy a C-contiguous host array to ``address`` on the stream."""
        raise NotImplementedError

    def to_host(self, array: np.ndarray, address: int) -> None:
        """Copy ``array.nbytes`` from ``address`` into a C-contiguous host array on the stream."""
        raise NotImplementedError

    def synchronize(self) -> None:
        """Wait for the stream."""
        raise NotImplementedError

    def device_name(self) -> str:
        """Name of the current CUDA device (e.g. ``"Orin"``)."""
        raise NotImplementedError

    def compute_capability(self) -> str:
        """Compute capability of the current device, ``"major.minor"`` (e.g. ``"8.7"`` for Orin)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the stream."""


class CudaPythonMemory(CudaMemory):
    """cuda-python's runtime API module (``cuda.bindings.runtime`` or ``cuda.cudart``)."""

    def __init__(self, cudart: Any) -> None:
        self.cudart = cudart
        self._stream = self._check(cudart.cudaStreamCreate())[0]
        self.stream_handle = int(self._stream)

    def _check(self, result: Tuple[Any, ...]) -> List[Any]:
        err, rest = result[0], list(result[1:])
        if err != self.cudart.cudaError_t.cudaSuccess:
            text = self.cudart.cudaGetErrorString(err)[1]
            raise RuntimeError(f"CUDA error {err}: {text.decode() if isinstance(text, bytes) else text}")
        return rest

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self.cudart.cudaMalloc(max(int(nbytes), 1)))[0])

    def free(self, address: int) -> None:
        self._check(self.cudart.cudaFree(address))

    def to_device(self, address: int, array: np.ndarray) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.cudart.cudaMemcpyAsync(address, array.ctypes.data, array.nbytes, kind, self._stream))

    def to_host(self, array: np.ndarray, address: int) -> None:
        kind = self.cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.cudart.cudaMemcpyAsync(array.ctypes.data, address, array.nbytes, kind, self._stream))

    def synchronize(self) -> None:
        self._check(self.cudart.cudaStreamSynchronize(self._stream))

    def _properties(self) -> Any:
        device = self._check(self.cudart.cudaGetDevice())[0]
        return self._check(self.cudart.cudaGetDeviceProperties(device))[0]

    def device_name(self) -> str:
        name = self._properties().name
        return (name.decode(errors="replace") if isinstance(name, bytes) else str(name)).split("\x00")[0].strip()

    def compute_capability(self) -> str:
        props = self._properties()
        return f"{int(props.major)}.{int(props.minor)}"

    def close(self) -> None:
        if getattr(self, "_stream", None) is not None:
            self._check(self.cudart.cudaStreamDestroy(self._stream))
            self._stream = None


class PyCudaMemory(CudaMemory):
    """pycuda (its ``autoinit`` makes a context on device 0)."""

    def __init__(self, driver: Any, autoinit: Any) -> None:
        self.driver = driver
        self.device = autoinit.device
        self.stream = driver.Stream()
        self.stream_handle = int(self.stream.handle)
        self._allocations = {}  # address -> DeviceAllocation, which frees itself when dropped

    def alloc(self, nbytes: int) -> int:
        allocation = self.driver.mem_alloc(max(int(nbytes), 1))
        self._allocations[int(allocation)] = allocation
        return int(allocation)

    def free(self, address: int) -> None:
        self._allocations.pop(address).free()

    def to_device(self, address: int, array: np.ndarray) -> None:
        self.driver.memcpy_htod_async(address, array, self.stream)

    def to_host(self, array: np.ndarray, address: int) -> None:
        self.driver.memcpy_dtoh_async(array, address, self.stream)

    def synchronize(self) -> None:
        self.stream.synchronize()

    def device_name(self) -> str:
        return str(self.device.name()).strip()

    def compute_capability(self) -> str:
        major, minor = self.device.compute_capability()
        return f"{int(major)}.{int(minor)}"


def open_cuda() -> CudaMemory:
    """The first CUDA binding that imports and works: cuda-python (new or old layout), else pycuda.

    Raises:
        BackendUnavailableError: none is installed, or none can talk to this device's driver (the reasons named).
    """
    failures: List[str] = []
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return CudaPythonMemory(importlib.import_module(name))
        except ImportError:
            continue
        except (RuntimeError, OSError) as exc:  # imports, but built for another CUDA than this driver's
            failures.append(f"{name}: {exc}")
            LOGGER.warning("%s does not work here (%s); trying the next CUDA binding", name, exc)
    try:
        driver = importlib.import_module("pycuda.driver")
        autoinit = importlib.import_module("pycuda.autoinit")
        return PyCudaMemory(driver, autoinit)
    except ImportError:
        pass
    except Exception as exc:  # pycuda.driver.Error and its subclasses (no common base to import beforehand)
        failures.append(f"pycuda: {exc}")
    if failures:
        raise BackendUnavailableError(
            "no CUDA binding works with this device's driver (" + "; ".join(failures) + "): install the one built "
            "for this CUDA (JetPack 5: pip install pycuda or 'cuda-python>=11.4,<12'; JetPack 6: "
            "'cuda-python>=12.2,<13'), see the README's TensorRT section"
        )
    raise BackendUnavailableError(
        "TensorRT needs a CUDA binding for its buffers: pip install 'lite-deploy[tensorrt]' (cuda-python) "
        "or pip install pycuda"
    )
