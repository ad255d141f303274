"""Stand-in ``tensorrt`` modules generated from the per-version API tables in ``../shared/reference/tensorrt-api``.

``fake_tensorrt("8.5")`` is a module with exactly the classes, enums, enum values, class members and functions
that TensorRT 8.5.2's Python bindings have: any other name raises ``AttributeError``, as the real module would
(pybind11 objects also refuse to have unknown attributes set). Every use of a TensorRT name is recorded in
``module.used`` as ``"Class.member"`` / ``"Enum.VALUE"`` / ``"function"``, and calls in ``module.calls``.

Behaviour is the least the build and run paths need: a parser that accepts, a network of layers
(``layers=``: ``(LayerType name, output dtypes)``), a config, an engine and a context over the tensors given
(``io=``: ``(name, "INPUT"/"OUTPUT", shape, DataType name)``), ``init_libnvinfer_plugins`` registering the
plugins (deserialising an engine that needs a plugin fails before). No GPU work happens.
"""

from __future__ import annotations

import importlib.machinery
import json
import types
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

API_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "tensorrt-api"
VERSIONS = ("8.5", "8.6", "10.3", "10.16", "11.1", "11.4")
FULL_VERSIONS = {"8.5": "8.5.2.2", "8.6": "8.6.2.3", "10.3": "10.3.0.30", "10.16": "10.16.1.11", "11.1": "11.1.0.106",
                 "11.4": "11.4.0.106"}


def api_table(version: str) -> Dict[str, Any]:
    """The JSON table of one version."""
    return json.loads((API_DIR / f"tensorrt-{version}.json").read_text())


class EnumValue:
    """One value of a pybind11 enum: ``int()``, ``.name``, equality by enum and name."""

    def __init__(self, enum: str, name: str, value: int) -> None:
        self.enum, self.name, self.value = enum, name, value

    def __int__(self) -> int:
        return self.value

    def __index__(self) -> int:
        return self.value

    def __eq__(self, other: object) -> bool:
        return isinstance(other, EnumValue) and (other.enum, other.name) == (self.enum, self.name)

    def __hash__(self) -> int:
        return hash((self.enum, self.name))

    def __repr__(self) -> str:
        return f"{self.enum}.{self.name}"


class _Enum:
    """A pybind11 enum: its values as attributes; a missing one raises AttributeError (and is not recorded)."""

    def __init__(self, module: "FakeTensorRT", name: str, values: Sequence[str]) -> None:
        object.__setattr__(self, "_module", module)
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_values", {v: EnumValue(name, v, i) for i, v in enumerate(values)})

    def __getattr__(self, item: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if item not in values:
            raise AttributeError(f"type object '{self._name}' has no attribute '{item}'")
        self._module.used.add(f"{self._name}.{item}")
        return values[item]


class FakeTensorRT(types.ModuleType):
    """A ``tensorrt`` module of one version (see the module docstring)."""

    def __init__(self, version: str, *, io: Sequence[Tuple[str, str, Tuple[int, ...], str]] = (),
                 layers: Sequence[Tuple[str, Sequence[str]]] = (), input_shape: Tuple[int, ...] = (1, 3, 64, 64),
                 needs_plugins: bool = False, parse_ok: bool = True) -> None:
        super().__init__("tensorrt")
        self.__spec__ = importlib.machinery.ModuleSpec("tensorrt", None)  # what importlib.util.find_spec returns
        table = api_table(version)
        self.__version__ = FULL_VERSIONS[version]
        self.table, self.used, self.calls = table, set(), []
        self.io, self.layers, self.input_shape = list(io), list(layers), tuple(input_shape)
        self.needs_plugins, self.plugins_ready, self.parse_ok = needs_plugins, False, parse_ok
        self._enums = {name: _Enum(self, name, values) for name, values in table["enums"].items() if "." not in name}
        self._classes: Dict[str, type] = {}
        for name in table["classes"]:
            self._classes[name] = self._make_class(name)

    # ------------------------------------------------------------------ module attributes
    def __getattr__(self, item: str) -> Any:
        if item.startswith("__") or item.startswith("_"):
            raise AttributeError(item)
        if item in self._classes:
            self.used.add(item)
            return self._classes[item]
        if item in self._enums:
            self.used.add(item)
            return self._enums[item]
        if item in self.table["functions"]:
            self.used.add(item)
            return self._function(item)
        if item in self.table["module_attributes"]:
            self.used.add(item)
            return self._values("DataType").get(_DTYPE_NAMES.get(item, ""), item)
        raise AttributeError(f"module 'tensorrt' ({self.__version__}) has no attribute '{item}'")

    def _function(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            self.calls.append((name, args))
            if name == "init_libnvinfer_plugins":
                self.plugins_ready = True
                return True
            return None
        return call

    # ------------------------------------------------------------------ classes
    def _make_class(self, name: str) -> type:
        module = self
        info = self.table["classes"][name]
        members = set(info["members"])
        kinds = info.get("member_kinds", {})
        nested = {m: self._nested_enum(f"{name}.{m}") for m in members if f"{name}.{m}" in self.table["enums"]}
        nested_values = {v: value for e in nested.values()
                         for v, value in object.__getattribute__(e, "_values").items() if v in members}

        class Meta(type):
            def __getattr__(cls, item: str) -> Any:
                if item in nested:
                    module.used.add(f"{name}.{item}")
                    return nested[item]
                if item in nested_values:
                    module.used.add(f"{name}.{item}")
                    return nested_values[item]
                raise AttributeError(f"type object '{name}' has no attribute '{item}'")

        def __init__(obj: Any, *args: Any, **kwargs: Any) -> None:
            module.used.add(f"{name}.__init__")
            if "__init__" not in members:
                raise TypeError(f"tensorrt.{name}: No constructor defined!")
            module.calls.append((f"{name}.__init__", args))
            object.__setattr__(obj, "_args", args)

        def __getattr__(obj: Any, item: str) -> Any:
            if item.startswith("_") and not item.startswith("__"):
                raise AttributeError(item)
            if item not in members:
                raise AttributeError(f"'tensorrt.{name}' object has no attribute '{item}'")
            module.used.add(f"{name}.{item}")
            state = object.__getattribute__(obj, "__dict__")
            if item in state.get("_props", {}):
                return state["_props"][item]
            behaviour = _BEHAVIOUR.get(f"{name}.{item}")
            if kinds.get(item, "method").startswith("property") or kinds.get(item) == "attribute":
                return behaviour(module, obj) if behaviour else None

            def method(*args: Any, **kwargs: Any) -> Any:
                module.calls.append((f"{name}.{item}", args))
                return behaviour(module, obj, *args) if behaviour else None
            return method

        def __setattr__(obj: Any, item: str, value: Any) -> None:
            if type(obj).__name__ == name and type(obj).__module__ == "tensorrt":  # not a Python subclass
                if item not in members:
                    raise AttributeError(f"'tensorrt.{name}' object has no attribute '{item}'")
                module.used.add(f"{name}.{item}")
                module.calls.append((f"{name}.{item}=", (value,)))
                object.__getattribute__(obj, "__dict__").setdefault("_props", {})[item] = value
            else:
                object.__setattr__(obj, item, value)

        cls = Meta(name, (), {"__init__": __init__, "__getattr__": __getattr__, "__setattr__": __setattr__,
                              "__module__": "tensorrt"})
        return cls

    def _nested_enum(self, key: str) -> _Enum:
        """A class's enum (``ILogger.Severity``); an alias (``Logger.Severity``) is the very same object."""
        key = self.table["enum_aliases"].get(key, {}).get("alias_of", key)
        if key not in self._enums:
            self._enums[key] = _Enum(self, key, self.table["enums"][key])
        return self._enums[key]

    def new(self, cls_name: str, **props: Any) -> Any:
        """An instance of class ``cls_name`` with properties preset (each must be a member of the class)."""
        cls = self._classes[cls_name]
        obj = cls.__new__(cls)
        for key in props:
            if key not in self.table["classes"][cls_name]["members"]:
                raise AttributeError(f"'tensorrt.{cls_name}' object has no attribute '{key}'")
        object.__getattribute__(obj, "__dict__")["_props"] = dict(props)
        return obj

    def _values(self, enum: str) -> Dict[str, EnumValue]:
        """An enum's values without recording a use (for the stand-in's own bookkeeping)."""
        return object.__getattribute__(self._enums[enum], "_values")

    def dtype(self, name: str) -> EnumValue:
        """``DataType.<name>``, not recorded."""
        return self._values("DataType")[name]


# module-level dtype aliases (``trt.float32`` is ``DataType.FLOAT``)
_DTYPE_NAMES = {"float32": "FLOAT", "float16": "HALF", "int8": "INT8", "int32": "INT32", "bool": "BOOL",
                "uint8": "UINT8", "int64": "INT64", "bfloat16": "BF16"}


# ---------------------------------------------------------------------- behaviour of the few calls that return
def _network(m: FakeTensorRT, builder: Any, flags: int = 0) -> Any:
    layers = []
    for kind, dtypes in m.layers:
        outputs = [m.new("ITensor", dtype=m.dtype(d), name=f"t{i}") for i, d in enumerate(dtypes)]
        layers.append(_layer(m, kind, outputs))
    net = m.new("INetworkDefinition", num_layers=len(layers), num_inputs=1)
    object.__getattribute__(net, "__dict__")["_layers"] = layers
    object.__getattribute__(net, "__dict__")["_flags"] = flags
    return net


def _layer(m: FakeTensorRT, kind: str, outputs: List[Any]) -> Any:
    layer = m.new("ILayer", type=m._values("LayerType")[kind], num_outputs=len(outputs))
    object.__getattribute__(layer, "__dict__")["_outputs"] = outputs
    return layer


def _engine(m: FakeTensorRT, runtime: Any, data: bytes) -> Any:
    logger = object.__getattribute__(runtime, "_args")[0]
    for severity in ("INTERNAL_ERROR", "ERROR", "WARNING", "INFO"):  # TensorRT talks through the logger
        logger.log(object.__getattribute__(m._nested_enum("ILogger.Severity"), "_values")[severity], "message")
    if m.needs_plugins and not m.plugins_ready:
        return None  # "getPluginCreator could not find plugin EfficientNMS_TRT"
    return m.new("ICudaEngine", num_io_tensors=len(m.io))


def _find(m: FakeTensorRT, name: str) -> Tuple[str, str, Tuple[int, ...], str]:
    return next(t for t in m.io if t[0] == name)


_BEHAVIOUR = {
    "Builder.create_network": _network,
    "Builder.create_builder_config": lambda m, b: m.new("IBuilderConfig"),
    "Builder.create_optimization_profile": lambda m, b: m.new("IOptimizationProfile"),
    "Builder.build_serialized_network": lambda m, b, net, cfg: b"engine-bytes",
    "OnnxParser.parse": lambda m, p, data, *a: m.parse_ok and (not m.needs_plugins or m.plugins_ready),
    "OnnxParser.get_error": lambda m, p, i: m.new("ParserError"),
    "OnnxParser.num_errors": lambda m, p: 1,
    "INetworkDefinition.get_input": lambda m, n, i: m.new("ITensor", name="images", shape=m.input_shape),
    "INetworkDefinition.get_layer": lambda m, n, i: object.__getattribute__(n, "__dict__")["_layers"][i],
    "ILayer.get_output": lambda m, layer, j: object.__getattribute__(layer, "__dict__")["_outputs"][j],
    "IBuilderConfig.create_timing_cache": lambda m, c, data: m.new("ITimingCache"),
    "IBuilderConfig.get_timing_cache": lambda m, c: m.new("ITimingCache"),
    "IBuilderConfig.set_timing_cache": lambda m, c, cache, ignore: True,
    "ITimingCache.serialize": lambda m, c: b"timing-cache",
    "Runtime.deserialize_cuda_engine": _engine,
    "ICudaEngine.create_execution_context": lambda m, e: m.new("IExecutionContext"),
    "ICudaEngine.get_tensor_name": lambda m, e, i: m.io[i][0],
    "ICudaEngine.get_tensor_mode": lambda m, e, name: getattr(m.TensorIOMode, _find(m, name)[1]),
    "ICudaEngine.get_tensor_shape": lambda m, e, name: _find(m, name)[2],
    "ICudaEngine.get_tensor_dtype": lambda m, e, name: m.dtype(_find(m, name)[3]),
    "ICudaEngine.get_tensor_profile_shape": lambda m, e, name, p: ([1, *_find(m, name)[2][1:]],) * 2
    + ([4, *_find(m, name)[2][1:]],),
    "IExecutionContext.get_tensor_shape": lambda m, c, name: (
        object.__getattribute__(c, "__dict__").get("_batch", 1), *_find(m, name)[2][1:]),
    "IExecutionContext.set_input_shape": lambda m, c, name, shape: object.__getattribute__(c, "__dict__").update(
        _batch=shape[0]) or True,
    "IExecutionContext.set_tensor_address": lambda m, c, name, address: True,
    "IExecutionContext.execute_async_v3": lambda m, c, stream: True,
}


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


def fake_tensorrt(version: str, **behaviour: Any) -> FakeTensorRT:
    """The stand-in module of ``version`` (a key of :data:`VERSIONS`); see :class:`FakeTensorRT` for options."""
    return FakeTensorRT(version, **behaviour)


def tables_present() -> Optional[str]:
    """``None`` when every table is there, else why the tests that need them are skipped."""
    missing = [v for v in VERSIONS if not (API_DIR / f"tensorrt-{v}.json").is_file()]
    return f"TensorRT API tables missing in {API_DIR}: {missing}" if missing else None
