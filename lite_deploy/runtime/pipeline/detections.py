"""``Detections``: the boxes, scores and classes found in one image, in that image's pixels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Dict, List, Sequence, Tuple, Union

import cv2
import numpy as np

Index = Union[int, slice, np.ndarray, Sequence[int], Sequence[bool]]


@dataclass(frozen=True)
class Detections:
    """Detections of one image.

    Attributes:
        boxes: (N, 4) float32 ``x1, y1, x2, y2`` in original-image pixels.
        scores: (N,) float32 confidences.
        class_ids: (N,) int32 class indices into ``names``.
        names: class names of the model.

    Raises:
        ValueError: on construction, when shapes or dtypes are inconsistent.
    """

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray
    names: Tuple[str, ...] = ()

    def __post_init__(self) -> None:
        boxes = np.asarray(self.boxes)
        scores = np.asarray(self.scores)
        class_ids = np.asarray(self.class_ids)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"boxes must be a 2D array of shape (N, 4), but got shape {boxes.shape}")
        n = boxes.shape[0]
        if scores.shape != (n,):
            raise ValueError(f"scores must have shape ({n},) to match {n} boxes, but got shape {scores.shape}")
        if class_ids.shape != (n,):
            raise ValueError(f"class_ids must have shape ({n},) to match {n} boxes, but got shape {class_ids.shape}")
        if n and not np.issubdtype(class_ids.dtype, np.integer):
            if not np.array_equal(class_ids, np.round(class_ids)):
                raise ValueError(f"class_ids must be integers, but got values like {class_ids[:3].tolist()}")
        object.__setattr__(self, "boxes", boxes.astype(np.float32, copy=False))
        object.__setattr__(self, "scores", scores.astype(np.float32, copy=False))
        object.__setattr__(self, "class_ids", class_ids.astype(np.int32, copy=False))
        object.__setattr__(self, "names", tuple(str(n) for n in self.names))

    @classmethod
    def empty(cls, names: Sequence[str] = ()) -> "Detections":
        """No detections."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32), tuple(names))

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def __getitem__(self, index: Index) -> "Detections":
        """A subset: an int, a slice, an index array or a boolean mask of length N."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(self.boxes[index], self.scores[index], self.class_ids[index], self.names)

    def label(self, i: int) -> str:
        """Class name of detection ``i`` (its id when the name is unknown)."""
        class_id = int(self.class_ids[i])
        return self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)

    def to_list(self) -> List[Dict[str, Any]]:
        """One dict per detection: ``box`` [x1, y1, x2, y2], ``score``, ``class_id``, ``name``."""
        return [
            {
                "box": [round(float(v), 2) for v in self.boxes[i]],
                "score": round(float(self.scores[i]), 5),
                "class_id": int(self.class_ids[i]),
                "name": self.label(i),
            }
            for i in range(len(self))
        ]

    def to_json(self) -> str:
        """:meth:`to_list` as JSON text."""
        return json.dumps(self.to_list())

    def draw(self, image: np.ndarray, thickness: int = 2) -> np.ndarray:
        """A copy of ``image`` (HxWx3 uint8 BGR) with every box and its ``name score`` label.

        Uses OpenCV's built-in Hershey font (no font files).
        """
        canvas = image.copy()
        scale = max(0.4, min(canvas.shape[:2]) / 1000)
        for i in range(len(self)):
            x1, y1, x2, y2 = (int(round(float(v))) for v in self.boxes[i])
            color = _color(int(self.class_ids[i]))
            cv2.rectangle(canvas, (x1, y1), (x2, y2), color, thickness, cv2.LINE_AA)
            text = f"{self.label(i)} {float(self.scores[i]):.2f}"
            (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
            top = y1 - th - base if y1 - th - base >= 0 else y1
            cv2.rectangle(canvas, (x1, top), (x1 + tw, top + th + base), color, -1)
            cv2.putText(canvas, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
        return canvas

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, classes={sorted(set(self.label(i) for i in range(len(self))))})"


def _color(class_id: int) -> Tuple[int, int, int]:
    """A stable, distinct BGR colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    hsv = np.array([[[hue, 200, 230]]], np.uint8)
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)
