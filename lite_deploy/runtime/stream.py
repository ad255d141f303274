"""Run a model over a camera, a video, a network stream or a folder of images, frame by frame.

``stream(model, source)`` returns a :class:`Stream`: an iterator of :class:`StreamResult` (frame index, the frame,
the model's result, per-stage latency) whose :attr:`Stream.summary` counts frames, drops, unreadable frames and
reconnects and gives the latency statistics. Frames are read in a capture thread:

* **live sources** (camera index, ``/dev/videoN``, ``rtsp://`` / ``http://`` URLs, GStreamer pipelines) keep only
  the newest frame: a frame the model had no time for is replaced by the next one and counted as dropped. When
  the source stops delivering, it is reopened with exponential backoff (``backoff_s``, doubling up to
  ``max_backoff_s``); after ``reconnect_attempts`` reopenings without a frame in between (whether the reopening
  failed or the reopened source still delivered nothing) the stream gives up with an error;
* **video files and images** are delivered in order, every frame, through a bounded queue (the capture waits for
  the model; nothing is dropped).

Frames that cannot be decoded are skipped and counted, and unreadable image files are named in the summary. A
video file is read past a corrupt region: failed reads end it only once they cover the frames the container says
are left (``CAP_PROP_FRAME_COUNT``; at least :data:`FILE_END_READS`). A source of which not one frame can be
decoded is an error. Memory stays flat however long the stream runs: at most
``queue_size`` frames are held, and latencies are kept as running sums plus a fixed-size reservoir sample for the
percentiles. Device side: numpy and OpenCV only.

Example:
    >>> with stream("model.onnx", 0, max_frames=300) as s:
    ...     for item in s:
    ...         cv2.imshow("lite-deploy", s.draw(item))
    >>> print(s.summary)
"""

from __future__ import annotations

import dataclasses
import glob
import logging
import re
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union

import cv2
import numpy as np

from ..errors import LiteDeployError
from ..io import IMAGE_SUFFIXES
from .pipeline.detections import Detections
from .pipeline.detector import Classifier, Detector
from .pipeline.preprocess import check_image
from .profiling.latency import LatencyReservoir, LatencyStats
from .registry import load_runtime

LOGGER = logging.getLogger(__name__)

Source = Union[int, str, Path]
Model = Union[str, Path, Detector, Classifier]
Result = Union[Detections, Tuple[np.ndarray, np.ndarray]]
# opener(target, api_preference) -> an object with isOpened(), read(), get(prop_id) and release(), as
# cv2.VideoCapture(target, api_preference) returns
Opener = Callable[[Union[int, str], int], Any]

STAGES = ("capture", "pre", "infer", "post", "total")
LIVE_PREFIXES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")
GLOB_CHARS = ("*", "?", "[")
FILE_END_READS = 10  # failed reads in a row that end a video file whose frame count is unknown or reached
MAX_LISTED = 20  # unreadable files named in a summary; the rest are counted
POLL_S = 0.1  # how often blocked waits look at the stop flag
JOIN_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class SourceInfo:
    """What a ``source`` argument names and how to open it.

    Attributes:
        description: the source as the user gave it, for messages.
        kind: ``camera``, ``url``, ``gstreamer``, ``video`` or ``images``.
        live: newest-frame-only delivery and reconnects (cameras, URLs, pipelines) or every frame in order.
        target: what the opener receives (camera index, path, URL or pipeline); unused for images.
        api: OpenCV capture API preference (``cv2.CAP_GSTREAMER`` for pipelines, else ``cv2.CAP_ANY``).
        images: the image files, in order, for ``kind == "images"``.
    """

    description: str
    kind: str
    live: bool
    target: Union[int, str] = ""
    api: int = cv2.CAP_ANY
    images: Tuple[Path, ...] = ()


def resolve_source(source: Source, live: Optional[bool] = None) -> SourceInfo:
    """Classify ``source``.

    Args:
        source: camera index (``0`` or ``"0"``), ``/dev/videoN``, a video file, an ``rtsp://``/``http://``… URL, a
            GStreamer pipeline (a string containing ``!``, ending in ``appsink``), a folder of images (the files
            OpenCV recognises as images, sorted by name) or a glob of images (every match is a frame).
        live: override the delivery mode (default: live for cameras, URLs and pipelines).

    Raises:
        LiteDeployError: the source does not exist, or names no images.
    """
    if isinstance(source, bool) or not isinstance(source, (int, str, Path)):
        raise LiteDeployError(f"source must be a camera index, a path, a URL or a pipeline string, got {source!r}")
    text = str(source).strip()

    def info(kind: str, default_live: bool, **kwargs: Any) -> SourceInfo:
        return SourceInfo(text, kind, default_live if live is None else live, **kwargs)

    if isinstance(source, int) or text.isdigit():
        return info("camera", True, target=int(text))
    if "!" in text:
        return info("gstreamer", True, target=text, api=cv2.CAP_GSTREAMER)
    if text.lower().startswith(LIVE_PREFIXES):
        return info("url", True, target=text)
    if text.startswith("/dev/video"):
        return info("camera", True, target=text)
    path = Path(text)
    if path.is_dir():
        images = tuple(p for p in sorted(path.iterdir()) if p.is_file() and is_image_file(p))
        if not images:
            raise LiteDeployError(f"source {text} holds no images OpenCV can read: give a folder of images")
        return info("images", False, images=images)
    if any(c in text for c in GLOB_CHARS) and not path.exists():
        images = tuple(Path(p) for p in sorted(glob.glob(text)) if Path(p).is_file())
        if not images:
            raise LiteDeployError(f"source {text} matches no files: check the pattern (quote it in a shell)")
        return info("images", False, images=images)
    if path.is_file():
        if is_image_file(path):
            return info("images", False, images=(path,))
        return info("video", False, target=text)
    raise LiteDeployError(
        f"source {text} does not exist: give a camera index (0), /dev/videoN, a video file, an rtsp:// or http:// "
        "URL, a GStreamer pipeline (with '!') or a folder or glob of images"
    )


def is_image_file(path: Path) -> bool:
    """Whether ``path`` is meant as an image: an image suffix, or content OpenCV recognises as one.

    A file with an image suffix that does not decode is still an image (an unreadable one, reported as such).
    """
    return path.suffix.lower() in IMAGE_SUFFIXES or cv2.haveImageReader(str(path))


class StreamResult(NamedTuple):
    """One processed frame.

    Attributes:
        index: the frame's position in the source, from 0 (gaps are dropped or unreadable frames).
        timestamp: wall-clock time the frame was captured, seconds since the epoch.
        frame: the HxWx3 uint8 BGR frame.
        result: :class:`Detections` for a detector; ``(class ids (k,), probabilities (k,))`` for a classifier.
        latency: milliseconds per stage: ``capture`` (reading and decoding the frame), ``pre``, ``infer``, ``post``
            and ``total`` (frame in, result out: the model call).
    """

    index: int
    timestamp: float
    frame: np.ndarray
    result: Result
    latency: Dict[str, float]


@dataclass(frozen=True)
class StreamSummary:
    """What a stream did.

    Attributes:
        source: the source as given.
        end: why it ended: ``running`` (not yet), ``end of source``, ``max_frames``, ``stopped`` (closed early),
            ``interrupted`` (Ctrl-C), ``source lost`` (reconnects failed) or ``error``.
        frames: frames processed by the model.
        dropped: live frames replaced by a newer one before the model took them.
        skipped: frames that could not be read or decoded (for images: unreadable files).
        unreadable: names of the image files that could not be read (for video sources: empty).
        reconnects: times a live source was reopened after it stopped delivering.
        seconds: wall time from the first request for a frame to the last result.
        fps: ``frames / seconds``.
        latency: :class:`~.profiling.latency.LatencyStats` per stage (see :attr:`StreamResult.latency`).
    """

    source: str
    end: str
    frames: int
    dropped: int
    skipped: int
    unreadable: Tuple[str, ...]
    reconnects: int
    seconds: float
    fps: float
    latency: Dict[str, LatencyStats]

    def to_dict(self) -> Dict[str, Any]:
        """The summary as plain JSON-ready values."""
        return dataclasses.asdict(self)

    def __str__(self) -> str:
        lines = [
            f"{self.source}: {self.frames} frames in {self.seconds:.1f} s ({self.fps:.1f} FPS), "
            f"{self.dropped} dropped, {self.skipped} skipped (unreadable), {self.reconnects} reconnects; {self.end}",
        ]
        if self.unreadable:
            lines.append(f"  unreadable: {name_list(self.unreadable)}")
        if self.frames:
            lines.append(f"  {'latency ms':<10} {'mean':>8} {'p50':>8} {'p99':>8} {'max':>8}")
            for stage, s in self.latency.items():
                lines.append(f"  {stage:<10} {s.mean:8.2f} {s.p50:8.2f} {s.p99:8.2f} {s.max:8.2f}")
        return "\n".join(lines)


def name_list(names: Sequence[str]) -> str:
    """``names`` joined by commas, the first :data:`MAX_LISTED` of them and a count of the rest."""
    more = len(names) - MAX_LISTED
    return ", ".join(names[:MAX_LISTED]) + (f" and {more} more" if more > 0 else "")


class _Frame(NamedTuple):
    index: int
    timestamp: float
    image: np.ndarray
    capture_ms: float


class _FrameBuffer:
    """Frames from the capture thread to the consumer.

    ``drop_oldest``: a full buffer discards its oldest frame for the new one (counted in :attr:`dropped`);
    otherwise :meth:`put` waits for room (back-pressure).
    """

    def __init__(self, capacity: int, drop_oldest: bool) -> None:
        self.capacity = capacity
        self.drop_oldest = drop_oldest
        self.dropped = 0
        self._items: Deque[_Frame] = deque()
        self._closed = False
        self._cond = threading.Condition()

    def put(self, item: _Frame, stop: threading.Event) -> None:
        """Add ``item``, waiting for room unless ``drop_oldest``; gives up when ``stop`` is set."""
        with self._cond:
            while not self.drop_oldest and len(self._items) >= self.capacity and not stop.is_set():
                self._cond.wait(POLL_S)
            if stop.is_set():
                return
            if len(self._items) >= self.capacity:
                self._items.popleft()
                self.dropped += 1
            self._items.append(item)
            self._cond.notify_all()

    def get(self) -> Optional[_Frame]:
        """The next frame, waiting for one; ``None`` once the buffer is closed and empty."""
        with self._cond:
            while not self._items and not self._closed:
                self._cond.wait(POLL_S)
            if not self._items:
                return None
            item = self._items.popleft()
            self._cond.notify_all()
            return item

    def close(self, discard: bool = False) -> None:
        """No more frames will come; ``discard`` also drops the frames still held."""
        with self._cond:
            self._closed = True
            if discard:
                self._items.clear()
            self._cond.notify_all()


class _Capture:
    """Reads ``source`` in its own thread into a :class:`_FrameBuffer`; opens it at once so errors surface early."""

    def __init__(
        self, source: SourceInfo, opener: Opener, queue_size: int, reconnect_attempts: int, backoff_s: float,
        max_backoff_s: float,
    ) -> None:
        self.source = source
        self.opener = opener
        self.reconnect_attempts = reconnect_attempts
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.buffer = _FrameBuffer(1 if source.live else queue_size, drop_oldest=source.live)
        self.stop = threading.Event()
        self.skipped = 0
        self.unreadable: List[str] = []
        self.reconnects = 0
        self.lost = 0  # reopenings since the last delivered frame
        self.error: Optional[BaseException] = None
        self.capture: Any = None
        self.fps: Optional[float] = None
        if source.kind != "images":
            self.capture = self._open()
            if self.capture is None:
                raise LiteDeployError(self._open_failure())
            fps = float(self.capture.get(cv2.CAP_PROP_FPS) or 0.0)
            self.fps = fps if 0.0 < fps <= 1000.0 else None
        self.thread = threading.Thread(target=self._run, name="lite-deploy-capture", daemon=True)

    def _open(self) -> Any:
        """A new opened capture, or ``None`` when it does not open."""
        try:
            capture = self.opener(self.source.target, self.source.api)
        except cv2.error as exc:
            LOGGER.debug("opening %s failed: %s", self.source.description, exc)
            return None
        if not capture.isOpened():
            capture.release()
            return None
        return capture

    def _open_failure(self) -> str:
        name, kind = self.source.description, self.source.kind
        if kind == "gstreamer" and not re.search(r"GStreamer:\s*YES", cv2.getBuildInformation()):
            return (f"could not open the GStreamer pipeline {name!r}: this OpenCV is built without GStreamer; "
                    "use the distribution's OpenCV (on a Jetson the JetPack one) instead of the pip wheel")
        if kind == "gstreamer":
            return f"could not open the GStreamer pipeline {name!r}: test it with gst-launch-1.0 and end it in appsink"
        if kind == "camera":
            return f"could not open camera {name}: check that it is connected and not in use by another program"
        if kind == "url":
            return f"could not open stream {name}: check the URL, the network and the credentials"
        return f"could not open video {name}: it is not a video OpenCV can decode"

    def start(self) -> None:
        """Start reading."""
        self.thread.start()

    def close(self) -> None:
        """Stop reading, join the thread and release the capture."""
        self.stop.set()
        self.buffer.close(discard=True)
        if self.thread.is_alive():
            self.thread.join(JOIN_TIMEOUT_S)
            if self.thread.is_alive():
                LOGGER.warning("reading %s is blocked; the capture is released when its read returns",
                               self.source.description)
        elif self.thread.ident is None:
            self._release()

    def _release(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    def _run(self) -> None:
        try:
            if self.source.kind == "images":
                self._read_images()
            else:
                self._read_video()
        except BaseException as exc:  # handed to the consumer, which raises it
            self.error = exc
        finally:
            self._release()
            self.buffer.close()

    def _deliver(self, index: int, image: Any, start: float) -> bool:
        """Queue a decoded frame, or count it as skipped when it is not a usable image; whether it was queued."""
        try:
            frame = check_image(image)
        except ValueError:
            self.skipped += 1
            LOGGER.debug("frame %d of %s is unreadable; skipped", index, self.source.description)
            return False
        self.buffer.put(_Frame(index, time.time(), frame, (time.perf_counter() - start) * 1e3), self.stop)
        return True

    def _read_images(self) -> None:
        for index, path in enumerate(self.source.images):
            if self.stop.is_set():
                return
            start = time.perf_counter()
            if not self._deliver(index, cv2.imread(str(path)), start):
                self.unreadable.append(path.name)

    def _read_video(self) -> None:
        index = 0  # frames read or skipped so far: the position in the source
        failed = 0  # failed reads in a row
        total = 0 if self.source.live else max(int(self.capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0), 0)
        while not self.stop.is_set():
            start = time.perf_counter()
            ok, image = self.capture.read()
            if ok:
                self.skipped += failed  # a file that reads again after failures had corrupt frames
                index += failed
                failed = 0
                if self._deliver(index, image, start):
                    self.lost = 0
                index += 1
            elif self.source.live:
                self._reconnect()
            else:
                failed += 1
                if failed >= max(FILE_END_READS, total - index):  # past the frames the file says it has
                    self.skipped += min(failed, max(total - index, 0))  # its last frames were corrupt
                    return

    def _reconnect(self) -> None:
        """Reopen a live source with exponential backoff, counting reopenings since the last delivered frame.

        Raises:
            LiteDeployError: ``reconnect_attempts`` reopenings brought no frame.
        """
        LOGGER.warning("%s stopped delivering frames; reconnecting", self.source.description)
        self._release()
        while self.lost < self.reconnect_attempts:
            if self.stop.wait(min(self.backoff_s * 2 ** self.lost, self.max_backoff_s)):
                return
            self.lost += 1
            self.capture = self._open()
            if self.capture is not None:
                self.reconnects += 1
                LOGGER.info("%s reopened", self.source.description)
                return
        raise LiteDeployError(
            f"lost {self.source.description}: it did not come back after {self.reconnect_attempts} reconnect attempts "
            "(reopened or not, no frame came); check the camera or the network"
        )


class Stream:
    """Iterate over a model's results on a camera, video, network stream or images (see the module docstring).

    Use it as a context manager (or call :meth:`close`) so the capture is released and its thread joined even
    when the loop is left early; iterating to the end, reaching ``max_frames`` or Ctrl-C inside the iteration
    close it too. A ``KeyboardInterrupt`` is never swallowed: it propagates after the stream is closed, and
    :attr:`summary` then says ``interrupted``.

    Args:
        model: an artifact path (loaded as a :class:`Detector` or a :class:`Classifier` by its spec's task, and
            closed with the stream) or an already loaded Detector / Classifier (left open).
        source: see :func:`resolve_source`.
        conf, iou, imgsz, rect: detector settings when ``model`` is a path (see :class:`Detector`).
        max_frames: stop after this many processed frames (``None``: until the source ends).
        live: override the delivery mode (default: live for cameras, URLs and pipelines).
        queue_size: frames read ahead for files and images.
        reconnect_attempts: reopenings without a frame in between before a lost live source ends the stream with
            an error.
        backoff_s: wait before the first reopening, seconds; doubled after every failed one.
        max_backoff_s: longest wait between reopenings, seconds.
        opener: makes the capture of non-image sources, called as ``opener(target, api_preference)`` on the
            first open and on every reconnect; default :class:`cv2.VideoCapture`. Anything with ``isOpened()``,
            ``read() -> (ok, frame)``, ``get(prop_id)`` and ``release()`` will do (e.g. a camera SDK adapter).
        **runtime_options: backend options when ``model`` is a path (e.g. ``threads``).

    Raises:
        LiteDeployError: the model cannot be loaded or the source cannot be opened.
    """

    def __init__(
        self,
        model: Model,
        source: Source,
        *,
        conf: float = 0.25,
        iou: float = 0.45,
        imgsz: Optional[Union[int, Tuple[int, int]]] = None,
        rect: bool = False,
        max_frames: Optional[int] = None,
        live: Optional[bool] = None,
        queue_size: int = 8,
        reconnect_attempts: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        opener: Optional[Opener] = None,
        **runtime_options: Any,
    ) -> None:
        if max_frames is not None and max_frames < 1:
            raise LiteDeployError(f"max_frames must be at least 1, got {max_frames}")
        if queue_size < 1 or reconnect_attempts < 0 or backoff_s < 0 or max_backoff_s < 0:
            raise LiteDeployError("queue_size must be >= 1 and reconnect_attempts, backoff_s, max_backoff_s >= 0")
        self.source = resolve_source(source, live)
        self.model, self._owns_model = _load_model(model, conf, iou, imgsz, rect, runtime_options)
        try:
            self._capture = _Capture(self.source, opener or cv2.VideoCapture, queue_size, reconnect_attempts,
                                     backoff_s, max_backoff_s)
        except BaseException:
            if self._owns_model:
                self.model.close()
            raise
        self.max_frames = max_frames
        self.fps = 0.0  # smoothed frames per second, for overlays
        self._latency = {stage: LatencyReservoir() for stage in STAGES}
        self._frames = 0
        self._started: Optional[float] = None
        self._last: Optional[float] = None
        self._end = "running"

    @property
    def source_fps(self) -> Optional[float]:
        """Frame rate the source reports (``None`` when unknown, and for images)."""
        return self._capture.fps

    @property
    def closed(self) -> bool:
        """Whether the stream has ended."""
        return self._end != "running"

    def __iter__(self) -> "Stream":
        return self

    def __next__(self) -> StreamResult:
        if self.closed:
            raise StopIteration
        if self._started is None:
            self._started = time.perf_counter()
            self._capture.start()
        try:
            item = self._capture.buffer.get()
            result = None if item is None else self._process(item)
        except KeyboardInterrupt:
            self._close("interrupted")
            raise
        except BaseException:
            self._close("error")
            raise
        if result is None:
            error = self._capture.error
            if error is None and self._frames == 0:
                self._close("error")
                raise LiteDeployError(
                    f"not one frame of {self.source.description} could be decoded "
                    f"({self._capture.skipped} unreadable): give a video or images OpenCV can read"
                )
            self._close("end of source" if error is None else "source lost")
            if isinstance(error, LiteDeployError):
                raise error
            if error is not None:
                raise LiteDeployError(f"reading {self.source.description} failed: {error}") from error
            raise StopIteration
        if self.max_frames is not None and self._frames >= self.max_frames:
            self._close("max_frames")
        return result

    def _process(self, item: _Frame) -> StreamResult:
        start = time.perf_counter()
        result = self.model(item.image)
        now = time.perf_counter()
        latency = {"capture": item.capture_ms, **self.model.timings, "total": (now - start) * 1e3}
        for stage in STAGES:
            self._latency[stage].add(latency[stage])
        if self._last is not None and now > self._last:
            rate = 1.0 / (now - self._last)
            self.fps = rate if self.fps == 0.0 else 0.9 * self.fps + 0.1 * rate
        self._last = now
        self._frames += 1
        return StreamResult(item.index, item.timestamp, item.image, result, latency)

    @property
    def summary(self) -> StreamSummary:
        """Counts and latency statistics so far (final once :attr:`closed`)."""
        seconds = 0.0 if self._started is None or self._last is None else self._last - self._started
        return StreamSummary(
            source=self.source.description,
            end=self._end,
            frames=self._frames,
            dropped=self._capture.buffer.dropped,
            skipped=self._capture.skipped,
            unreadable=tuple(self._capture.unreadable),
            reconnects=self._capture.reconnects,
            seconds=seconds,
            fps=self._frames / seconds if seconds > 0 else 0.0,
            latency={stage: stats.stats() for stage, stats in self._latency.items()},
        )

    def draw(self, item: StreamResult) -> np.ndarray:
        """A copy of ``item.frame`` with its result (boxes and labels, or the top class) and the current FPS."""
        if isinstance(item.result, Detections):
            canvas = item.result.draw(item.frame)
        else:
            canvas = item.frame.copy()
            ids, probs = item.result
            if len(ids):
                _put_label(canvas, f"{class_label(self.model.names, int(ids[0]))} {float(probs[0]):.2f}", row=1)
        _put_label(canvas, f"{self.fps:.1f} FPS", row=0)
        return canvas

    def close(self) -> None:
        """Stop reading, release the capture, join its thread and close the model if the stream loaded it."""
        self._close("stopped")

    def _close(self, end: str) -> None:
        if self.closed:
            return
        self._end = end
        try:
            self._capture.close()
        finally:
            if self._owns_model:
                self.model.close()

    def __enter__(self) -> "Stream":
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        self._close("interrupted" if exc_type is KeyboardInterrupt else "stopped")


def stream(model: Model, source: Source, **options: Any) -> Stream:
    """Run ``model`` over ``source`` frame by frame: ``for item in stream("model.onnx", 0): ...``.

    See :class:`Stream` for ``options`` and :func:`resolve_source` for the sources.
    """
    return Stream(model, source, **options)


def _load_model(
    model: Model, conf: float, iou: float, imgsz: Optional[Union[int, Tuple[int, int]]], rect: bool,
    options: Dict[str, Any],
) -> Tuple[Union[Detector, Classifier], bool]:
    """``(model, owned)``: the given Detector / Classifier, or one loaded from a path (owned: the stream closes it)."""
    if isinstance(model, (Detector, Classifier)):
        return model, False
    try:
        runtime = load_runtime(model, **options)
    except (FileNotFoundError, ValueError) as exc:
        raise LiteDeployError(f"cannot load model {model}: {exc}") from exc
    try:
        if runtime.spec.task == "classify":
            return Classifier(runtime), True
        return Detector(runtime, conf=conf, iou=iou, imgsz=imgsz, rect=rect), True
    except ValueError as exc:
        runtime.close()
        raise LiteDeployError(f"cannot run model {model}: {exc}") from exc
    except BaseException:
        runtime.close()
        raise


def class_label(names: Sequence[str], class_id: int) -> str:
    """The name of ``class_id``, or the id as text when ``names`` has no entry for it."""
    return names[class_id] if 0 <= class_id < len(names) else str(class_id)


def _put_label(canvas: np.ndarray, text: str, row: int) -> None:
    """Write ``text`` in white on black at the top-left of ``canvas`` (in place), ``row`` lines down."""
    scale = max(0.4, min(canvas.shape[:2]) / 1000)
    (width, height), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    top = row * (height + base + 4)
    cv2.rectangle(canvas, (0, top), (width + 6, top + height + base + 4), (0, 0, 0), -1)
    cv2.putText(canvas, text, (3, top + height + 2), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
