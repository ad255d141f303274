"""lite-deploy predict MODEL --source SRC: run a model on images, a video, a camera, a network stream or a GStreamer
pipeline.

One command for every source. Images (a file, a folder, a quoted glob) get one printed line each; videos and live
sources print the stream's summary at the end (frames, dropped, skipped, reconnects, FPS, latency per stage), and
so do images. --save writes the annotated images (same names) or the annotated video, --json one JSON line per frame
or image (predictions.jsonl), both into a new runs/predict/exp<N> folder unless --out is given. What was written is
kept, finished and readable, however the run ends (Ctrl-C, a lost source, an error on a frame). Unreadable images
of a folder are skipped and named; not one readable frame is an error. Device side: numpy, OpenCV and the model's
backend.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Dict, Optional, Sequence, Union

from ..errors import LiteDeployError
from . import args as arg_types
from .outputs import add_out, run_dir

if TYPE_CHECKING:
    from ..runtime import Classifier, Detector
    from ..runtime.sinks import JsonlSink, VideoSink
    from ..runtime.stream import SourceInfo, Stream, StreamResult

WINDOW = "lite-deploy"
VIDEO_SUFFIX = ".mp4"  # VideoSink's codec (mp4v) is one OpenCV's FFmpeg writes everywhere
JSONL_NAME = "predictions.jsonl"


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the ``predict`` subcommand."""
    p = subparsers.add_parser(
        "predict",
        help="run a model on images, a video, a camera, a network stream or a GStreamer pipeline",
        description=__doc__,
    )
    p.add_argument("model", type=arg_types.existing_file, metavar="MODEL",
                   help="artifact (.onnx, .xml, .tflite, .engine; its spec is <MODEL>.json or embedded) or a .pt "
                   "checkpoint")
    p.add_argument("--source", required=True,
                   help="an image, a folder of images, a quoted glob of images, a video file, a camera index (0) or "
                   "/dev/videoN, an rtsp:// or http:// URL, or a GStreamer pipeline ending in appsink (quoted)")
    p.add_argument("--save", action="store_true",
                   help=f"write the annotated images (same names), or the annotated video ({VIDEO_SUFFIX}), into "
                   "the output folder")
    p.add_argument("--json", action="store_true",
                   help=f"write one JSON line per image or frame ({JSONL_NAME}: frame, time, latency, results) into "
                   "the output folder")
    add_out(p, "predict", "--save and --json")
    p.add_argument("--show", action="store_true", help="show the annotated frames in a window (q or Esc quits)")
    p.add_argument("--max-frames", type=arg_types.positive_int, metavar="N", help="stop after N frames")
    p.add_argument("--conf", type=arg_types.probability, default=0.25, help="confidence threshold (default 0.25)")
    p.add_argument("--iou", type=arg_types.probability, default=0.45, help="NMS IoU threshold (default 0.45)")
    p.add_argument("--max-det", type=arg_types.positive_int, default=300,
                   help="most detections per image (default 300)")
    arg_types.add_imgsz(p, "input size of a .pt or of an artifact with a dynamic height/width (default: its own)")
    p.add_argument("--rect", action="store_true",
                   help="letterbox each frame to the minimal rectangle, padded only to a multiple of the stride "
                   "(YOLOv5 detect.py's auto), instead of the square; needs a .pt or an artifact with a dynamic "
                   "height/width")
    p.set_defaults(func=run)


def check_display() -> None:
    """Open the ``--show`` window.

    Raises:
        LiteDeployError: no display, or an OpenCV without GUI support.
    """
    import cv2

    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise LiteDeployError("--show needs a display and there is none here (DISPLAY is not set); "
                              "use --save instead, or run it on the device's desktop")
    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error as exc:
        raise LiteDeployError("--show needs OpenCV with GUI support and this one has none (opencv-python-headless); "
                              "pip install opencv-python, or use --save") from exc


def image_line(name: str, item: "StreamResult", names: Sequence[str]) -> str:
    """One printed line per image: ``a.jpg: 2 circle, 1 star (1.2 ms pre, 3.4 ms infer, 0.5 ms post)``."""
    from ..runtime import Detections
    from ..runtime.stream import class_label

    t = item.latency
    if isinstance(item.result, Detections):
        counts: Dict[str, int] = {}
        for i in range(len(item.result)):
            counts[item.result.label(i)] = counts.get(item.result.label(i), 0) + 1
        found = ", ".join(f"{n} {label}" for label, n in sorted(counts.items())) or "nothing"
    else:
        ids, probs = item.result
        found = ", ".join(f"{class_label(names, int(i))} {float(p):.2f}" for i, p in zip(ids, probs))
    return f"{name}: {found} ({t['pre']:.1f} ms pre, {t['infer']:.1f} ms infer, {t['post']:.1f} ms post)"


def _load(args: argparse.Namespace) -> Union["Detector", "Classifier"]:
    """The detector or classifier of ``args.model`` (its spec's task decides) with the command's settings."""
    from ..runtime import Classifier, Detector, load_runtime

    runtime = load_runtime(args.model)
    if runtime.spec.task == "classify":
        return Classifier(runtime, imgsz=args.imgsz)
    runtime.close()
    imgsz = args.imgsz
    if imgsz is None and Path(args.model).suffix.lower() == ".pt":  # host side: the size the checkpoint serves at
        from ..models.checkpoint import serving_imgsz

        imgsz = serving_imgsz(args.model)
    return Detector.load(args.model, conf=args.conf, iou=args.iou, max_det=args.max_det, imgsz=imgsz, rect=args.rect)


class _Outputs:
    """What --save and --json write into the output folder, opened at the first frame (nothing without one).

    Args:
        out: the output folder.
        save: write annotated images (image sources) or one annotated video (other sources).
        json: write one JSON line per frame (predictions.jsonl).
        source: the resolved source (:class:`~lite_deploy.runtime.stream.SourceInfo`).
    """

    def __init__(self, out: Path, save: bool, json: bool, source: "SourceInfo") -> None:
        self.out, self.save, self.json, self.source = out, save, json, source
        self.video: Optional["VideoSink"] = None
        self.jsonl: Optional["JsonlSink"] = None
        self.images = 0

    def add(self, stream: "Stream", item: "StreamResult", image: Optional[Path]) -> None:
        """Record one processed frame; ``image`` is its file for image sources."""
        import cv2

        from ..io import atomic_write_bytes
        from ..runtime.sinks import JsonlSink, VideoSink

        if self.json and self.jsonl is None:
            self.jsonl = JsonlSink(self.out / JSONL_NAME, stream.model.names)
        if self.jsonl is not None:
            self.jsonl.append(item, image)
        if self.save and image is not None:  # the drawing under the image's name, without the FPS overlay
            canvas = item.result.draw(item.frame) if hasattr(item.result, "draw") else stream.draw(item)
            ok, encoded = cv2.imencode(image.suffix if cv2.haveImageWriter(image.name) else ".jpg", canvas)
            if not ok:
                raise LiteDeployError(f"could not encode the drawing of {image.name}")
            atomic_write_bytes(self.out / image.name, encoded.tobytes())
            self.images += 1
        elif self.save:
            if self.video is None:
                stem = Path(self.source.description).stem if self.source.kind == "video" else "stream"
                self.video = VideoSink(self.out / f"{stem}{VIDEO_SUFFIX}", stream.source_fps)
            self.video.append(stream.draw(item))

    def close(self) -> None:
        """Finish the video and the JSON lines (kept however the run ended) and say where everything went."""
        if self.images:
            print(f"{self.images} annotated images written to {self.out}")
        if self.video is not None and self.video.close():
            print(f"video written to {self.video.path} ({self.video.frames} frames)")
        if self.jsonl is not None:
            self.jsonl.close()
            print(f"{self.jsonl.lines} JSON lines written to {self.jsonl.path}")


def run(args: argparse.Namespace) -> int:
    """Run the model over ``--source``; exit status 0, or 130 after Ctrl-C."""
    import cv2

    from ..runtime.stream import Stream, name_list, resolve_source

    source = resolve_source(args.source)  # a missing file or an empty folder is refused before the model loads
    if args.show:
        check_display()
    images = source.images if source.kind == "images" else ()
    outputs = _Outputs(run_dir("predict", args.out), args.save, args.json, source) if args.save or args.json else None
    model = _load(args)
    stream: Optional["Stream"] = None
    interrupted = False
    try:
        stream = Stream(model, args.source, max_frames=args.max_frames)
        with stream:  # closed on leaving, as "interrupted" after Ctrl-C
            for item in stream:
                image = images[item.index] if images else None
                if image is not None:
                    print(image_line(image.name, item, model.names))
                if outputs is not None:
                    outputs.add(stream, item, image)
                if args.show:
                    cv2.imshow(WINDOW, stream.draw(item))
                    if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                        break
    except KeyboardInterrupt:
        interrupted = True
    finally:  # also on errors (a lost source, a failing frame): what was recorded is kept, then the error shown
        if args.show:
            cv2.destroyAllWindows()
        if stream is not None:
            summary = stream.summary
            print(summary)
            if images and summary.unreadable and summary.frames:  # none read: the error says it
                print(f"warning: {len(summary.unreadable)} of {len(images)} images could not be read and were "
                      f"skipped: {name_list(summary.unreadable)}", file=sys.stderr)
        model.close()
        if outputs is not None:
            outputs.close()
    return 130 if interrupted else 0
