"""Per-version ``tensorrt`` stand-ins (generated from ../shared/reference/tensorrt-api) and a host-memory CUDA."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_trt import FakeCuda, fake_tensorrt, tables_present  # noqa: E402


@pytest.fixture
def use_trt(monkeypatch):
    """``use_trt(version, **behaviour)`` installs that version's stand-in as ``tensorrt`` and a FakeCuda."""
    reason = tables_present()
    if reason:
        pytest.skip(reason)
    from lite_deploy.runtime.backends.tensorrt import api, cuda, engine

    def install(version: str, **behaviour):
        trt = fake_tensorrt(version, **behaviour)
        monkeypatch.setitem(sys.modules, "tensorrt", trt)
        monkeypatch.setattr(api, "_OPENED", None)
        monkeypatch.setattr(cuda, "open_cuda", lambda: FakeCuda())
        monkeypatch.setattr(engine, "open_cuda", lambda: FakeCuda())
        return trt

    return install
