"""``Detector`` and ``Classifier``: ModelSpec + Runtime + the shared pre- and post-processing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple, Union

import numpy as np

from ...boxes import to_hw
from ...errors import LiteDeployError
from ..base import Runtime
from ..registry import load_runtime
from .centernet import TOP_K, decode_centernet
from .detections import Detections
from .postprocess import Candidates, candidates_boxes_scores, candidates_yolov5, decode_nms_outputs, scale_boxes, select
from .preprocess import Preprocessor

Frames = Union[np.ndarray, Sequence[np.ndarray]]


class _Model:
    """What Detector and Classifier share: runtime, spec, pre-processing, batching and timings."""

    task = ""

    def __init__(
        self, runtime: Runtime, imgsz: Optional[Union[int, Tuple[int, int]]] = None, rect: bool = False
    ) -> None:
        spec = runtime.spec
        if spec.task != self.task:
            other = "Detector" if spec.task == "detect" else "Classifier"
            raise ValueError(f"{runtime.path.name} is a {spec.task} model: load it with {other}.load")
        if len(runtime.inputs) != 1 or len(runtime.inputs[0].shape) != 4:
            raise ValueError(f"{runtime.path.name}: expected one 4-D image input, got {runtime.inputs}")
        if imgsz is not None:
            spec = spec.replace(imgsz=to_hw(imgsz))
        info = runtime.inputs[0]
        fixed = info.shape[2:4] if spec.layout == "NCHW" else info.shape[1:3]
        if any(f is not None and f != s for f, s in zip(fixed, spec.imgsz)):
            raise ValueError(f"{runtime.path.name} takes {fixed[0]}x{fixed[1]} images; imgsz {spec.imgsz} does not fit")
        if rect:
            if any(f is not None for f in fixed):
                raise LiteDeployError(
                    f"{runtime.path.name} takes fixed {fixed[0]}x{fixed[1]} images, so it cannot letterbox to the "
                    "minimal rectangle: drop --rect, or use the .pt checkpoint or an artifact with a dynamic height "
                    "and width"
                )
            spec = spec.replace(letterbox_auto=True)
        self.runtime = runtime
        self.spec = spec
        self.batch = info.shape[0]  # None: any batch size
        self.preprocess = Preprocessor(spec, info.dtype)
        self.timings: Dict[str, float] = {"pre": 0.0, "infer": 0.0, "post": 0.0}

    @property
    def names(self) -> Tuple[str, ...]:
        """Class names."""
        return self.spec.names

    def _outputs(self, result: Dict[str, np.ndarray]) -> List[np.ndarray]:
        missing = [n for n in self.spec.output_names if n not in result]
        if missing:
            raise ValueError(
                f"{self.runtime.path.name}: its spec names outputs {list(self.spec.output_names)}, "
                f"the model has {list(result)}; fix output_names in its spec"
            )
        return [result[n] for n in self.spec.output_names]

    def _run(self, frames: Sequence[np.ndarray], post: Callable[[List[np.ndarray], int, Any], Any]) -> List[Any]:
        """Pre-process, infer and post-process ``frames`` in chunks the model's batch size allows."""
        timings = {"pre": 0.0, "infer": 0.0, "post": 0.0}
        step = len(frames) if self.batch is None else self.batch
        results: List[Any] = []
        for start in range(0, len(frames), max(step, 1)):
            chunk = list(frames[start : start + step])
            n = len(chunk)
            chunk += [chunk[-1]] * (step - n)  # a fixed batch larger than what is left: repeat the last frame
            t0 = time.perf_counter()
            blob, geometries = self.preprocess(chunk)
            t1 = time.perf_counter()
            outputs = self._outputs(self.runtime.infer(blob))
            t2 = time.perf_counter()
            results.extend(post(outputs, i, geometries[i]) for i in range(n))
            t3 = time.perf_counter()
            timings["pre"] += (t1 - t0) * 1e3
            timings["infer"] += (t2 - t1) * 1e3
            timings["post"] += (t3 - t2) * 1e3
        self.timings = timings
        return results

    def close(self) -> None:
        """Release the runtime."""
        self.runtime.close()

    def __enter__(self) -> "_Model":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Detector(_Model):
    """Detect objects in BGR frames with any artifact lite-deploy can load.

    Thresholds follow YOLOv5's ``non_max_suppression``. CenterNet-style artifacts (output layout ``centernet``)
    are decoded by heatmap peaks instead (:mod:`lite_deploy.runtime.pipeline.centernet`): ``conf``, ``classes`` and
    ``max_det`` (at most 100 peaks) apply, ``iou``, ``agnostic`` and ``multi_label`` do not.

    Args:
        runtime: a loaded runtime (see :meth:`load`).
        conf: confidence threshold.
        iou: NMS IoU threshold.
        max_det: most detections per image.
        classes: keep only these class ids.
        agnostic: NMS across classes.
        multi_label: a box may be reported for every class above ``conf``.
        imgsz: network input size for models with dynamic height/width (default: the spec's).
        max_nms: candidates entering NMS at most.
        rect: letterbox each single frame to the minimal rectangle (scaled to fit ``imgsz``, padded only up to a
            multiple of the stride: YOLOv5's ``auto=True``, e.g. 320x224 for a 4:3 frame at 320) instead of the
            ``imgsz`` square; a list of frames still shares the square. Needs a model with a dynamic height and
            width (a ``.pt`` checkpoint); a fixed-shape artifact raises :class:`LiteDeployError`.

    Example:
        >>> det = Detector.load("yolov5n.onnx", conf=0.3)
        >>> detections = det(cv2.imread("bus.jpg"))
        >>> detections.boxes, det.timings["infer"]
    """

    task = "detect"

    def __init__(
        self,
        runtime: Runtime,
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Optional[Sequence[int]] = None,
        agnostic: bool = False,
        multi_label: bool = False,
        imgsz: Optional[Union[int, Tuple[int, int]]] = None,
        max_nms: int = 30000,
        rect: bool = False,
    ) -> None:
        if not 0 <= conf <= 1 or not 0 <= iou <= 1:
            raise ValueError(f"conf and iou must lie in [0, 1], got conf={conf}, iou={iou}")
        super().__init__(runtime, imgsz, rect)
        decoders = {"yolov5": self._decode_yolov5, "boxes_scores": self._decode_boxes_scores, "nms": self._decode_nms,
                    "centernet": self._decode_centernet}
        if self.spec.output_layout not in decoders:
            raise ValueError(
                f"{runtime.path.name} has output layout {self.spec.output_layout!r}; this runtime decodes "
                f"{', '.join(sorted(decoders))}"
            )
        if self.spec.output_layout == "centernet" and len(self.spec.strides) != 1:
            raise ValueError(f"{runtime.path.name}: a centernet spec must give its heatmap stride in 'strides', "
                             "e.g. [4]")
        self._decode = decoders[self.spec.output_layout]
        self.conf, self.iou, self.max_det, self.max_nms = conf, iou, max_det, max_nms
        self.classes = None if classes is None else list(classes)
        self.agnostic, self.multi_label = agnostic, multi_label
        self._nothing = Detections.empty(self.spec.names)

    @classmethod
    def load(
        cls,
        path: Union[str, Path],
        conf: float = 0.25,
        iou: float = 0.45,
        max_det: int = 300,
        classes: Optional[Sequence[int]] = None,
        agnostic: bool = False,
        multi_label: bool = False,
        imgsz: Optional[Union[int, Tuple[int, int]]] = None,
        rect: bool = False,
        **runtime_options: Any,
    ) -> "Detector":
        """Open ``path`` with its backend (``runtime_options`` go to it) and wrap it; see the class arguments."""
        runtime = load_runtime(path, **runtime_options)
        try:
            return cls(runtime, conf, iou, max_det, classes, agnostic, multi_label, imgsz, rect=rect)
        except BaseException:
            runtime.close()
            raise

    def __call__(self, frames: Frames) -> Union[Detections, List[Detections]]:
        """Detect in one frame (-> Detections) or a list of frames (-> list, batched when the model allows).

        Args:
            frames: HxWx3 uint8 BGR image(s) (grey and BGRA are converted).

        Returns:
            Detections in each frame's own pixels; :attr:`timings` holds this call's pre/infer/post ms.

        Raises:
            ValueError: an image that is not HxW, HxWx3 or HxWx4 uint8.
        """
        single = not isinstance(frames, (list, tuple))
        results = self._run([frames] if single else frames, self._postprocess)
        return results[0] if single else results

    def _postprocess(self, outputs: List[np.ndarray], i: int, geometry: Any) -> Detections:
        boxes, scores, class_ids = self._decode([o[i] for o in outputs])
        if not len(scores):
            return self._nothing  # immutable and empty: shared by every frame without detections
        return Detections(scale_boxes(boxes, geometry), scores, class_ids, self.spec.names)

    def _decode_yolov5(self, outputs: List[np.ndarray]) -> Candidates:
        candidates = candidates_yolov5(outputs[0], self.conf, self.multi_label, self.classes)
        return select(candidates, self.iou, self.max_det, self.max_nms, self.agnostic)

    def _decode_boxes_scores(self, outputs: List[np.ndarray]) -> Candidates:
        candidates = candidates_boxes_scores(outputs[0], outputs[1], self.conf, self.multi_label, self.classes)
        return select(candidates, self.iou, self.max_det, self.max_nms, self.agnostic)

    def _decode_nms(self, outputs: List[np.ndarray]) -> Candidates:
        return decode_nms_outputs(*outputs[:4], conf=self.conf, max_det=self.max_det, classes=self.classes)

    def _decode_centernet(self, outputs: List[np.ndarray]) -> Candidates:
        return decode_centernet(*outputs[:3], stride=self.spec.strides[0], conf=self.conf,
                                top_k=min(self.max_det, TOP_K), classes=self.classes)


class Classifier(_Model):
    """Classify BGR frames with a classification artifact (centre-crop pre-processing, softmax).

    Args:
        runtime: a loaded runtime (see :meth:`load`).
        top_k: how many classes to return.
        imgsz: network input size for models with dynamic height/width (default: the spec's).
    """

    task = "classify"

    def __init__(self, runtime: Runtime, top_k: int = 5,
                 imgsz: Optional[Union[int, Tuple[int, int]]] = None) -> None:
        super().__init__(runtime, imgsz)
        if self.spec.output_layout != "logits":
            raise ValueError(f"{runtime.path.name}: a classifier needs output layout 'logits', "
                             f"got {self.spec.output_layout!r}")
        self.top_k = top_k

    @classmethod
    def load(cls, path: Union[str, Path], top_k: int = 5, imgsz: Optional[Union[int, Tuple[int, int]]] = None,
             **runtime_options: Any) -> "Classifier":
        """Open ``path`` with its backend (``runtime_options`` go to it) and wrap it; see the class arguments."""
        runtime = load_runtime(path, **runtime_options)
        try:
            return cls(runtime, top_k, imgsz)
        except BaseException:
            runtime.close()
            raise

    def __call__(self, frames: Frames) -> Union[Tuple[np.ndarray, np.ndarray], List[Tuple[np.ndarray, np.ndarray]]]:
        """Top-k ``(class ids (k,) int64, probabilities (k,) float32)`` of one frame, or a list of them."""
        single = not isinstance(frames, (list, tuple))
        results = self._run([frames] if single else frames, self._postprocess)
        return results[0] if single else results

    def _postprocess(self, outputs: List[np.ndarray], i: int, geometry: Any) -> Tuple[np.ndarray, np.ndarray]:
        probs = softmax(outputs[0][i].reshape(-1))
        k = min(self.top_k, probs.shape[0])
        top = np.argsort(-probs, kind="stable")[:k]
        return top.astype(np.int64), probs[top]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax of a (C,) vector, float32."""
    z = logits.astype(np.float32) - logits.max()
    e = np.exp(z)
    return e / e.sum()
