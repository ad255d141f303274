"""ModelSpec: what every exported artifact says about itself.

A ``ModelSpec`` is written as ``<artifact>.json`` beside every artifact and embedded where the format has a place
for it (ONNX ``metadata_props``, OpenVINO ``rt_info``, TFLite metadata) under the key :data:`SPEC_KEY`. The device
side rebuilds pre-processing, decoding and NMS from it alone, without torch.

This module runs on the device (Python >= 3.8): standard library only.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple, Union

from .errors import ArtifactMismatchError, SpecError
from .io import atomic_write_bytes

SPEC_KEY = "lite_deploy.spec"
SPEC_VERSION = 1

TASKS = ("detect", "classify")
LAYOUTS = ("NCHW", "NHWC")
# How the outputs of an artifact are to be read:
#   boxes_scores: `boxes` (B, N, 4) xyxy in input pixels and `scores` (B, N, nc)   (this project's detectors)
#   yolov5:       one (B, N, 5+nc) tensor, xywh in input pixels, objectness, class scores (YOLOv5's export.py)
#   nms:          in-graph NMS, `num_dets` (B, 1), `det_boxes` (B, K, 4), `det_scores` (B, K), `det_classes` (B, K)
#   centernet:    `hm` (B, nc, H/4, W/4) sigmoid heatmap, `wh` (B, 2, H/4, W/4), `reg` (B, 2, H/4, W/4): box size
#                 and centre offset in heatmap cells; `strides` gives the cell size in input pixels
#   logits:       (B, nc) class logits (classifiers)
OUTPUT_LAYOUTS = ("boxes_scores", "yolov5", "nms", "centernet", "logits")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
PREPROCESS = ("letterbox", "center_crop")


@dataclass(frozen=True)
class ModelSpec:
    """Everything the runtime needs to feed an artifact and read its outputs.

    Attributes:
        task: ``"detect"`` or ``"classify"``.
        names: class names, index = class id.
        imgsz: network input (height, width) in pixels.
        batch: fixed batch size, or ``None`` for a dynamic batch axis.
        input_name: name of the single image input.
        layout: ``"NCHW"`` or ``"NHWC"`` of the image input.
        input_dtype: ``"float32"``, ``"float16"``, ``"int8"`` or ``"uint8"`` as the artifact's input expects.
        output_names: output tensor names in the order of ``output_layout``.
        output_layout: one of :data:`OUTPUT_LAYOUTS`.
        stride: largest network stride in pixels (letterbox ``auto`` pads to a multiple of it).
        preprocess: ``"letterbox"`` (detectors) or ``"center_crop"`` (classifiers).
        pad_value: letterbox border value (0-255).
        letterbox_auto: pad only to a multiple of ``stride`` (rectangular) instead of to ``imgsz``.
        letterbox_center: split the padding between both sides (YOLOv5) rather than bottom/right only.
        scaleup: allow enlarging images smaller than ``imgsz``.
        mean: per-channel mean subtracted after scaling to [0, 1], RGB order.
        std: per-channel std divided after the mean, RGB order.
        bgr_to_rgb: swap the channels of OpenCV's BGR frames.
        crop_fraction: for ``center_crop``: the centre crop covers this fraction of the resized short side.
        precision: ``fp32``, ``fp16``, ``bf16`` or ``int8``: what the artifact computes in.
        anchors: YOLO anchors in pixels per level, ``((w, h), ...)`` per level, for reference.
        strides: strides of the detection levels.
        source: file name of the source checkpoint.
        source_sha256: hash of the source checkpoint.
        tool_versions: name -> version of the tools that made the artifact.
        target: the format (``onnx``, ``openvino``, ``tflite``, ``tensorrt``).
        extra: format-specific facts (e.g. TensorRT version and GPU of an engine, quantization parameters).
        files: in the sidecar only (written when the export commits the artifact): suffix -> ``{"size": bytes,
            "sha256": hex}`` of each file of the artifact (``.xml`` and ``.bin`` for OpenVINO, else the one file),
            checked by :func:`check_files` on load; empty for older exports and embedded specs, and not compared
            by ``==`` (an embedded spec equals its sidecar); :meth:`replace` drops them unless given.
    """

    task: str
    names: Tuple[str, ...]
    imgsz: Tuple[int, int]
    output_layout: str
    output_names: Tuple[str, ...]
    batch: Optional[int] = 1
    input_name: str = "images"
    layout: str = "NCHW"
    input_dtype: str = "float32"
    stride: int = 32
    preprocess: str = "letterbox"
    pad_value: int = 114
    letterbox_auto: bool = False
    letterbox_center: bool = True
    scaleup: bool = True
    mean: Tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: Tuple[float, float, float] = (1.0, 1.0, 1.0)
    bgr_to_rgb: bool = True
    crop_fraction: float = 0.875
    precision: str = "fp32"
    anchors: Tuple[Tuple[Tuple[float, float], ...], ...] = ()
    strides: Tuple[int, ...] = ()
    source: str = ""
    source_sha256: str = ""
    tool_versions: Dict[str, str] = field(default_factory=dict)
    target: str = ""
    extra: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, Dict[str, Any]] = field(default_factory=dict, compare=False)
    version: int = SPEC_VERSION

    def __post_init__(self) -> None:
        """Validate the enumerated fields and normalise sequences to tuples."""
        _check_choice("task", self.task, TASKS)
        _check_choice("layout", self.layout, LAYOUTS)
        _check_choice("output_layout", self.output_layout, OUTPUT_LAYOUTS)
        _check_choice("precision", self.precision, PRECISIONS)
        _check_choice("preprocess", self.preprocess, PREPROCESS)
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))
        object.__setattr__(self, "imgsz", tuple(int(v) for v in self.imgsz))
        object.__setattr__(self, "output_names", tuple(self.output_names))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        object.__setattr__(self, "strides", tuple(int(v) for v in self.strides))
        object.__setattr__(
            self, "anchors", tuple(tuple(tuple(float(c) for c in a) for a in level) for level in self.anchors)
        )
        if len(self.imgsz) != 2:
            raise ValueError(f"imgsz must be (height, width), got {self.imgsz}")

    @property
    def nc(self) -> int:
        """Number of classes."""
        return len(self.names)

    def replace(self, **changes: Any) -> "ModelSpec":
        """Return a copy with ``changes`` applied (see :func:`dataclasses.replace`).

        The copy describes another file (or this one changed), so :attr:`files`, the records of this spec's own
        file, are dropped unless ``changes`` gives them (``files=file_records(artifact)``): a spec derived from a
        sidecar and saved beside another artifact can never carry the first file's records.
        """
        changes.setdefault("files", {})
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> Dict[str, Any]:
        """Plain JSON-compatible dict."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    def to_json(self) -> str:
        """JSON text, keys in field order."""
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> "ModelSpec":
        """Build from :meth:`to_dict` output; unknown keys from newer versions are ignored.

        Raises:
            SpecError: not a JSON object, a required field missing, or a field of the wrong type or value.
        """
        if not isinstance(data, dict):
            raise SpecError(f"a model spec must be a JSON object, got {type(data).__name__}")
        missing = [name for name in ("task", "names", "imgsz", "output_layout", "output_names") if name not in data]
        if missing:
            raise SpecError(f"model spec lacks required fields {missing}")
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name, value in values.items():
            check, expected = _FIELD_TYPES[name]
            if not check(value):
                raise SpecError(f"model spec field {name!r} must be {expected}, got {json.dumps(value)[:80]}")
        try:
            return cls(**values)
        except ValueError as exc:
            raise SpecError(f"model spec: {exc}") from None

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        """Parse :meth:`to_json` output.

        Raises:
            SpecError: not JSON, or not a valid spec (:meth:`from_dict`).
        """
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise SpecError(f"model spec is not valid JSON ({exc})") from None
        return cls.from_dict(data)

    def save(self, path: Union[str, Path]) -> Path:
        """Write the spec atomically to ``path`` and return it."""
        path = Path(path)
        atomic_write_bytes(path, self.to_json().encode())
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ModelSpec":
        """Read a spec JSON file.

        Raises:
            SpecError: the file is not a valid spec; the message names the file and the field.
        """
        path = Path(path)
        try:
            return cls.from_json(path.read_text(encoding="utf-8", errors="replace"))
        except SpecError as exc:
            raise SpecError(f"{path}: {exc}: fix or delete it and re-export the model") from None


def class_names(value: Any) -> Tuple[str, ...]:
    """Class names from a ``names`` entry as YOLOv5 writes it: a list, or a dict ``{0: name, 1: name, ...}`` (keys
    may be strings of the ids).

    Raises:
        ValueError: neither, or the dict's keys are not exactly the class ids 0..n-1 (the message says which).
    """
    if isinstance(value, (list, tuple)):
        return tuple(str(n) for n in value)
    if not isinstance(value, dict):
        raise ValueError(f"'names' must be a list or a dict {{id: name}}, got {type(value).__name__}")
    try:
        by_id = {int(k): str(v) for k, v in value.items()}
    except (TypeError, ValueError):
        by_id = {}
    if len(by_id) != len(value) or sorted(by_id) != list(range(len(value))):
        raise ValueError(f"'names' keys must be the class ids 0..{len(value) - 1}, got {list(value)[:10]}")
    return tuple(by_id[i] for i in range(len(by_id)))


def sidecar_path(artifact: Union[str, Path]) -> Path:
    """The spec file that belongs to ``artifact``: ``model.onnx`` -> ``model.onnx.json``."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.name + ".json")


def file_sha256(path: Union[str, Path]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def artifact_files(artifact: Union[str, Path]) -> Tuple[Path, ...]:
    """The files that make up ``artifact``: an OpenVINO ``.xml`` and its ``.bin``, else the file alone."""
    artifact = Path(artifact)
    return (artifact, artifact.with_suffix(".bin")) if artifact.suffix.lower() == ".xml" else (artifact,)


def file_records(artifact: Union[str, Path]) -> Dict[str, Dict[str, Any]]:
    """:attr:`ModelSpec.files` of ``artifact``: suffix -> ``{"size": bytes, "sha256": hex}`` of each of its files."""
    return {p.suffix: {"size": p.stat().st_size, "sha256": file_sha256(p)} for p in artifact_files(artifact)}


def check_files(artifact: Union[str, Path]) -> None:
    """Refuse an artifact whose files are not the ones its sidecar recorded (e.g. an ``.xml`` from one export with
    the ``.bin`` of another, left by an interrupted re-export); sizes are compared first, then SHA-256 hashes.

    An artifact without a sidecar, or whose sidecar records no files (older exports, third-party models), or
    whose sidecar cannot be read (reported when its spec is read), passes.

    Raises:
        ArtifactMismatchError: a recorded file is missing or differs (the message says to export again).
    """
    artifact = Path(artifact)
    sidecar = sidecar_path(artifact)
    try:
        records = json.loads(sidecar.read_text()).get("files") or {}
    except (OSError, ValueError, AttributeError):
        return
    if not isinstance(records, dict):
        return
    for suffix, record in sorted(records.items()):
        path = artifact.with_suffix(str(suffix))
        record = record if isinstance(record, dict) else {}
        size = path.stat().st_size if path.is_file() else None
        if size is None:
            problem = "is missing"
        elif size != record.get("size"):
            problem = f"has {size} bytes where {sidecar.name} records {record.get('size')}"
        elif file_sha256(path) != record.get("sha256"):
            problem = f"has another SHA-256 than {sidecar.name} records"
        else:
            continue
        raise ArtifactMismatchError(
            f"{path.name} {problem}: the artifact's files come from different exports (an interrupted export?); "
            f"export it again into {str(artifact.parent)!r} (or, if you changed the file on purpose, delete the "
            f"\"files\" entry of {sidecar.name})"
        )


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _list_of(check: Callable[[Any], bool], length: Optional[int] = None) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, (list, tuple)) and (length is None or len(v) == length) and all(map(check, v))


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_bool(value: Any) -> bool:
    return isinstance(value, bool)


def _is_dict(value: Any) -> bool:
    return isinstance(value, dict)


def _is_positive(value: Any) -> bool:
    return _is_int(value) and value > 0


# field -> (check of its JSON value, what it must be in words)
_FIELD_TYPES: Dict[str, Tuple[Callable[[Any], bool], str]] = {
    "task": (_is_str, "a string"),
    "names": (_list_of(lambda n: isinstance(n, (str, int))), "a list of class names"),
    "imgsz": (_list_of(_is_positive, 2), "[height, width] in positive pixels"),
    "output_layout": (_is_str, "a string"),
    "output_names": (_list_of(_is_str), "a list of strings"),
    "batch": (lambda v: v is None or _is_positive(v), "a positive integer or null"),
    "input_name": (_is_str, "a string"),
    "layout": (_is_str, "a string"),
    "input_dtype": (_is_str, "a string"),
    "stride": (_is_positive, "a positive integer"),
    "preprocess": (_is_str, "a string"),
    "pad_value": (lambda v: _is_int(v) and 0 <= v <= 255, "an integer 0-255"),
    "letterbox_auto": (_is_bool, "true or false"),
    "letterbox_center": (_is_bool, "true or false"),
    "scaleup": (_is_bool, "true or false"),
    "mean": (_list_of(_is_number, 3), "three numbers"),
    "std": (_list_of(_is_number, 3), "three numbers"),
    "bgr_to_rgb": (_is_bool, "true or false"),
    "crop_fraction": (lambda v: _is_number(v) and 0 < v <= 1, "a number in (0, 1]"),
    "precision": (_is_str, "a string"),
    "anchors": (_list_of(_list_of(_list_of(_is_number, 2))), "a list of levels of [w, h] pairs"),
    "strides": (_list_of(_is_positive), "a list of positive integers"),
    "source": (_is_str, "a string"),
    "source_sha256": (_is_str, "a string"),
    "tool_versions": (_is_dict, "an object"),
    "target": (_is_str, "a string"),
    "extra": (_is_dict, "an object"),
    "files": (_is_dict, "an object"),
    "version": (_is_int, "an integer"),
}


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
