"""OpenVINO IR: ``<stem><tag>.xml`` + ``.bin``, converted from the FP32 ONNX (FP16: weights compressed to float16) or,
for INT8, quantized by NNCF (:mod:`lite_deploy.quantize.openvino_int8`).
The spec is embedded in the IR's ``rt_info`` (:data:`RT_INFO_PATH`)."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence, Union

from ...errors import BackendUnavailableError, ExportError
from ...spec import ModelSpec
from .base import Built, Target

if TYPE_CHECKING:
    from ..exporter import Job

LOGGER = logging.getLogger(__name__)
RT_INFO_PATH = ["lite_deploy", "spec"]  # where the spec JSON lives in the IR's rt_info


class OpenVINO(Target):
    name = "openvino"
    spec_target = "openvino"
    aliases = ("ov",)
    suffix = ".xml"
    requires = (("openvino", "pip install 'lite-deploy[openvino]'"),)

    def build(self, job: "Job") -> Built:
        offline()
        o = job.options
        spec = job.spec(self.spec_target, tools=job.onnx_tools() + ("openvino",))
        xml_path = job.staged(self.filename(job.stem, o))
        if o.precision == "int8":
            def rebuild(layers: Sequence[str]) -> Path:
                return _int8_ir(job, xml_path, spec, layers)

            xml, seconds, gate = job.judged(rebuild(job.float_layers), spec, rebuild)
        else:
            xml, seconds, gate = job.judged(onnx_to_openvino(job.fp32_onnx(channels_last_decode=True), xml_path, spec),
                                            spec)
        return Built([([xml, xml.with_suffix(".bin")], spec)], seconds, "", gate)


def offline() -> None:
    """Keep OpenVINO's converter and NNCF from sending usage telemetry, in this process.

    Both post events to Google Analytics by default (``openvino_telemetry``: on unless a consent file says no or
    ``CI=true``), from a forked child; lite-deploy works offline, and once TensorFlow or JAX threads exist in the
    process (after a TFLite export) that child deadlocked in ``getaddrinfo`` and hung the export. ``NNCF_CI`` is
    NNCF's own switch, read when it is imported; the consent check is declined for the converter.
    """
    os.environ.setdefault("NNCF_CI", "1")
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:  # no telemetry package, nothing is sent
        return
    OptInChecker.check = lambda self, *args, **kwargs: ConsentCheckResult.DECLINED


def _int8_ir(job: "Job", xml_path: Path, spec: ModelSpec, float_layers: Sequence[str]) -> Path:
    """NNCF's INT8 IR of the job's FP32 reference ONNX (with the channels-last decode), the graph's tail and
    ``float_layers`` in float; the IR of the uint8 Q/DQ ONNX where NNCF's does not compile
    (:mod:`lite_deploy.quantize.openvino_int8`)."""
    import onnx

    from ...quantize.openvino_int8 import check_int8_ir, compiles, nncf_quantize
    from ...quantize.qdq_onnx import decode_nodes

    reference, reference_spec = job.reference(channels_last_decode=True)
    decode, heads = decode_nodes(onnx.load(str(reference)))
    model = nncf_quantize(reference, job.calibration(reference_spec), reference_spec.batch or 1,
                          decode + heads + list(float_layers))
    save_ir(model, xml_path, spec)
    if compiles(xml_path):
        return xml_path
    LOGGER.warning("OpenVINO does not compile NNCF's INT8 IR of %s; converting the Q/DQ ONNX instead", job.stem)
    qdq = job.write_qdq(job.staged(f"{job.stem}.openvino-src.int8.onnx"), spec.replace(target="onnx"), float_layers,
                        "openvino")
    return check_int8_ir(onnx_to_openvino(qdq, xml_path, spec), qdq.name)


def onnx_to_openvino(onnx_path: Union[str, Path], xml_path: Union[str, Path], spec: ModelSpec) -> Path:
    """Convert ``onnx_path`` to an IR at ``xml_path`` (:func:`save_ir`).

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
        detail = next((line for line in lines if "onversion" in line or "not supported" in line),
                      lines[0] if lines else "")
        raise ExportError(f"OpenVINO cannot convert {Path(onnx_path).name}: {detail.strip()}") from exc
    return save_ir(model, xml_path, spec)


def save_ir(model: Any, xml_path: Union[str, Path], spec: ModelSpec) -> Path:
    """Save the ``ov.Model`` as ``xml_path`` (weights beside it as ``.bin``), the spec in its rt_info.

    ``spec.precision == "fp16"`` stores the weights as float16 (``compress_to_fp16``); the runtime still chooses
    the inference precision from the spec. Both files are written into a temporary folder first and moved into
    place ``.bin`` first, then ``.xml``, so a reader never finds an ``.xml`` without its weights.
    """
    import openvino as ov

    xml_path = Path(xml_path)
    model.set_rt_info(spec.to_json(), RT_INFO_PATH)
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{xml_path.stem}.", dir=str(xml_path.parent)))
    try:
        ov.save_model(model, str(tmp / xml_path.name), compress_to_fp16=spec.precision == "fp16")
        os.replace(tmp / xml_path.with_suffix(".bin").name, xml_path.with_suffix(".bin"))
        os.replace(tmp / xml_path.name, xml_path)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return xml_path
