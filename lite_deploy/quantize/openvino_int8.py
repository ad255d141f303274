"""OpenVINO INT8: NNCF's quantization of the FP32 IR, checked to compile; else an IR of a uint8 Q/DQ ONNX.

NNCF (``nncf.quantize``, PERFORMANCE preset, activation ranges the mean of each image's min and max as everywhere in
lite-deploy, see :mod:`.calibration`) places its quantizers where OpenVINO's CPU plugin runs int8 kernels: on the
bundled demo at 320 (OpenVINO 2026.4, 2 threads, 100 calibration images) its IR ran at 3.36 ms against FP32 4.34 ms,
where the IR converted from a Q/DQ ONNX (``Conv`` and ``Concat`` quantized, uint8 activations) ran at 4.16 ms:
it left 54 layout reorders and ``Concat``/``Gather`` reference kernels between the convolutions. The same layers as
in every INT8 path stay in float (:func:`~lite_deploy.quantize.qdq_onnx.decode_nodes`), plus the gate's fallback ones.

NNCF's IR once crashed OpenVINO's CPU plugin at compile time (SIGSEGV: a ``Concat`` of int8 tensors of different
scales followed by a channel ``Gather``, GSConv's shuffle, before the export folded such gathers into the
convolutions). A crash would end the export, so :func:`compiles` tries the IR in a child process first; an IR that
does not compile there is replaced by the Q/DQ route (:func:`check_int8_ir`), which puts a quantizer on every
``Concat`` output. Symmetric int8 activations ran wrong on OpenVINO's CPU plugin while channel gathers preceded
convolutions (mAP50-95 0.28 where ONNX Runtime ran the same file at 33.53), so that route takes uint8 activations.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator, List, Sequence

import numpy as np

from ..errors import BackendUnavailableError, ExportError
from ..runtime.calibration import CalibrationSet


def nncf_quantize(fp32_onnx: Path, calib: CalibrationSet, batch: int, float_nodes: Sequence[str]) -> Any:
    """The ``ov.Model`` NNCF quantizes from the FP32 ONNX, ``float_nodes`` (ONNX node names) left in float.

    Args:
        fp32_onnx: the FP32 ONNX (one input, fixed batch ``batch``).
        calib: calibration images, pre-processed with the FP32 model's spec.
        batch: images per calibration blob (the model's batch size).
        float_nodes: node names to keep in float; names the IR does not have are skipped.

    Raises:
        BackendUnavailableError: NNCF or OpenVINO is not installed.
    """
    try:
        import nncf
        import openvino as ov
        from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters
        from nncf.quantization.range_estimator import RangeEstimatorParametersSet
    except ImportError as exc:
        raise BackendUnavailableError("OpenVINO INT8 needs NNCF: pip install 'lite-deploy[openvino]'") from exc
    model = ov.convert_model(str(fp32_onnx))
    names = {op.get_friendly_name() for op in model.get_ops()}
    blobs = _Blobs(calib, batch)
    nncf.set_log_level(logging.WARNING)  # not its per-node INFO lines; its progress bars stay
    return nncf.quantize(
        model, nncf.Dataset(blobs), preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(blobs),
        ignored_scope=nncf.IgnoredScope(names=[n for n in _ir_names(float_nodes) if n in names], validate=False),
        advanced_parameters=AdvancedQuantizationParameters(
            activations_range_estimator_params=RangeEstimatorParametersSet.MEAN_MINMAX),
    )


def _ir_names(onnx_nodes: Sequence[str]) -> List[str]:
    """The IR operations of ONNX nodes: a ``Conv`` node ``X`` with a bias becomes ``X/WithoutBiases`` (the
    convolution) and ``X`` (the bias ``Add``)."""
    return [name for node in onnx_nodes for name in (node, f"{node}/WithoutBiases")]


class _Blobs:
    """The calibration blobs as a sized iterable NNCF can go through twice (statistics, then bias correction) without
    holding them all in memory."""

    def __init__(self, calib: CalibrationSet, batch: int) -> None:
        self.calib, self.batch = calib, batch

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.calib.batches(self.batch)

    def __len__(self) -> int:
        return -(-len(self.calib.images) // self.batch)


def compiles(xml_path: Path, timeout: float = 300.0) -> bool:
    """Whether OpenVINO's CPU plugin compiles the IR, tried in a child process (a crash there ends only the child)."""
    code = "import sys, openvino as ov; ov.Core().compile_model(sys.argv[1], 'CPU')"
    try:
        done = subprocess.run([sys.executable, "-c", code, str(xml_path)], capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False
    return done.returncode == 0


def check_int8_ir(xml_path: Path, source: str) -> Path:
    """Refuse an IR without ``FakeQuantize`` (converted from the Q/DQ ONNX ``source``): it is not an INT8 model.

    Returns:
        ``xml_path``.

    Raises:
        ExportError: no ``FakeQuantize`` in the IR.
    """
    import openvino as ov

    if fake_quantize_count(ov.Core().read_model(str(xml_path))) == 0:
        raise ExportError(f"{source} converted to an IR without FakeQuantize: it is not an INT8 model")
    return xml_path


def fake_quantize_count(model) -> int:
    """Number of ``FakeQuantize`` operations (OpenVINO's form of a Q/DQ pair) in an ``ov.Model``."""
    return sum(op.get_type_name() == "FakeQuantize" for op in model.get_ops())
