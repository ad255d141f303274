"""TensorRT logic that needs no GPU, against small stand-ins for the engine and context (TensorRT cannot be
installed on these machines)."""

from __future__ import annotations

from enum import Enum
from types import SimpleNamespace

import numpy as np
import pytest

from lite_deploy.errors import BackendUnavailableError, EngineMismatchError
from lite_deploy.runtime import TensorInfo
from lite_deploy.runtime.backends.tensorrt.compat import (
    check_engine_compat,
    check_input_shape,
    describe_io,
    numpy_dtype,
    profile_ranges,
    require_tensor_api,
    resolved_output_shapes,
    same_version,
)


class DataType(Enum):  # the member names of tensorrt.DataType
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    BF16 = 7


class TensorIOMode(Enum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


TRT = SimpleNamespace(TensorIOMode=TensorIOMode, DataType=DataType)


class FakeEngine:
    """The name-based engine surface: dynamic batch input, two outputs."""

    def __init__(self) -> None:
        self.tensors = [("images", TensorIOMode.INPUT, (-1, 3, 640, 640), DataType.HALF),
                        ("boxes", TensorIOMode.OUTPUT, (-1, 25200, 4), DataType.FLOAT),
                        ("scores", TensorIOMode.OUTPUT, (-1, 25200, 80), DataType.FLOAT)]
        self.num_io_tensors = len(self.tensors)

    def _find(self, name):
        return next(t for t in self.tensors if t[0] == name)

    def get_tensor_name(self, i):
        return self.tensors[i][0]

    def get_tensor_mode(self, name):
        return self._find(name)[1]

    def get_tensor_shape(self, name):
        return self._find(name)[2]

    def get_tensor_dtype(self, name):
        return self._find(name)[3]

    def get_tensor_profile_shape(self, name, profile_index):
        assert name == "images" and profile_index == 0
        return [(1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640)]


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine, self.batch = engine, None

    def set_input_shape(self, name, shape):
        self.batch = shape[0]

    def get_tensor_shape(self, name):
        shape = self.engine.get_tensor_shape(name)
        return shape if self.batch is None else (self.batch, *shape[1:])

    def set_tensor_address(self, name, address):
        pass

    def execute_async_v3(self, stream):
        return True


def test_describe_io_and_profiles():
    engine = FakeEngine()
    inputs, outputs = describe_io(engine, TRT)
    assert inputs == (TensorInfo("images", (None, 3, 640, 640), np.dtype(np.float16)),)
    assert [o.name for o in outputs] == ["boxes", "scores"] and outputs[1].shape == (None, 25200, 80)
    ranges = profile_ranges(engine, inputs, 0)
    assert ranges == {"images": ((1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640))}
    assert profile_ranges(SimpleNamespace(), inputs) == {}  # no profile API: only TensorRT's own check


def test_input_shape_checks():
    info = TensorInfo("images", (None, 3, 640, 640), np.dtype(np.float32))
    profile = ((1, 3, 640, 640), (4, 3, 640, 640), (8, 3, 640, 640))
    check_input_shape(info, (8, 3, 640, 640), profile)
    outside = r"outside the engine's optimization profile \(min \(1, 3, 640, 640\), max \(8"
    with pytest.raises(ValueError, match=outside):
        check_input_shape(info, (9, 3, 640, 640), profile)
    with pytest.raises(ValueError, match=r"got shape \(1, 3, 320, 320\), the engine takes \('\?', 3, 640, 640\)"):
        check_input_shape(info, (1, 3, 320, 320), profile)


def test_output_shapes_after_input_shapes():
    engine = FakeEngine()
    context = FakeContext(engine)
    _, outputs = describe_io(engine, TRT)
    with pytest.raises(ValueError, match="data-dependent shape"):
        resolved_output_shapes(context, outputs)
    context.set_input_shape("images", (2, 3, 640, 640))
    assert resolved_output_shapes(context, outputs) == {"boxes": (2, 25200, 4), "scores": (2, 25200, 80)}


def test_dtypes():
    assert numpy_dtype(DataType.HALF) == np.float16 and numpy_dtype(DataType.INT32) == np.int32
    with pytest.raises(ValueError, match="BF16 has no numpy equivalent"):
        numpy_dtype(DataType.BF16)


def test_tensor_api_required():
    engine = FakeEngine()
    require_tensor_api(engine, FakeContext(engine))
    old_context = SimpleNamespace(execute_async_v2=None, set_binding_shape=None)  # TensorRT 8.4 and older
    with pytest.raises(BackendUnavailableError, match="needs TensorRT >= 8.5"):
        require_tensor_api(engine, old_context)


@pytest.mark.parametrize(
    "extra, version, gpu, cc, error",
    [
        ({"tensorrt": "8.5.2.2", "gpu": "Xavier", "compute_capability": "7.2"}, "8.5.2.2", "Xavier", "7.2", None),
        ({"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, "10.3.0.30", "orin", "8.7", None),
        ({"tensorrt": "8.5.2.2", "gpu": "Xavier", "compute_capability": "7.2"}, "10.3.0", "Xavier", "7.2",
         r"built with TensorRT 8\.5\.2\.2, this device has TensorRT 10\.3\.0"),
        ({"tensorrt": "10.3.0", "gpu": "Orin", "compute_capability": "8.7"}, "10.3.0", "NVIDIA GeForce RTX 4090", "8.9",
         r"compute capability 8\.7 \(Orin\), this device's is 8\.9"),
        ({"tensorrt": "10.3.0", "gpu": "Orin", "version_compatible": True}, "10.8.0", "Orin", "8.7", None),
        ({"tensorrt": "10.3.0", "gpu": "A100", "compute_capability": "8.0", "hardware_compatible": True}, "10.3.0",
         "H100", "9.0", None),
    ],
)
def test_engine_compat(extra, version, gpu, cc, error):
    if error is None:
        check_engine_compat(extra, version, gpu, cc, "m.engine")
    else:
        with pytest.raises(EngineMismatchError, match=error + ".*rebuild it on this device"):
            check_engine_compat(extra, version, gpu, cc, "m.engine")


def test_jetpack5_engine_named_differently_by_pycuda_loads_with_a_warning():
    """Build time recorded the device-tree name, pycuda reports "Orin": same compute capability, so it loads."""
    extra = {"tensorrt": "8.5.2.2", "gpu": "NVIDIA Jetson AGX Orin Developer Kit", "compute_capability": "8.7"}
    warnings = check_engine_compat(extra, "8.5.2.2", "Orin", "8.7", "m.engine")
    assert len(warnings) == 1
    assert "named 'NVIDIA Jetson AGX Orin Developer Kit', this one is named 'Orin'" in warnings[0]


def test_engine_compat_unknown_facts_warn():
    warnings = check_engine_compat({"gpu": ""}, "10.3.0", "Orin", "8.7", "m.engine")
    assert len(warnings) == 2 and "TensorRT version" in warnings[0] and "compute capability" in warnings[1]


def test_no_execution_context_is_out_of_memory():
    with pytest.raises(BackendUnavailableError, match="out of memory"):
        require_tensor_api(FakeEngine(), None)


def test_same_version():
    assert same_version("10.3.0", "10.3.0.30") and not same_version("10.3.0", "10.3.1") and not same_version("10", "10")
