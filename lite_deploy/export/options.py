"""What to export and how: :class:`ExportOptions`, the one declaration behind ``export()``, ``export_targets()``,
``benchmark()`` and the ``export`` / ``benchmark`` command-line options.

Each field carries its command-line form in its metadata (:func:`cli_fields`): help text, the kind of value
(``positive_int``, ``probability`` ... which the CLI maps to its argument types), and aliases such as ``--half``
for ``precision="fp16"``. Torch-free and light: the CLI builds its parser from it without loading a model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple, Union

PRECISIONS = ("fp32", "fp16", "int8")
SIMPLIFIERS = ("onnxslim", "onnxsim")
TFLITE_IO = ("int8", "float32")
DEFAULT_OPSET = 17  # the newest opset TensorRT 8.5 (JetPack 5) parses


def _cli(help: str, **extra: Any) -> Dict[str, Any]:
    """Field metadata: ``help``; ``kind`` (argument type name), ``metavar``, ``choices``, ``flag`` (the option
    string when it is not ``--<field-name>``), ``aliases`` (option string -> the value it stores) and their
    ``alias_help`` (default: "the same as <flag> <value>")."""
    return {"cli": dict(help=help, **extra)}


@dataclass(frozen=True)
class ExportOptions:
    """How to export (every field is also a keyword of :func:`lite_deploy.export.export` and a CLI option).

    Attributes:
        imgsz: input size, one int or (height, width), multiples of the model stride (default: the checkpoint's
            serving size, else 640: :func:`lite_deploy.export.prepare.input_size`).
        batch: fixed batch size (ignored with ``dynamic``).
        dynamic: symbolic batch axis (ONNX, OpenVINO; TensorRT gets an optimization profile).
        precision: ``fp32``; ``fp16`` (FP16 ONNX with float32 I/O, FP16-compressed OpenVINO IR, TFLite FP16
            weights, TensorRT FP16 engine); ``int8`` calibrated on ``calib`` (Q/DQ ONNX, OpenVINO IR from a Q/DQ
            ONNX, TFLite with int8 activations; detection head in float everywhere).
        opset: ONNX opset (17: the newest TensorRT 8.5 / JetPack 5 parses).
        simplifier: ``onnxslim``, ``onnxsim``, or ``None`` to keep the graph as traced.
        nms: end the graph in NMS (ONNX ``NonMaxSuppression`` for ONNX / OpenVINO, ``EfficientNMS_TRT`` for trt).
        max_det, conf, iou: in-graph NMS settings (``nms`` only).
        verify: compare every artifact that runs here with PyTorch (VerificationError beyond tolerance).
        calib: calibration images for INT8: a folder or a data.yaml (its train split).
        calib_size: calibration images used at most (fewer than 100 only when asked for explicitly).
        data: data.yaml whose val split judges FP16/INT8 artifacts by mAP50 and mAP50-95 against the FP32 model
            (default for INT8 with ``verify``: ``calib`` when it is a data.yaml); an INT8 artifact losing more than
            the limits (1 point each when not given) keeps its most sensitive layers in float until it does not.
        max_map_drop: fail when an artifact's mAP50-95 is more than this many points below FP32's on ``data``.
        max_map50_drop: the same for mAP50.
        tflite_io: input type of the INT8 TFLite: ``int8`` (quantized by the runtime) or ``float32``.
    """

    imgsz: Optional[Union[int, Tuple[int, int]]] = field(default=None, metadata=_cli(
        "input size, multiples of the model stride (default: the size the checkpoint serves at, else 640)",
        kind="imgsz"))
    batch: int = field(default=1, metadata=_cli("fixed batch size (default 1)", kind="positive_int"))
    dynamic: bool = field(default=False, metadata=_cli(
        "dynamic batch axis (ONNX, OpenVINO; TensorRT gets an optimization profile)"))
    precision: str = field(default="fp32", metadata=_cli(
        "fp32 (default), fp16 or int8 (calibrated on --calib; detection head kept in float)", choices=PRECISIONS,
        aliases={"--half": "fp16", "--int8": "int8"}))
    opset: int = field(default=DEFAULT_OPSET, metadata=_cli(
        f"ONNX opset (default {DEFAULT_OPSET}, the newest TensorRT 8.5 parses)", kind="positive_int"))
    simplifier: Optional[str] = field(default="onnxslim", metadata=_cli(
        "ONNX simplifier (default onnxslim; onnxsim needs the onnxsim extra)", choices=SIMPLIFIERS,
        aliases={"--no-simplify": None}, alias_help={"--no-simplify": "keep the ONNX graph as traced"}))
    nms: bool = field(default=False, metadata=_cli(
        "end the graph in NMS: ONNX NonMaxSuppression (ONNX, OpenVINO), EfficientNMS_TRT (trt)"))
    max_det: int = field(default=300, metadata=_cli("detections kept per image with --nms (default 300)",
                                                    kind="positive_int"))
    conf: float = field(default=0.25, metadata=_cli("score threshold of --nms (default 0.25)", kind="probability"))
    iou: float = field(default=0.45, metadata=_cli("IoU threshold of --nms (default 0.45)", kind="probability"))
    verify: bool = field(default=True, metadata=_cli("skip the comparison with PyTorch", flag="--no-verify"))
    calib: Optional[str] = field(default=None, metadata=_cli(
        "calibration images for INT8: a folder of images or a data.yaml (its train split)", kind="existing_path",
        metavar="DIR_OR_DATA_YAML"))
    calib_size: int = field(default=300, metadata=_cli(
        "calibration images used (default 300; fewer than 100 only when set explicitly)", kind="positive_int",
        metavar="N"))
    data: Optional[str] = field(default=None, metadata=_cli(
        "validation set judging fp16/int8 artifacts by mAP50 and mAP50-95 against the FP32 model (default for "
        "int8: --calib when it is a data.yaml)", kind="existing_file", metavar="DATA_YAML"))
    max_map_drop: Optional[float] = field(default=None, metadata=_cli(
        "fail when an artifact's mAP50-95 is more than POINTS below the FP32 model's on --data (default: no limit; "
        "INT8 keeps its most sensitive layers in float until within 1 point)", kind="non_negative_float",
        metavar="POINTS"))
    max_map50_drop: Optional[float] = field(default=None, metadata=_cli(
        "the same for mAP50 (default: no limit; INT8 falls back until within 1 point)", kind="non_negative_float",
        metavar="POINTS"))
    tflite_io: str = field(default="int8", metadata=_cli(
        "input type of the INT8 TFLite (default int8, quantized by the runtime); outputs are float32",
        choices=TFLITE_IO))

    def __post_init__(self) -> None:
        checks = (
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.simplifier is None or self.simplifier in SIMPLIFIERS,
             f"unknown simplifier {self.simplifier!r}: choose onnxslim or onnxsim"),
            (self.tflite_io in TFLITE_IO, f"tflite_io must be one of {', '.join(TFLITE_IO)}, got {self.tflite_io!r}"),
            (int(self.batch) >= 1, f"batch must be >= 1, got {self.batch}"),
            (int(self.calib_size) >= 1, f"calib_size must be >= 1, got {self.calib_size}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def build(cls, options: Optional["ExportOptions"] = None, **overrides: Any) -> "ExportOptions":
        """``options`` (default: the defaults) with ``overrides`` applied.

        Raises:
            TypeError: an override that is not a field (the message lists the fields).
            ValueError: a field value out of its range.
        """
        unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise TypeError(f"unknown export option(s) {', '.join(unknown)}: the options are "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
        return dataclasses.replace(options or cls(), **overrides)

    def replace(self, **changes: Any) -> "ExportOptions":
        """A copy with ``changes`` (validated like :meth:`build`)."""
        return ExportOptions.build(self, **changes)

    @property
    def input_batch(self) -> Optional[int]:
        """The batch size of the artifacts' input: ``batch``, or ``None`` for a dynamic batch axis."""
        return None if self.dynamic else int(self.batch)

    @property
    def tag(self) -> str:
        """File-name tag of the precision and NMS choice: ``""``, ``_fp16``, ``_int8``, each + ``_nms``."""
        return ("" if self.precision == "fp32" else f"_{self.precision}") + ("_nms" if self.nms else "")


def cli_fields(names: Optional[Sequence[str]] = None) -> Iterator[Tuple[str, Any, Dict[str, Any]]]:
    """``(name, default, cli metadata)`` of the fields ``names`` (default: all), in declaration order."""
    for f in dataclasses.fields(ExportOptions):
        if names is None or f.name in names:
            yield f.name, f.default, f.metadata["cli"]


def parse_precisions(precisions: Union[str, Sequence[str]]) -> List[str]:
    """``"fp32,int8"`` or a list -> the precisions in table order (fp32, fp16, int8).

    Raises:
        ValueError: an unknown precision, or none.
    """
    items = precisions.split(",") if isinstance(precisions, str) else list(precisions)
    names = [p.strip().lower() for p in items if p.strip()]
    unknown = [p for p in names if p not in PRECISIONS]
    if unknown or not names:
        raise ValueError(f"unknown precision {', '.join(unknown) or repr(precisions)}: choose from "
                         f"{', '.join(PRECISIONS)}")
    return [p for p in PRECISIONS if p in names]
