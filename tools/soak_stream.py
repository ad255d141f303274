"""Soak test of the inference loop: a long generated video through ``lite_deploy.stream``, memory sampled as it runs.

Writes a video (10,000 frames of 320x240 by default, MJPG) of a square moving over a noisy background, runs the
model over every frame, samples the process's resident memory (VmRSS) every 500 frames and prints the samples, the
RSS growth from the first sample to the last (target: < 20 MB over 10,000 frames) and the stream summary.

    python tools/soak_stream.py                       # the bundled demo detector, exported to ONNX first
    python tools/soak_stream.py model.onnx --frames 2000
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import List, Tuple

import cv2
import numpy as np
from tqdm import tqdm

from lite_deploy.runtime.stream import stream


def rss_mb() -> float:
    """Resident memory of this process, MB (Linux /proc)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("/proc/self/status has no VmRSS line")


def write_video(path: Path, frames: int, width: int, height: int) -> None:
    """An MJPG video of ``frames`` frames: a square moving over a fixed noisy background."""
    background = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    if not writer.isOpened():
        raise RuntimeError(f"OpenCV cannot write {path}")
    side = max(8, min(width, height) // 4)
    for i in tqdm(range(frames), desc="writing video", unit="frame"):
        frame = background.copy()
        x = i * 3 % max(1, width - side)
        y = i * 2 % max(1, height - side)
        cv2.rectangle(frame, (x, y), (x + side, y + side), (0, 0, 255), -1)
        writer.write(frame)
    writer.release()


def demo_onnx(folder: Path, imgsz: int) -> Path:
    """The bundled demo detector exported to ONNX in ``folder`` (host side: needs the export extra)."""
    from lite_deploy.assets import demo_weights
    from lite_deploy.export.exporter import export

    return export(demo_weights(), "onnx", imgsz=imgsz, out=folder)["onnx"]


def main() -> None:
    """Generate the video, run the stream and print the memory samples and the summary."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", nargs="?", help="model artifact (default: the bundled demo detector as ONNX)")
    parser.add_argument("--frames", type=int, default=10_000, help="frames in the video (default 10000)")
    parser.add_argument("--size", type=int, nargs=2, default=(320, 240), metavar=("W", "H"), help="frame size")
    parser.add_argument("--every", type=int, default=500, help="sample RSS every N frames (default 500)")
    parser.add_argument("--imgsz", type=int, default=320, help="input size when exporting the demo detector")
    parser.add_argument("--threads", type=int, default=None, help="backend threads (default: the backend's)")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        folder = Path(tmp)
        model = args.model or demo_onnx(folder, args.imgsz)
        video = folder / "soak.avi"
        write_video(video, args.frames, *args.size)
        options = {} if args.threads is None else {"threads": args.threads}
        samples: List[Tuple[int, float]] = []
        with stream(model, video, **options) as s:
            for item in tqdm(s, total=args.frames, desc="streaming", unit="frame"):
                if (item.index + 1) % args.every == 0:
                    samples.append((item.index + 1, rss_mb()))
        summary = s.summary

    print(f"model {model}, {args.frames} frames of {args.size[0]}x{args.size[1]}")
    for frame, mb in samples:
        print(f"  after {frame:6d} frames  RSS {mb:8.1f} MB")
    if len(samples) >= 2:
        growth = samples[-1][1] - samples[0][1]
        peak = max(mb for _, mb in samples) - samples[0][1]
        print(f"RSS growth from frame {samples[0][0]} to {samples[-1][0]}: {growth:+.1f} MB "
              f"(peak {peak:+.1f} MB; target < 20 MB)")
    print(summary)


if __name__ == "__main__":
    main()
