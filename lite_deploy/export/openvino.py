"""Convert an exported ONNX model to OpenVINO IR (``.xml`` + ``.bin``), FP32 or with FP16-compressed weights."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

from ..errors import BackendUnavailableError, ExportError
from ..spec import ModelSpec, sidecar_path

# Where the spec JSON lives in the IR's rt_info (read back by the OpenVINO runtime backend).
RT_INFO_PATH = ["lite_deploy", "spec"]


def onnx_to_openvino(onnx_path: Union[str, Path], xml_path: Union[str, Path], spec: ModelSpec) -> Path:
    """Convert ``onnx_path`` to an IR at ``xml_path`` (weights beside it as ``.bin``), spec in rt_info and JSON.

    ``spec.precision == "fp16"`` stores the weights as float16 (``compress_to_fp16``); the runtime still chooses
    the inference precision from the spec. Both files are written into a temporary folder first and moved into
    place ``.bin`` first, then ``.xml``, so a reader never finds an ``.xml`` without its weights.

    Args:
        onnx_path: the FP32 ONNX model.
        xml_path: destination ``.xml``.
        spec: the artifact's spec (``target`` ``openvino``).

    Returns:
        ``xml_path``.

    Raises:
        BackendUnavailableError: OpenVINO is not installed.
        ExportError: OpenVINO cannot convert the model.
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise BackendUnavailableError("OpenVINO is not installed: pip install 'lite-deploy[openvino]'") from exc
    xml_path = Path(xml_path)
    try:
        model = ov.convert_model(str(onnx_path))
    except Exception as exc:  # OpenVINO raises its own OpConversionFailure / RuntimeError types
        lines = [line for line in str(exc).splitlines() if line.strip()]
        detail = next((line for line in lines if "onversion" in line or "not supported" in line), lines[0] if lines else "")
        raise ExportError(f"OpenVINO cannot convert {Path(onnx_path).name}: {detail.strip()}") from exc
    model.set_rt_info(spec.to_json(), RT_INFO_PATH)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", dir=str(xml_path.parent)))
    try:
        ov.save_model(model, str(tmp / xml_path.name), compress_to_fp16=spec.precision == "fp16")
        os.replace(tmp / xml_path.with_suffix(".bin").name, xml_path.with_suffix(".bin"))
        os.replace(tmp / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    spec.save(sidecar_path(xml_path))
    return xml_path

