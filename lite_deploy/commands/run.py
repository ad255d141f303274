"""``lite-deploy run MODEL --source SRC``: the inference loop on a camera, video, network stream or image folder.

Shows, records (``--save``, an annotated video) and logs (``--jsonl``, one line per frame) the results, and prints
the stream's summary at the end. What was recorded is kept, finished and readable, however the run ends (Ctrl-C,
a lost source, an error on a frame). Device side: numpy, OpenCV and the model's backend.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional, TextIO

from ..errors import LiteDeployError
from . import args as arg_types

WINDOW = "lite-deploy"
FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}  # video suffix -> codec OpenCV's FFmpeg writes everywhere
DEFAULT_FPS = 30.0  # frame rate of a saved video when the source does not report one


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``run`` subcommand."""
    p = subparsers.add_parser(
        "run",
        help="run a model on a camera, video, stream or image folder",
        description="Run an exported model (.onnx, .xml, .tflite, .engine) frame by frame on a camera, a video, a "
        "network stream, a GStreamer pipeline or a folder of images; show, record or log the results and print "
        "frame counts, latency per stage and FPS at the end.",
    )
    p.add_argument("model", type=arg_types.existing_file, metavar="MODEL",
                   help="model artifact; its spec is <MODEL>.json or embedded")
    p.add_argument("--source", required=True,
                   help="camera index (0), /dev/videoN, a video file, an rtsp:// or http:// URL, a GStreamer "
                   "pipeline ending in appsink (quoted), a folder of images or a quoted glob of images")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (q or Esc quits)")
    p.add_argument("--save", metavar="VIDEO", help="write the annotated frames to VIDEO (.mp4 or .avi)")
    p.add_argument("--jsonl", metavar="FILE", help="write one JSON line per frame (index, time, latency, results)")
    p.add_argument("--max-frames", type=arg_types.positive_int, metavar="N", help="stop after N frames")
    p.add_argument("--conf", type=arg_types.probability, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=arg_types.probability, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--imgsz", type=arg_types.imgsz, nargs="+", metavar="N",
                   help="input size for models with a dynamic height/width: one value or height width")
    p.add_argument("--rect", action="store_true",
                   help="letterbox each frame to the minimal rectangle, padded only to a multiple of the stride (YOLOv5 "
                   "detect.py's auto), instead of the square; needs a .pt or an artifact with a dynamic height/width")
    p.set_defaults(func=run)


class _AtomicPath:
    """A temporary file beside ``path`` (same suffix) that becomes ``path`` by an atomic rename on :meth:`commit`."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=str(path.parent))
        os.close(fd)
        self.path = path
        self.tmp = Path(tmp)

    def commit(self) -> None:
        os.chmod(self.tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary files
        os.replace(self.tmp, self.path)

    def discard(self) -> None:
        if self.tmp.exists():
            self.tmp.unlink()


class _VideoOutput:
    """Annotated frames into a video, opened at the first frame (its size is the video's)."""

    def __init__(self, path: Path, fps: Optional[float]) -> None:
        self.file = _AtomicPath(path)
        self.fps = fps or DEFAULT_FPS
        self.writer: Any = None
        self.size = (0, 0)
        self.frames = 0

    def write(self, frame: Any) -> None:
        import cv2

        if self.writer is None:
            self.size = (frame.shape[1], frame.shape[0])
            fourcc = cv2.VideoWriter_fourcc(*FOURCC[self.file.path.suffix.lower()])
            self.writer = cv2.VideoWriter(str(self.file.tmp), fourcc, self.fps, self.size)
            if not self.writer.isOpened():
                raise LiteDeployError(f"OpenCV cannot write {self.file.path}; try an .avi (MJPG) file")
        if (frame.shape[1], frame.shape[0]) != self.size:  # images of other sizes: the video has one size
            frame = cv2.resize(frame, self.size)
        self.writer.write(frame)
        self.frames += 1

    def close(self) -> bool:
        """Finish the video and move it to its name if it has frames. Returns whether it was kept."""
        if self.writer is not None:
            self.writer.release()
        if self.frames:
            self.file.commit()
            return True
        self.file.discard()
        return False


class _JsonlOutput:
    """One JSON object per line, written through a temporary file."""

    def __init__(self, path: Path) -> None:
        self.file = _AtomicPath(path)
        self.handle: TextIO = open(self.file.tmp, "w", encoding="utf-8")
        self.lines = 0

    def write(self, record: Dict[str, Any]) -> None:
        self.handle.write(json.dumps(record) + "\n")
        self.lines += 1

    def close(self) -> None:
        """Finish the file and move it to its name."""
        self.handle.close()
        self.file.commit()


def frame_record(item: Any, names: Any) -> Dict[str, Any]:
    """The JSON line of one :class:`~lite_deploy.runtime.stream.StreamResult`.

    Keys: ``frame`` (index in the source), ``timestamp`` (capture time, seconds since the epoch), ``latency_ms``
    (per stage) and ``detections`` (:meth:`Detections.to_list`) or, for a classifier, ``classes`` (top-k
    ``class_id``, ``name``, ``score``).
    """
    from ..runtime import Detections
    from ..runtime.stream import class_label

    record: Dict[str, Any] = {
        "frame": item.index,
        "timestamp": round(item.timestamp, 6),
        "latency_ms": {stage: round(ms, 3) for stage, ms in item.latency.items()},
    }
    if isinstance(item.result, Detections):
        record["detections"] = item.result.to_list()
    else:
        ids, probs = item.result
        record["classes"] = [
            {"class_id": int(i), "name": class_label(names, int(i)), "score": round(float(p), 5)}
            for i, p in zip(ids, probs)
        ]
    return record


def check_display() -> None:
    """Open the ``--show`` window.

    Raises:
        LiteDeployError: no display, or an OpenCV without GUI support.
    """
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise LiteDeployError("--show needs a display and there is none here (DISPLAY is not set); "
                              "use --save out.mp4 instead, or run it on the device's desktop")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise LiteDeployError("--show needs OpenCV with GUI support and this one has none (opencv-python-headless); "
                              "pip install opencv-python, or use --save out.mp4") from exc


def run(args: argparse.Namespace) -> int:
    """Run the model over ``--source``; exit status 0, or 130 after Ctrl-C."""
    import cv2

    from ..runtime.stream import Stream

    if args.imgsz is not None and len(args.imgsz) not in (1, 2):
        raise LiteDeployError("--imgsz takes one size or a height and a width")
    imgsz = None if args.imgsz is None else (args.imgsz[0], args.imgsz[-1])
    if args.save and Path(args.save).suffix.lower() not in FOURCC:
        raise LiteDeployError(f"--save {args.save}: the video must end in {' or '.join(FOURCC)}")
    if args.show:
        check_display()
    stream = Stream(args.model, args.source, conf=args.conf, iou=args.iou, imgsz=imgsz, rect=args.rect,
                    max_frames=args.max_frames)
    names = stream.model.names
    video: Optional[_VideoOutput] = None
    jsonl: Optional[_JsonlOutput] = None
    interrupted = False
    try:
        with stream:  # closed on leaving, as "interrupted" after Ctrl-C
            video = _VideoOutput(Path(args.save), stream.source_fps) if args.save else None
            jsonl = _JsonlOutput(Path(args.jsonl)) if args.jsonl else None
            for item in stream:
                if jsonl is not None:
                    jsonl.write(frame_record(item, names))
                if video is not None or args.show:
                    canvas = stream.draw(item)
                    if video is not None:
                        video.write(canvas)
                    if args.show:
                        cv2.imshow(WINDOW, canvas)
                        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                            break
    except KeyboardInterrupt:
        interrupted = True
    finally:  # also on errors (a lost source, a failing frame): what was recorded is kept, then the error shown
        if args.show:
            cv2.destroyAllWindows()
        print(stream.summary)
        if video is not None and video.close():
            print(f"video written to {video.file.path} ({video.frames} frames)")
        if jsonl is not None:
            jsonl.close()
            print(f"{jsonl.lines} JSON lines written to {jsonl.file.path}")
    return 130 if interrupted else 0
