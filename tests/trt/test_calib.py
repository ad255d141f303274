"""TensorRT entropy calibrator: the cache is reused only for the same model and TensorRT version (no TensorRT here)."""

from __future__ import annotations

import hashlib
import types
from pathlib import Path
from typing import List

import numpy as np

from lite_deploy.runtime.backends.tensorrt.calib import (
    cache_mismatch,
    cache_sidecar,
    entropy_calibrator,
    read_cache,
    write_cache,
)
from lite_deploy.runtime.calibration import CalibrationSet
from lite_deploy.spec import ModelSpec


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_changed_model_or_tensorrt_invalidates_the_cache(tmp_path: Path) -> None:
    cache = tmp_path / "m.calib.cache"
    model_a, model_b = sha(b"onnx a"), sha(b"onnx b")
    write_cache(cache, b"TRT-8502-EntropyCalibration2\nimages: 3c010a14\n", trt_version="8.5.2", model_sha256=model_a)
    assert read_cache(cache, trt_version="8.5.2", model_sha256=model_a).startswith(b"TRT-8502")
    assert read_cache(cache, trt_version="8.5.2", model_sha256=model_b) is None
    assert "another model" in cache_mismatch(cache, trt_version="8.5.2", model_sha256=model_b)
    assert "TensorRT 8.5.2, this is 10.3.0" in cache_mismatch(cache, trt_version="10.3.0", model_sha256=model_a)
    cache_sidecar(cache).unlink()  # a cache of unknown origin is never trusted
    assert read_cache(cache, trt_version="8.5.2", model_sha256=model_a) is None
    assert "no calibration cache" in cache_mismatch(tmp_path / "none", trt_version="8.5.2", model_sha256=model_a)


class FakeCuda:
    """Host memory standing in for device buffers."""

    def __init__(self) -> None:
        self.buffers = {}

    def alloc(self, nbytes: int) -> int:
        self.buffers[len(self.buffers) + 1] = bytearray(nbytes)
        return len(self.buffers)

    def to_device(self, address: int, array: np.ndarray) -> None:
        self.buffers[address][:] = array.tobytes()

    def synchronize(self) -> None:
        pass

    def free(self, address: int) -> None:
        del self.buffers[address]


def fake_trt(version: str) -> types.SimpleNamespace:
    class IInt8EntropyCalibrator2:
        def __init__(self) -> None:
            pass

    return types.SimpleNamespace(__version__=version, IInt8EntropyCalibrator2=IInt8EntropyCalibrator2)


def test_calibrator_feeds_batches_and_writes_a_checked_cache(tmp_path: Path) -> None:
    import cv2

    images: List[Path] = []
    for i in range(3):
        images.append(tmp_path / f"{i}.png")
        cv2.imwrite(str(images[-1]), np.full((40, 60, 3), 40 * i, np.uint8))
    spec = ModelSpec(task="detect", names=("a",), imgsz=(32, 32), output_layout="boxes_scores",
                     output_names=("boxes", "scores"))
    calib = CalibrationSet(images, spec)
    cuda, cache = FakeCuda(), tmp_path / "model.calib.cache"
    calibrator = entropy_calibrator(fake_trt("10.3.0"), calib, batch=2, cache=cache, model_sha256="abc", cuda=cuda)
    assert calibrator.get_batch_size() == 2 and calibrator.read_calibration_cache() is None
    addresses = [calibrator.get_batch(["images"]) for _ in range(3)]
    assert addresses[0] == addresses[1] == [1] and addresses[2] is None  # 3 images in 2 batches, one buffer
    last = np.frombuffer(bytes(cuda.buffers[1]), np.float32).reshape(2, 3, 32, 32)
    np.testing.assert_allclose(last[0, :, 16, 16], 80 / 255, rtol=1e-6)  # image 2, letterboxed and scaled
    calibrator.write_calibration_cache(memoryview(b"scales"))
    assert cache.read_bytes() == b"scales" and calibrator.read_calibration_cache() == b"scales"
    other = entropy_calibrator(fake_trt("10.3.0"), calib, batch=2, cache=cache, model_sha256="changed", cuda=cuda)
    assert other.read_calibration_cache() is None
    calibrator.free()
    assert not cuda.buffers
