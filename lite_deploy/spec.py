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
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional, Tuple, Union

from .errors import ArtifactMismatchError

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
        """Build from :meth:`to_dict` output; unknown keys from newer versions are ignored."""
        known = {f.name for f in dataclasses.fields(cls)}
        missing = [f.name for f in dataclasses.fields(cls) if f.name in ("task", "names", "imgsz") and f.name not in data]
        if missing:
            raise ValueError(f"model spec lacks required fields {missing}")
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def from_json(cls, text: str) -> "ModelSpec":
        """Parse :meth:`to_json` output."""
        return cls.from_dict(json.loads(text))

    def save(self, path: Union[str, Path]) -> Path:
        """Write the spec atomically to ``path`` and return it."""
        path = Path(path)
        atomic_write_bytes(path, self.to_json().encode())
        return path

    @classmethod
    def load(cls, path: Union[str, Path]) -> "ModelSpec":
        """Read a spec JSON file."""
        return cls.from_json(Path(path).read_text())


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


def atomic_write_bytes(path: Union[str, Path], data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; artifacts are meant to be shared like ordinary files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _check_choice(name: str, value: str, choices: Tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}; got {value!r}")
