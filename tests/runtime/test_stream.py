"""The inference loop: files in order, corrupt frames, images, a camera that drops out, limits, Ctrl-C, the CLI,
memory."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import cv2
import numpy as np
import pytest

from lite_deploy.cli import main
from lite_deploy.errors import LiteDeployError
from lite_deploy.runtime import Detections, Detector
from lite_deploy.runtime.profiling.latency import LatencyReservoir
from lite_deploy.runtime.stream import FILE_END_READS, STAGES, Stream, stream
from lite_deploy.spec import ModelSpec, sidecar_path

REPO = Path(__file__).resolve().parents[2]
SIZE = 128


def write_video(path: Path, frames: int, size: Tuple[int, int] = (SIZE, SIZE)) -> Path:
    """An MJPG .avi of ``frames`` flat grey frames; frame i has level ``8 * i % 256``."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 8 * i % 256, np.uint8))
    writer.release()
    return path


def capture_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "lite-deploy-capture"]


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "clip.avi", 30)


@pytest.fixture(scope="module")
def onnx(tiny_artifacts) -> Path:
    return tiny_artifacts["onnx"]


def test_file_frames_in_order(onnx, video):
    with stream(onnx, video) as s:
        items = list(s)
    assert [item.index for item in items] == list(range(30))
    levels = [float(item.frame.mean()) for item in items]
    np.testing.assert_allclose(levels, [8 * i for i in range(30)], atol=2)
    assert all(isinstance(item.result, Detections) and set(item.latency) == set(STAGES) for item in items)
    summary = s.summary
    assert (summary.frames, summary.dropped, summary.skipped, summary.reconnects) == (30, 0, 0, 0)
    assert summary.end == "end of source" and summary.fps > 0
    assert all(st.min <= st.p50 <= st.p90 <= st.p99 <= st.max for st in summary.latency.values())
    assert "30 frames" in str(summary) and "p99" in str(summary)
    assert not capture_threads()
    with Detector.load(onnx) as det:
        want = det(items[7].frame)
    np.testing.assert_array_equal(items[7].result.boxes, want.boxes)
    np.testing.assert_array_equal(items[7].result.class_ids, want.class_ids)


def test_corrupt_frame_in_a_file_is_skipped_and_counted(onnx, video, tmp_path):
    data = bytearray(video.read_bytes())
    starts = [i for i in range(len(data) - 2) if data[i:i + 3] == b"\xff\xd8\xff"]  # JPEG starts, one per frame
    assert len(starts) == 30
    data[starts[10]:starts[10] + 300] = bytes(300)
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    with stream(onnx, broken) as s:
        indices = [item.index for item in s]
    assert indices == [i for i in range(30) if i != 10]
    assert (s.summary.frames, s.summary.skipped) == (29, 1)


@pytest.mark.parametrize("pattern", [None, "*.png"])
def test_images_folder_and_glob(onnx, tmp_path, pattern):
    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((40, 60, 3), 50 * i, np.uint8))
    whole = (tmp_path / "0.png").read_bytes()
    (tmp_path / "3.png").write_bytes(whole[: len(whole) // 2])  # truncated: OpenCV sees a PNG but cannot decode it
    (tmp_path / "notes.txt").write_text("not an image")
    source = tmp_path if pattern is None else str(tmp_path / pattern)
    with stream(onnx, source) as s:
        items = list(s)
    assert [item.index for item in items] == [0, 1, 2]
    assert [int(item.frame[0, 0, 0]) for item in items] == [0, 50, 100]
    assert (s.summary.frames, s.summary.skipped) == (3, 1)


class FakeCamera:
    """Test double of a camera (none exists here): plays a script of read() results, then reports a lost
    connection (read() -> (False, None)) like a cv2.VideoCapture whose device went away."""

    def __init__(self, script: Sequence[Tuple[bool, Optional[np.ndarray]]] = (), opened: bool = True) -> None:
        self.script = list(script)
        self.opened = opened
        self.released = False

    def isOpened(self) -> bool:
        return self.opened

    def read(self) -> Tuple[bool, Optional[np.ndarray]]:
        time.sleep(0.002)  # a camera delivers frames at its own pace
        return self.script.pop(0) if self.script else (False, None)

    def get(self, prop: int) -> float:
        return 0.0

    def release(self) -> None:
        self.released = True


def _good(level: int) -> Tuple[bool, np.ndarray]:
    return True, np.full((96, 128, 3), level, np.uint8)


def test_live_source_that_drops_is_reconnected_and_counted(onnx):
    first = [_good(i) for i in range(5)] + [(True, None), (True, np.zeros((0, 0, 3), np.uint8))]
    first += [_good(i) for i in range(7, 10)]
    cameras = [FakeCamera(first), FakeCamera(opened=False), FakeCamera([_good(i) for i in range(10, 20)]),
               FakeCamera(opened=False), FakeCamera(opened=False)]
    calls = []

    def opener(target, api):
        calls.append((target, api))
        return cameras[len(calls) - 1]

    s = stream(onnx, "rtsp://camera.invalid/live", opener=opener, reconnect_attempts=2, backoff_s=0.01)
    indices = []
    with pytest.raises(LiteDeployError, match="did not come back after 2 reconnect attempts"):
        for item in s:
            indices.append(item.index)
            assert int(item.frame[0, 0, 0]) == item.index
    summary = s.summary
    assert summary.end == "source lost"
    assert (summary.reconnects, summary.skipped) == (1, 2)
    assert summary.frames == len(indices) >= 1 and summary.frames + summary.dropped == 18  # every good frame counted
    assert indices == sorted(set(indices)) and set(indices) <= set(range(5)) | set(range(7, 20))
    assert calls == [("rtsp://camera.invalid/live", cv2.CAP_ANY)] * 5
    assert all(c.released for c in cameras)
    assert not capture_threads()


def test_max_frames(onnx, video):
    s = stream(onnx, str(video), max_frames=5)
    assert [item.index for item in s] == [0, 1, 2, 3, 4]
    assert s.closed and s.summary.end == "max_frames" and s.summary.frames == 5
    assert not capture_threads()


def test_ctrl_c_closes_the_stream(onnx, video):
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        pytest.skip("SIGINT is not Python's default handler here")
    with pytest.raises(KeyboardInterrupt):
        with stream(onnx, video) as s:
            for item in s:
                if item.index == 3:
                    signal.raise_signal(signal.SIGINT)
                    time.sleep(5)  # interrupted at once
    assert s.summary.end == "interrupted" and s.summary.frames == 4
    assert not capture_threads()


@pytest.mark.parametrize("source, message", [
    ("missing.mp4", "missing.mp4 does not exist: give a camera index"),
    ("empty", "holds no images OpenCV can read"),
    ("*.nothing", "matches no files"),
    ("junk.avi", "it is not a video OpenCV can decode"),
    ("videotestsrc ! appsink", "could not open the GStreamer pipeline"),
])
def test_bad_source(onnx, tmp_path, source, message):
    (tmp_path / "empty").mkdir()
    (tmp_path / "junk.avi").write_bytes(b"not a video at all" * 10)
    if "!" not in source:
        source = str(tmp_path / source)
    with pytest.raises(LiteDeployError, match=message):
        stream(onnx, source)
    assert not capture_threads()


def test_camera_that_does_not_open(onnx):
    with pytest.raises(LiteDeployError, match="could not open camera 3: check that it is connected"):
        stream(onnx, 3, opener=lambda target, api: FakeCamera(opened=False))


def test_bad_model_and_options(video, tmp_path, onnx):
    with pytest.raises(LiteDeployError, match="nope.onnx' does not exist"):
        stream(tmp_path / "nope.onnx", video)
    with pytest.raises(LiteDeployError, match="max_frames must be at least 1"):
        stream(onnx, video, max_frames=0)


def test_latency_reservoir_is_bounded_and_exact_below_capacity():
    stats = LatencyReservoir(capacity=100)
    for v in range(100):
        stats.add(float(v))
    assert stats.stats().p50 == pytest.approx(49.5) and stats.stats().max == 99
    for v in range(100, 10_000):
        stats.add(float(v))
    result = stats.stats()
    assert stats._sample.shape == (100,) and result.mean == pytest.approx(4999.5) and result.max == 9999
    assert result.min == 0 and 2000 < result.p50 < 8000  # a uniform sample of 0..9999, not the first 100 values


def test_cli_writes_video_and_jsonl(onnx, video, tmp_path, capsys):
    out, log = tmp_path / "out" / "clip.mp4", tmp_path / "out" / "predictions.jsonl"
    assert main(["predict", str(onnx), "--source", str(video), "--save", "--json", "--out", str(out.parent),
                 "--conf", "0.3"]) == 0
    printed = capsys.readouterr().out
    assert "30 frames" in printed and "end of source" in printed and "video written to" in printed
    capture = cv2.VideoCapture(str(out))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame.shape)
    capture.release()
    assert frames == [(SIZE, SIZE, 3)] * 30
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert [line["frame"] for line in lines] == list(range(30))
    assert set(lines[0]["latency_ms"]) == set(STAGES) and lines[0]["timestamp"] > 1e9
    assert all(d["score"] >= 0.3 and d["name"] in ("cat", "dog", "bird") for line in lines for d in line["detections"])
    assert sorted(p.name for p in out.parent.iterdir()) == ["clip.mp4", "predictions.jsonl"]  # no temporary left


def test_cli_ctrl_c_keeps_what_was_recorded(onnx, video, tmp_path, capsys, monkeypatch):
    draw = Stream.draw

    def interrupted_at_frame_3(self, item):
        if item.index == 3:
            raise KeyboardInterrupt  # as if Ctrl-C arrived while drawing frame 3
        return draw(self, item)

    monkeypatch.setattr(Stream, "draw", interrupted_at_frame_3)
    out, log = tmp_path / "clip.mp4", tmp_path / "predictions.jsonl"
    assert main(["predict", str(onnx), "--source", str(video), "--save", "--json", "--out", str(tmp_path)]) == 130
    printed = capsys.readouterr().out
    assert "4 frames" in printed and "interrupted" in printed
    assert int(cv2.VideoCapture(str(out)).get(cv2.CAP_PROP_FRAME_COUNT)) == 3
    assert len(log.read_text().splitlines()) == 4
    assert not capture_threads()


def test_cli_show_without_display(onnx, video, monkeypatch, capsys):
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert main(["predict", str(onnx), "--source", str(video), "--show"]) == 2
    assert "--show needs a display" in capsys.readouterr().err


def test_cli_outputs_go_to_numbered_run_folders(onnx, video, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        assert main(["predict", str(onnx), "--source", str(video), "--json", "--max-frames", "2"]) == 0
    assert sorted(p.name for p in (tmp_path / "runs" / "predict").iterdir()) == ["exp", "exp2"]
    assert len((tmp_path / "runs" / "predict" / "exp2" / "predictions.jsonl").read_text().splitlines()) == 2
    assert main(["predict", str(onnx), "--source", str(video), "--max-frames", "2"]) == 0  # nothing to write
    assert not (tmp_path / "runs" / "predict" / "exp3").exists()


def test_cli_classifier(tmp_path, video, capsys):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, 2), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                torch.nn.Linear(4, 3)).eval()
    path = tmp_path / "clf.onnx"
    torch.onnx.export(model, (torch.rand(1, 3, 32, 32),), str(path), input_names=["images"], output_names=["logits"],
                      opset_version=17, dynamo=False)
    ModelSpec(task="classify", names=("a", "b", "c"), imgsz=(32, 32), output_layout="logits", output_names=("logits",),
              preprocess="center_crop").save(sidecar_path(path))
    log = tmp_path / "out" / "predictions.jsonl"
    assert main(["predict", str(path), "--source", str(video), "--json", "--max-frames", "4", "--save",
                 "--out", str(log.parent)]) == 0
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(lines) == 4 and "max_frames" in capsys.readouterr().out
    assert [c["name"] for c in lines[0]["classes"]] and {c["name"] for c in lines[0]["classes"]} <= {"a", "b", "c"}


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs /proc (Linux)")
def test_memory_stays_flat(onnx, tmp_path):
    clip = write_video(tmp_path / "long.avi", 300, size=(320, 240))  # a leak of frames would be 57 MB
    baseline = None
    with stream(onnx, clip) as s:
        for item in s:
            if item.index == 50:
                baseline = _rss_mb()
    growth = _rss_mb() - baseline
    assert s.summary.frames == 300
    assert growth < 25, f"RSS grew by {growth:.1f} MB over 250 frames"


def test_stream_and_predict_do_not_import_torch():
    code = (
        "import sys\n"
        "import lite_deploy.runtime.stream, lite_deploy.commands.predict\n"
        "from lite_deploy import stream\n"
        "bad = sorted(m for m in sys.modules if m == 'torch' or m.startswith(('torch.', 'lite_deploy.models')))\n"
        "assert not bad, bad\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_corrupt_region_in_a_video_is_read_past_and_counted(onnx, tmp_path):
    """20 KB of random bytes in the middle of an mp4: OpenCV fails ~36 reads in a row, then decodes again."""
    writer = cv2.VideoWriter(str(tmp_path / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), 30, (SIZE, 96))
    for i in range(300):
        frame = np.full((96, SIZE, 3), 8 * i % 256, np.uint8)
        cv2.putText(frame, str(i), (10, 60), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        writer.write(frame)
    writer.release()
    data = bytearray((tmp_path / "clip.mp4").read_bytes())
    middle = len(data) // 2
    data[middle:middle + 20_000] = np.random.default_rng(0).integers(0, 256, 20_000, dtype=np.uint8).tobytes()
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(bytes(data))
    with stream(onnx, broken) as s:
        levels = {item.index: float(item.frame[80:, 100:].mean()) for item in s}
    summary = s.summary
    assert summary.end == "end of source" and summary.skipped > FILE_END_READS
    assert summary.frames + summary.skipped == 300
    after = [i for i in levels if i > 200]
    assert len(after) > 90 and max(after) == 299  # the frames after the corrupt region were processed
    assert all(abs(levels[i] - 8 * i % 256) < 6 for i in after)  # under their own index
    assert f"{summary.skipped} skipped" in str(summary)


def test_source_that_opens_but_never_delivers_gives_up(onnx):
    calls = []

    def opener(target, api):
        calls.append(target)
        return FakeCamera()  # opens, then every read fails

    s = stream(onnx, "rtsp://camera.invalid/live", opener=opener, reconnect_attempts=3, backoff_s=0.01)
    watchdog = threading.Timer(10, s.close)  # the old loop reconnected forever
    watchdog.start()
    try:
        with pytest.raises(LiteDeployError, match="did not come back after 3 reconnect attempts"):
            list(s)
    finally:
        watchdog.cancel()
    assert len(calls) == 4 and s.summary.end == "source lost" and s.summary.reconnects == 3
    assert not capture_threads()


def test_cli_folder_with_unreadable_files_processes_the_rest(onnx, tmp_path, capsys):
    folder = tmp_path / "images"
    folder.mkdir()
    for name in ("a.png", "c.png", "e.jpg"):
        cv2.imwrite(str(folder / name), np.full((40, 60, 3), 90, np.uint8))
    (folder / "b.jpg").write_text("not an image")
    (folder / "d.png").write_bytes(b"")
    log = tmp_path / "out" / "predictions.jsonl"
    assert main(["predict", str(onnx), "--source", str(folder), "--json", "--out", str(log.parent)]) == 0
    printed = capsys.readouterr().out
    assert "3 frames" in printed and "2 skipped" in printed and "unreadable: b.jpg, d.png" in printed
    assert [json.loads(line)["frame"] for line in log.read_text().splitlines()] == [0, 2, 4]


@pytest.mark.parametrize("name, content", [("text.jpg", b"hello, not a picture"), ("empty.png", b""),
                                           ("noise.mp4", b"\x00\x00\x00\x18ftypmp42" + bytes(4000))])
def test_cli_source_without_one_readable_frame_is_an_error(onnx, tmp_path, capsys, name, content):
    (tmp_path / name).write_bytes(content)
    assert main(["predict", str(onnx), "--source", str(tmp_path / name), "--json", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    assert "give a video or images OpenCV can read" in err[0] or "not a video OpenCV can decode" in err[0]


def test_cli_error_on_a_frame_keeps_what_was_recorded(onnx, video, tmp_path, capsys, monkeypatch):
    draw = Stream.draw

    def fails_at_frame_3(self, item):
        if item.index == 3:
            raise RuntimeError("an odd frame")
        return draw(self, item)

    monkeypatch.setattr(Stream, "draw", fails_at_frame_3)
    out, log = tmp_path / "clip.mp4", tmp_path / "predictions.jsonl"
    try:
        code = main(["predict", str(onnx), "--source", str(video), "--save", "--json", "--out", str(tmp_path)])
    except RuntimeError:
        code = None
    assert code != 0
    capture = cv2.VideoCapture(str(out))
    assert capture.isOpened() and int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and capture.read()[0]
    capture.release()
    assert [json.loads(line)["frame"] for line in log.read_text().splitlines()] == [0, 1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "predictions.jsonl"]
    assert not capture_threads()
