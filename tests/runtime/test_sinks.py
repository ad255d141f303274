"""The public stream sinks: JSON lines and video, written under a temporary name and kept however the loop ends."""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import cv2
import numpy as np
import pytest

from lite_deploy.runtime import Detections, JsonlSink, VideoSink
from lite_deploy.runtime.stream import StreamResult, stream

LATENCY = {"pre": 1.0, "infer": 2.0, "post": 0.5}


def detection_result(index: int) -> StreamResult:
    dets = Detections(np.array([[1, 2, 30, 40]], np.float32), np.array([0.9], np.float32), np.array([1]),
                      ("cat", "dog"))
    return StreamResult(index, 1000.0 + index, np.zeros((48, 64, 3), np.uint8), dets, LATENCY)


def lines(path: Path) -> List[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_sink_writes_one_line_per_result_and_moves_the_file_in_on_close(tmp_path: Path) -> None:
    path = tmp_path / "out" / "predictions.jsonl"
    with JsonlSink(path, names=("cat", "dog", "bird")) as sink:
        sink.append(detection_result(0), image=Path("a.jpg"))
        classes = (np.array([2, 0]), np.array([0.7, 0.2], np.float32))
        sink.append(StreamResult(1, 1001.0, np.zeros((8, 8, 3), np.uint8), classes, LATENCY))
        assert not path.exists() and sink.lines == 2  # nothing under the real name while writing
    first, second = lines(path)
    assert first["frame"] == 0 and first["image"] == "a.jpg" and first["latency_ms"] == LATENCY
    assert first["detections"][0]["class_id"] == 1 and first["detections"][0]["name"] == "dog"
    assert [c["name"] for c in second["classes"]] == ["bird", "cat"] and "image" not in second
    assert [p.name for p in path.parent.iterdir()] == ["predictions.jsonl"]  # no temporary file left
    with pytest.raises(ValueError, match="closed"):
        sink.append(detection_result(2))


@pytest.mark.parametrize("error", [RuntimeError("a frame failed"), KeyboardInterrupt()])
def test_sinks_keep_what_was_recorded_when_the_loop_ends_by_an_error_or_ctrl_c(tmp_path: Path, error) -> None:
    jsonl_path, video_path = tmp_path / "p.jsonl", tmp_path / "v.mp4"
    with pytest.raises(type(error)):
        with JsonlSink(jsonl_path) as jsonl, VideoSink(video_path, fps=10) as video:
            for i in range(3):
                item = detection_result(i)
                jsonl.append(item)
                video.append(item.result.draw(item.frame))
            raise error
    assert [line["frame"] for line in lines(jsonl_path)] == [0, 1, 2]
    capture = cv2.VideoCapture(str(video_path))
    assert int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) == 3 and capture.read()[1].shape == (48, 64, 3)
    capture.release()


def test_video_sink_resizes_to_the_first_frame_and_drops_an_empty_video(tmp_path: Path) -> None:
    path = tmp_path / "v.mp4"
    sink = VideoSink(path)
    sink.append(np.zeros((40, 60, 3), np.uint8))
    sink.append(np.full((90, 30, 3), 255, np.uint8))  # another size: resized to 60x40
    assert sink.size == (60, 40) and sink.fps == 30.0 and sink.close() and sink.close()  # closing twice is harmless
    assert path.is_file() and sink.frames == 2
    empty = tmp_path / "empty.mp4"
    with VideoSink(empty) as nothing:
        pass
    assert not nothing.close() and not empty.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["v.mp4"]


def test_sinks_record_a_real_stream(tiny_artifacts, tmp_path: Path) -> None:
    images = tmp_path / "images"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((64, 80, 3), 60 * i, np.uint8))
    with stream(tiny_artifacts["onnx"], images) as s, JsonlSink(tmp_path / "p.jsonl") as jsonl, \
            VideoSink(tmp_path / "v.mp4", s.source_fps) as video:
        for item in s:
            jsonl.append(item)
            video.append(s.draw(item))
    assert [line["frame"] for line in lines(tmp_path / "p.jsonl")] == [0, 1, 2] and video.frames == 3
