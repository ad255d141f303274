"""Per-version ``tensorrt`` stand-ins (generated from ../shared/reference/tensorrt-api) and a host-memory CUDA."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_trt import fake_tensorrt, tables_present  # noqa: E402


class FakeCuda:
    """Host memory standing in for device buffers; the name pycuda gives an Orin."""

    stream_handle = 7

    def __init__(self, name: str = "Orin", cc: str = "8.7") -> None:
        self.buffers: Dict[int, bytearray] = {}
        self.name, self.cc, self.closed = name, cc, False

    def alloc(self, nbytes: int) -> int:
        self.buffers[len(self.buffers) + 1] = bytearray(nbytes)
        return len(self.buffers)

    def free(self, address: int) -> None:
        del self.buffers[address]

    def to_device(self, address: int, array: np.ndarray) -> None:
        self.buffers[address][:array.nbytes] = array.tobytes()

    def to_host(self, array: np.ndarray, address: int) -> None:
        array[...] = 0

    def synchronize(self) -> None:
        pass

    def device_name(self) -> str:
        return self.name

    def compute_capability(self) -> str:
        return self.cc

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def use_trt(monkeypatch):
    """``use_trt(version, **behaviour)`` installs that version's stand-in as ``tensorrt`` and a FakeCuda."""
    reason = tables_present()
    if reason:
        pytest.skip(reason)
    from lite_deploy.runtime.tensorrt import api, cuda, engine

    def install(version: str, **behaviour):
        trt = fake_tensorrt(version, **behaviour)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(api, "_OPENED", {})
        monkeypatch.setattr(cuda, "open_cuda", lambda: FakeCuda())
        monkeypatch.setattr(engine, "open_cuda", lambda: FakeCuda())
        return trt

    return install
