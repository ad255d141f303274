"""The run path per TensorRT version against the table-generated stand-ins: plugins before deserialising, the
name-based tensor API, engines from JetPack 5 (pycuda names the GPU differently), profile --threads, and the CUDA
binding fallback."""

from __future__ import annotations

import types

import numpy as np
import pytest

from lite_deploy.errors import BackendUnavailableError, EngineMismatchError
from lite_deploy.runtime.backends.tensorrt import cuda as trt_cuda
from lite_deploy.runtime.backends.tensorrt.engine import TensorRTRuntime
from lite_deploy.spec import ModelSpec, sidecar_path

NMS_IO = [("images", "INPUT", (-1, 3, 64, 64), "FLOAT"), ("num_dets", "OUTPUT", (-1, 1), "INT32"),
          ("det_boxes", "OUTPUT", (-1, 20, 4), "FLOAT"), ("det_scores", "OUTPUT", (-1, 20), "FLOAT"),
          ("det_classes", "OUTPUT", (-1, 20), "INT32")]
VERSIONS = ["8.5", "8.6", "10.3", "10.16", "11.1", "11.4"]


def write_engine(tmp_path, trt, gpu="NVIDIA Jetson AGX Orin Developer Kit", cc="8.7"):
    path = tmp_path / "m.engine"
    path.write_bytes(b"engine-bytes")
    ModelSpec(task="detect", names=("a",), imgsz=(64, 64), output_layout="nms", target="tensorrt", batch=None,
              output_names=tuple(n for n, mode, _, _ in NMS_IO if mode == "OUTPUT"),
              extra={"tensorrt": trt.__version__, "gpu": gpu, "compute_capability": cc}).save(sidecar_path(path))
    return path


@pytest.mark.parametrize("version", VERSIONS)
def test_engine_with_efficient_nms_loads_in_a_fresh_process(tmp_path, use_trt, version, caplog):
    """Without init_libnvinfer_plugins, deserialising an engine holding EfficientNMS_TRT fails."""
    trt = use_trt(version, io=NMS_IO, needs_plugins=True)
    path = write_engine(tmp_path, trt)
    with TensorRTRuntime(path) as rt:  # built on the device-tree name, loaded where pycuda says "Orin"
        out = rt.infer(np.zeros((2, 3, 64, 64), np.float32))
    names = [n for n, _ in trt.calls]
    assert names.index("init_libnvinfer_plugins") < names.index("Runtime.deserialize_cuda_engine")
    assert out["det_boxes"].shape == (2, 20, 4) and out["num_dets"].dtype == np.int32
    assert "named 'NVIDIA Jetson AGX Orin Developer Kit', this one is named 'Orin'" in caplog.text
    assert not any(n.startswith(("IExecutionContext.execute_async_v2", "ICudaEngine.get_binding")) for n in names)


def test_other_architecture_is_refused_before_deserialising(tmp_path, use_trt):
    trt = use_trt("10.3", io=NMS_IO)
    with pytest.raises(EngineMismatchError, match="compute capability 7.2"):
        TensorRTRuntime(write_engine(tmp_path, trt, gpu="Xavier", cc="7.2"))
    assert "Runtime.deserialize_cuda_engine" not in [n for n, _ in trt.calls]


def test_no_execution_context_says_out_of_memory(tmp_path, use_trt, monkeypatch):
    import fake_trt

    trt = use_trt("8.5", io=NMS_IO)
    monkeypatch.setitem(fake_trt._BEHAVIOUR, "ICudaEngine.create_execution_context", lambda m, e: None)
    with pytest.raises(BackendUnavailableError, match="out of memory"):
        TensorRTRuntime(write_engine(tmp_path, trt))


def test_profile_threads_is_accepted_for_an_engine(tmp_path, use_trt):
    """``profile --threads N`` passes threads to every backend; TensorRTRuntime raised TypeError."""
    from lite_deploy.runtime import load_runtime

    trt = use_trt("10.3", io=NMS_IO)
    with load_runtime(write_engine(tmp_path, trt), threads=2) as rt:
        assert rt.infer(np.zeros((1, 3, 64, 64), np.float32))["num_dets"].shape == (1, 1)


class BrokenCudart:
    """cuda-bindings 13 on a CUDA 12 driver: imports, then every call fails."""

    class cudaError_t:
        cudaSuccess = 0

    @staticmethod
    def cudaStreamCreate():
        return (35, None)

    @staticmethod
    def cudaGetErrorString(err):
        return (0, b"cudaErrorInsufficientDriver")


def test_cuda_binding_that_fails_at_runtime_falls_back_to_pycuda(monkeypatch):
    device = types.SimpleNamespace(name=lambda: "Orin", compute_capability=lambda: (8, 7))
    stream = types.SimpleNamespace(handle=5)
    modules = {"cuda.bindings.runtime": BrokenCudart, "pycuda.driver": types.SimpleNamespace(Stream=lambda: stream),
               "pycuda.autoinit": types.SimpleNamespace(device=device)}

    def fake_import(name):
        if name not in modules:
            raise ImportError(name)
        return modules[name]

    monkeypatch.setattr(trt_cuda.importlib, "import_module", fake_import)
    memory = trt_cuda.open_cuda()
    assert isinstance(memory, trt_cuda.PyCudaMemory) and memory.compute_capability() == "8.7"
    del modules["pycuda.driver"]
    with pytest.raises(BackendUnavailableError, match="cudaErrorInsufficientDriver.*JetPack 5: pip install pycuda"):
        trt_cuda.open_cuda()
