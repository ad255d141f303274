"""TensorRT <= 10 implicit INT8: an ``IInt8EntropyCalibrator2`` with a calibration cache that is checked before reuse.

:func:`~.build.build_engine` attaches it (``config.int8_calibrator``, and ``config.set_calibration_profile`` for a
dynamic batch) when ``build-engine --int8 --calib IMAGES`` builds an FP32 ONNX on TensorRT 8.5, 8.6 or 10.x (where
calibration is deprecated but present). TensorRT 11 removed the calibrators (explicit quantization only): there,
and as the portable choice everywhere, build from the Q/DQ ONNX (``lite-deploy export --target trt --int8``).
The calibrator feeds images pre-processed as the runtime does.

TensorRT reuses a calibration cache blindly: a cache from another model or another TensorRT version gives wrong
scales without a word (NVIDIA/TensorRT#1378, #3137). So every cache has a sidecar ``<cache>.json`` recording the
TensorRT version and the SHA-256 of the ONNX it was calibrated for, and :func:`read_cache` hands TensorRT the
cache only when both match; otherwise the calibrator runs again and overwrites it.

The cache logic is plain Python (testable without TensorRT); the calibrator class is made from the ``tensorrt``
module passed in. Torch-free: it runs on the device.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

import numpy as np

from ....io import atomic_write_bytes
from ...calibration import CalibrationSet

LOGGER = logging.getLogger(__name__)

CACHE_FORMAT = "lite-deploy trt-calibration-cache 1"


def cache_sidecar(cache: Union[str, Path]) -> Path:
    """The sidecar that describes ``cache``: ``model.calib.cache`` -> ``model.calib.cache.json``."""
    cache = Path(cache)
    return cache.with_name(cache.name + ".json")


def write_cache(cache: Union[str, Path], data: bytes, *, trt_version: str, model_sha256: str,
                images: int = 0) -> Path:
    """Write TensorRT's cache bytes and the sidecar naming the TensorRT version and the model hash (atomically)."""
    cache = Path(cache)
    atomic_write_bytes(cache, bytes(data))
    meta = {"format": CACHE_FORMAT, "tensorrt": trt_version, "model_sha256": model_sha256, "images": int(images),
            "algorithm": "entropy2"}
    atomic_write_bytes(cache_sidecar(cache), json.dumps(meta, indent=2).encode())
    return cache


def cache_mismatch(cache: Union[str, Path], *, trt_version: str, model_sha256: str) -> Optional[str]:
    """Why ``cache`` may not be reused for this model and TensorRT, or ``None`` when it may.

    Returns:
        A sentence (no cache, no sidecar, other TensorRT version, other model), or ``None``.
    """
    cache = Path(cache)
    if not cache.is_file():
        return f"no calibration cache at {cache}"
    side = cache_sidecar(cache)
    try:
        meta: Dict[str, Any] = json.loads(side.read_text())
    except (OSError, ValueError):
        return f"{side.name} is missing or unreadable, so {cache.name}'s model and TensorRT version are unknown"
    if meta.get("format") != CACHE_FORMAT:
        return f"{side.name} is not a lite-deploy calibration cache description"
    if meta.get("tensorrt") != trt_version:
        return f"{cache.name} was made by TensorRT {meta.get('tensorrt')}, this is {trt_version}"
    if meta.get("model_sha256") != model_sha256:
        return f"{cache.name} was calibrated for another model (the ONNX changed since)"
    return None


def read_cache(cache: Union[str, Path], *, trt_version: str, model_sha256: str) -> Optional[bytes]:
    """The cache bytes when :func:`cache_mismatch` finds nothing against them, else ``None`` (with the reason
    logged)."""
    reason = cache_mismatch(cache, trt_version=trt_version, model_sha256=model_sha256)
    if reason is not None:
        LOGGER.info("calibrating again: %s", reason)
        return None
    return Path(cache).read_bytes()


def entropy_calibrator(trt: Any, calib: CalibrationSet, *, batch: int, cache: Union[str, Path], model_sha256: str,
                       cuda: Any) -> Any:
    """An ``IInt8EntropyCalibrator2`` over ``calib`` that reads and writes ``cache`` through its checked sidecar.

    Args:
        trt: the ``tensorrt`` module.
        calib: calibration images, pre-processed with the engine's spec (NCHW float32 blobs).
        batch: images per calibration batch (the network's batch, or the profile's for a dynamic one).
        cache: calibration cache path.
        model_sha256: SHA-256 of the ONNX being built.
        cuda: a :class:`~.cuda.CudaMemory` (device buffer and copies).
    """
    version = str(getattr(trt, "__version__", ""))

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        """Feeds calibration blobs to TensorRT one batch at a time from one device buffer."""

        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._batches: Iterator[np.ndarray] = calib.batches(batch)
            self._address: Optional[int] = None
            self._images = 0

        def get_batch_size(self) -> int:
            return batch

        def get_batch(self, names: List[str]) -> Optional[List[int]]:
            blob = next(self._batches, None)
            if blob is None:
                return None
            blob = np.ascontiguousarray(blob, np.float32)
            if self._address is None:
                self._address = cuda.alloc(blob.nbytes)
            cuda.to_device(self._address, blob)
            cuda.synchronize()
            self._images += batch
            return [self._address]

        def read_calibration_cache(self) -> Optional[bytes]:
            return read_cache(cache, trt_version=version, model_sha256=model_sha256)

        def write_calibration_cache(self, data: Any) -> None:
            write_cache(cache, bytes(memoryview(data)), trt_version=version, model_sha256=model_sha256,
                        images=self._images)

        def free(self) -> None:
            """Release the device buffer."""
            if self._address is not None:
                cuda.free(self._address)
                self._address = None

    return EntropyCalibrator()
