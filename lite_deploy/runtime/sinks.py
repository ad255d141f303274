"""Where a stream's results go: JSON lines and annotated video, written so that what was recorded is kept.

Each sink writes to a temporary file beside its destination and moves it into place when closed, so a reader never
sees a half-written file under the real name, and closing also happens when the loop ends by an error or Ctrl-C
(use the sink as a context manager): the lines or frames recorded until then are kept, finished and readable.

Example:
    >>> with stream("model.onnx", "video.mp4") as s, JsonlSink("out/predictions.jsonl") as jsonl, \\
    ...         VideoSink("out/video.mp4", s.source_fps) as video:
    ...     for item in s:
    ...         jsonl.append(item)
    ...         video.append(s.draw(item))

Device side: numpy and OpenCV only.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, TextIO, Union

import numpy as np

from ..errors import LiteDeployError
from .pipeline.detections import Detections
from .stream import StreamResult, class_label

VIDEO_FOURCC = "mp4v"  # a codec OpenCV's FFmpeg writes everywhere (for .mp4)
DEFAULT_FPS = 30.0  # frame rate of a video when the source does not report one


class _StagedFile:
    """A temporary file beside ``path`` (same suffix) that becomes ``path`` by an atomic rename on :meth:`commit`."""

    def __init__(self, path: Union[str, Path]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=self.path.suffix, dir=str(self.path.parent))
        os.close(fd)
        self.tmp = Path(tmp)

    def commit(self) -> None:
        os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


def frame_record(item: StreamResult, names: Sequence[str] = (), image: Optional[Path] = None) -> Dict[str, Any]:
    """The JSON object of one :class:`~lite_deploy.runtime.stream.StreamResult`.

    Keys: ``frame`` (index in the source), ``image`` (the file, for image sources), ``timestamp`` (capture time,
    seconds since the epoch), ``latency_ms`` (per stage) and ``detections`` (:meth:`Detections.to_list`) or, for a
    classifier, ``classes`` (top-k ``class_id``, ``name``, ``score``; ``names`` gives the names).
    """
    record: Dict[str, Any] = {"frame": item.index}
    if image is not None:
        record["image"] = str(image)
    record["timestamp"] = round(item.timestamp, 6)
    record["latency_ms"] = {stage: round(ms, 3) for stage, ms in item.latency.items()}
    if isinstance(item.result, Detections):
        record["detections"] = item.result.to_list()
    else:
        ids, probs = item.result
        record["classes"] = [
            {"class_id": int(i), "name": class_label(names, int(i)), "score": round(float(p), 5)}
            for i, p in zip(ids, probs)
        ]
    return record


class JsonlSink:
    """One JSON line per stream result (:func:`frame_record`), moved to ``path`` when closed.

    Args:
        path: the ``.jsonl`` file to write (its folder is created).
        names: class names, for a classifier's ``classes`` entries.

    Attributes:
        path: the destination.
        lines: lines written so far.
    """

    def __init__(self, path: Union[str, Path], names: Sequence[str] = ()) -> None:
        self._file = _StagedFile(path)
        self.path = self._file.path
        self.names = tuple(names)
        self._handle: Optional[TextIO] = open(self._file.tmp, "w", encoding="utf-8")
        self.lines = 0

    def append(self, item: StreamResult, image: Optional[Path] = None) -> None:
        """Write the line of ``item`` (``image``: the file it came from, for image sources).

        Raises:
            ValueError: the sink is closed.
        """
        if self._handle is None:
            raise ValueError(f"{self.path.name}: the sink is closed")
        self._handle.write(json.dumps(frame_record(item, self.names, image)) + "\n")
        self.lines += 1

    def close(self) -> None:
        """Finish the file and move it to :attr:`path` (also when no line was written). Closing twice is a no-op."""
        if self._handle is not None:
            self._handle.close()
            self._handle = None
            self._file.commit()

    def __enter__(self) -> "JsonlSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()  # kept however the loop ended


class VideoSink:
    """Annotated BGR frames into a video (``.mp4``: ``mp4v``), opened at the first frame, whose size is the video's.

    Frames of another size (a folder of images) are resized to it. The video is moved to ``path`` when closed if it
    has frames; an empty one is removed.

    Args:
        path: the video file to write (its folder is created).
        fps: frame rate; ``None`` or 0: :data:`DEFAULT_FPS` (a source that reports none).

    Attributes:
        path: the destination.
        frames: frames written so far.
    """

    def __init__(self, path: Union[str, Path], fps: Optional[float] = None) -> None:
        self._file = _StagedFile(path)
        self.path = self._file.path
        self.fps = fps or DEFAULT_FPS
        self._writer: Any = None
        self._closed = False
        self.size = (0, 0)
        self.frames = 0

    def append(self, frame: np.ndarray) -> None:
        """Write one BGR frame (H, W, 3) uint8.

        Raises:
            LiteDeployError: this OpenCV cannot write the video.
            ValueError: the sink is closed.
        """
        import cv2

        if self._closed:
            raise ValueError(f"{self.path.name}: the sink is closed")
        if self._writer is None:
            self.size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_FOURCC)
            self._writer = cv2.VideoWriter(str(self._file.tmp), fourcc, self.fps, self.size)
            if not self._writer.isOpened():
                raise LiteDeployError(f"OpenCV cannot write the video {self.path}: this OpenCV has no MP4 "
                                      "writer; install opencv-python-headless from pip")
        if (frame.shape[1], frame.shape[0]) != self.size:
            frame = cv2.resize(frame, self.size)
        self._writer.write(frame)
        self.frames += 1

    def close(self) -> bool:
        """Finish the video and move it to :attr:`path` if it has frames (else remove it). Returns whether it was
        kept. Closing twice is a no-op."""
        if not self._closed:
            self._closed = True
            if self._writer is not None:
                self._writer.release()
            if self.frames:
                self._file.commit()
            else:
                self._file.discard()
        return self.frames > 0

    def __enter__(self) -> "VideoSink":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()  # kept however the loop ended
