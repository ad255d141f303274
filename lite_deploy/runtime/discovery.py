"""Find the :class:`ModelSpec` of an artifact: sidecar JSON, embedded metadata, or inferred from a plain YOLOv5 export.

Order:
1. ``<artifact>.json`` beside the file (:func:`lite_deploy.spec.sidecar_path`);
2. the spec embedded in the artifact under :data:`lite_deploy.spec.SPEC_KEY` (ONNX ``metadata_props``,
   OpenVINO ``rt_info`` ``['lite_deploy', 'spec']``), as the backends report it through
   :meth:`Runtime.embedded_metadata`;
3. a YOLOv5 ``export.py`` ONNX: ``metadata_props`` ``stride`` and ``names`` and one (B, N, 5+nc) output.
"""

from __future__ import annotations

import ast
import json
import logging
from pathlib import Path
from typing import Any, Mapping, Sequence, Tuple, Union

from ..errors import SpecError
from ..spec import SPEC_KEY, ModelSpec, class_names, sidecar_path
from .tensors import TensorInfo

LOGGER = logging.getLogger(__name__)

TARGETS = {".onnx": "onnx", ".xml": "openvino", ".tflite": "tflite", ".engine": "tensorrt", ".plan": "tensorrt"}


def resolve_spec(
    artifact: Union[str, Path],
    metadata: Mapping[str, str],
    inputs: Sequence[TensorInfo],
    outputs: Sequence[TensorInfo],
) -> ModelSpec:
    """Spec of an opened artifact from its sidecar, its embedded ``metadata`` or its tensors.

    Args:
        artifact: the model file (its sidecar is ``<artifact>.json``).
        metadata: key/value metadata stored in the artifact.
        inputs: the artifact's inputs.
        outputs: the artifact's outputs.

    Raises:
        SpecError: nothing says what the model is (the message says what to add).
    """
    sidecar = sidecar_path(artifact)
    if sidecar.is_file():
        return ModelSpec.load(sidecar)
    if SPEC_KEY in metadata:
        try:
            return ModelSpec.from_json(metadata[SPEC_KEY])
        except SpecError as exc:
            raise SpecError(f"{Path(artifact).name}: embedded {exc}: re-export it") from None
    if "names" in metadata and "stride" in metadata:
        return yolov5_spec(artifact, metadata, inputs, outputs)
    raise SpecError(
        f"{Path(artifact).name} does not say what model it is: write its ModelSpec to {sidecar.name} "
        f"(lite-deploy export does), or give it '{SPEC_KEY}' metadata, or for a YOLOv5 export keep the "
        "'stride' and 'names' metadata that YOLOv5's export.py writes"
    )


def yolov5_spec(
    artifact: Union[str, Path], metadata: Mapping[str, str], inputs: Sequence[TensorInfo], outputs: Sequence[TensorInfo]
) -> ModelSpec:
    """Infer the spec of a YOLOv5 ``export.py`` artifact from its ``stride``/``names`` metadata and tensor shapes.

    Raises:
        SpecError: the tensors are not one NCHW image input and one (B, N, 5+nc) output, or the input's
            height/width are dynamic.
    """
    name = Path(artifact).name
    names = parse_names(metadata["names"])
    if len(inputs) != 1 or len(inputs[0].shape) != 4:
        raise SpecError(f"{name}: expected one (B, 3, H, W) image input, got {[tuple(t.shape) for t in inputs]}")
    image = inputs[0]
    height, width = image.shape[2], image.shape[3]
    if height is None or width is None:
        raise SpecError(
            f"{name} has a dynamic input height/width: write a ModelSpec sidecar {sidecar_path(artifact).name} "
            "giving imgsz"
        )
    if not outputs or len(outputs[0].shape) != 3 or outputs[0].shape[2] != 5 + len(names):
        raise SpecError(
            f"{name}: expected a first output of shape (B, N, 5+{len(names)}) for its {len(names)} class names, "
            f"got {[tuple(t.shape) for t in outputs]}"
        )
    LOGGER.info("%s has no ModelSpec: read it as a YOLOv5 export (%d classes, %dx%d)", name, len(names), height, width)
    return ModelSpec(
        task="detect",
        names=names,
        imgsz=(height, width),
        output_layout="yolov5",
        output_names=(outputs[0].name,),
        batch=image.shape[0],
        input_name=image.name,
        stride=int(float(metadata["stride"])),
        target=TARGETS.get(Path(artifact).suffix.lower(), ""),
    )


def parse_names(text: str) -> Tuple[str, ...]:
    """Class names from YOLOv5's ``names`` metadata: ``"{0: 'person', ...}"``, or a JSON list/dict.

    Raises:
        SpecError: the text is neither a Python literal nor JSON of a list or {index: name} dict.
    """
    value: Any
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        try:
            value = json.loads(text)
        except ValueError:
            raise SpecError(f"cannot read class names from metadata {text[:80]!r}") from None
    try:
        return class_names(value)
    except ValueError as exc:
        raise SpecError(f"cannot read class names from metadata {text[:80]!r}: {exc}") from None
