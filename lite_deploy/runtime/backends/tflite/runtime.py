"""TFLite backend (``.tflite``) on the LiteRT interpreter (``ai-edge-litert``) with its default XNNPACK delegate.

Quantized (int8/uint8) inputs and outputs are converted with the tensors' own scale and zero point, so callers
always feed and receive float32: ``q = round(x / scale) + zero_point``, ``x = (q - zero_point) * scale``. The spec
embedded in the flatbuffer's metadata (under :data:`~lite_deploy.spec.SPEC_KEY`, as ``lite-deploy export`` writes
it) is read when no sidecar is beside the file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Union

import cv2
import numpy as np
from ai_edge_litert.interpreter import Interpreter

from ....spec import ModelSpec
from ...base import Runtime, invalid_artifact
from ...tensors import TensorInfo, dynamic_dim

_QUANTIZED = (np.int8, np.uint8, np.int16)
_CV_DEPTH = {np.int8: cv2.CV_8S, np.uint8: cv2.CV_8U, np.int16: cv2.CV_16S}


class TFLiteRuntime(Runtime):
    """A ``.tflite`` model in the LiteRT interpreter.

    Outputs are listed in the model signature's order (``output_0``, ``output_1``... = the order of the
    source model's outputs) when the model has a signature, else in the interpreter's order.

    Args:
        path: ``.tflite`` file.
        threads: interpreter (and XNNPACK) threads; ``None``: the interpreter's default.
        spec: the artifact's spec if already known.
    """

    def __init__(self, path: Union[str, Path], threads: Optional[int] = None, spec: Optional[ModelSpec] = None) -> None:
        super().__init__(path, spec)
        try:
            self.interpreter = Interpreter(model_path=str(self.path), num_threads=threads)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:  # not a FlatBuffer (truncated, corrupt) or ops it cannot prepare
            raise invalid_artifact(self.path, "TFLite", exc) from exc
        self._input_details = self.interpreter.get_input_details()
        self._output_details = _signature_order(self.interpreter, self.interpreter.get_output_details())
        self._inputs = tuple(_info(d) for d in self._input_details)
        self._outputs = tuple(_info(d) for d in self._output_details)
        self._allocated = {d["name"]: tuple(int(v) for v in d["shape"]) for d in self._input_details}

    def _infer(self, feeds: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        resized = False
        for detail in self._input_details:
            array = feeds[detail["name"]]
            if tuple(array.shape) != self._allocated[detail["name"]]:
                self.interpreter.resize_tensor_input(detail["index"], list(array.shape))
                self._allocated[detail["name"]] = tuple(array.shape)
                resized = True
        if resized:
            self.interpreter.allocate_tensors()
        for detail in self._input_details:
            self.interpreter.set_tensor(detail["index"], quantize(feeds[detail["name"]], detail))
        self.interpreter.invoke()
        return {d["name"]: dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self._output_details}

    def embedded_metadata(self) -> Dict[str, str]:
        """The flatbuffer's metadata entries whose payload is UTF-8 text (the embedded spec among them)."""
        entries = {}
        for name, payload in metadata_entries(self.path.read_bytes()).items():
            try:
                entries[name] = payload.decode("utf-8")
            except UnicodeDecodeError:  # binary entries (the converter's own) say nothing about the model
                continue
        return entries

    def close(self) -> None:
        """Drop the interpreter."""
        self.__dict__.pop("interpreter", None)


def metadata_entries(flatbuffer: bytes) -> Dict[str, bytes]:
    """``{name: payload}`` of every metadata entry of a TFLite flatbuffer (the ``.tflite`` file's bytes)."""
    from ai_edge_litert import schema_py_generated as schema

    model = schema.Model.GetRootAsModel(flatbuffer, 0)
    entries = {}
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        data = model.Buffers(entry.Buffer()).DataAsNumpy()  # 0, not an array, for an empty buffer
        entries[entry.Name().decode()] = data.tobytes() if isinstance(data, np.ndarray) else b""
    return entries


def read_metadata(flatbuffer: bytes, name: str) -> bytes:
    """The payload of metadata entry ``name`` in a TFLite flatbuffer.

    Raises:
        KeyError: no such entry.
    """
    return metadata_entries(flatbuffer)[name]


def quantize(array: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Float input -> the tensor's integer type with its scale/zero point (float tensors pass through).

    Args:
        array: float32 values as the float model would take them.
        detail: the interpreter's tensor detail (``dtype``, ``quantization`` = (scale, zero point)).
    """
    dtype = np.dtype(detail["dtype"])
    if dtype.type not in _QUANTIZED:
        return array
    scale, zero_point = detail["quantization"]
    q = np.divide(array, np.float32(scale), dtype=np.float32)
    np.rint(q, out=q)
    # + zero point, clip to the type's range and cast in one saturating pass (exact: q holds whole numbers)
    flat = cv2.add(q.reshape(-1, q.shape[-1] if q.ndim > 1 else 1), float(zero_point), dtype=_CV_DEPTH[dtype.type])
    return flat.reshape(array.shape)


def dequantize(array: np.ndarray, detail: Dict[str, Any]) -> np.ndarray:
    """Integer output -> float32 with the tensor's scale/zero point (float tensors are copied as they are)."""
    dtype = np.dtype(detail["dtype"])
    if dtype.type not in _QUANTIZED:
        return array.copy()
    scale, zero_point = detail["quantization"]
    return (array.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


def _info(detail: Dict[str, Any]) -> TensorInfo:
    dtype = np.dtype(detail["dtype"])
    if dtype.type in _QUANTIZED and detail["quantization"][0] != 0:
        dtype = np.dtype(np.float32)  # converted by quantize()/dequantize()
    signature = detail.get("shape_signature", detail["shape"])
    return TensorInfo(detail["name"], tuple(dynamic_dim(int(d)) for d in signature), dtype)


def _signature_order(interpreter: Interpreter, details: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    signatures = interpreter.get_signature_list()
    if len(signatures) != 1:
        return details
    runner = interpreter.get_signature_runner(next(iter(signatures)))
    by_index = {d["index"]: d for d in details}
    named = runner.get_output_details()
    keys = sorted(named, key=lambda k: (len(k), k))  # output_0, output_1, ..., output_10
    ordered = [by_index.get(named[k]["index"]) for k in keys]
    return details if None in ordered or len(ordered) != len(details) else ordered
