"""Letterbox = YOLOv5's letterbox; image checks; the batched blob; centre crop."""

from __future__ import annotations

import statistics
import time

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lite_deploy.runtime import letterbox
from lite_deploy.runtime.pipeline.postprocess import scale_boxes
from lite_deploy.runtime.pipeline.preprocess import Geometry, Preprocessor, center_crop, check_image, plan_letterbox
from lite_deploy.spec import ModelSpec


def reference_letterbox(im, new_shape=(640, 640), stride=32, auto=False, scaleup=True, value=114):
    """YOLOv5's letterbox as documented: gain, unpadded size, padding (mod stride with auto), halves, border."""
    if isinstance(new_shape, int):
        new_shape = (new_shape, new_shape)
    h, w = im.shape[:2]
    r = min(new_shape[0] / h, new_shape[1] / w)
    if not scaleup:
        r = min(r, 1.0)
    unpadded = (int(round(w * r)), int(round(h * r)))
    dw, dh = new_shape[1] - unpadded[0], new_shape[0] - unpadded[1]
    if auto:
        dw, dh = dw % stride, dh % stride
    dw, dh = dw / 2, dh / 2
    if (w, h) != unpadded:
        im = cv2.resize(im, unpadded, interpolation=cv2.INTER_LINEAR)
    top, bottom = int(round(dh - 0.1)), int(round(dh + 0.1))
    left, right = int(round(dw - 0.1)), int(round(dw + 0.1))
    im = cv2.copyMakeBorder(im, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(value, value, value))
    return im, (r, r), (dw, dh)


SHAPES = [(720, 1280), (1280, 720), (17, 23), (640, 640), (333, 501), (1, 9), (480, 640), (641, 639)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("new_shape", [640, (320, 256), 97])
@pytest.mark.parametrize("auto, scaleup", [(False, True), (True, True), (False, False), (True, False)])
def test_letterbox_equals_yolov5(shape, new_shape, auto, scaleup):
    image = np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    got, ratio, pad = letterbox(image, new_shape, stride=32, auto=auto, scaleup=scaleup)
    want, want_ratio, want_pad = reference_letterbox(image, new_shape, 32, auto, scaleup)
    assert ratio == want_ratio and pad == want_pad
    np.testing.assert_array_equal(got, want)


def _spec(**changes) -> ModelSpec:
    base = dict(task="detect", names=("a",), imgsz=(320, 256), output_layout="yolov5", output_names=("y",))
    base.update(changes)
    return ModelSpec(**base)


@pytest.mark.parametrize("shape", [(720, 1280), (90, 60), (256, 320), (320, 256)])
def test_preprocessor_blob_equals_letterbox_then_yolov5_transform(shape):
    frames = [np.random.default_rng(i).integers(0, 256, (*shape, 3), dtype=np.uint8) for i in range(3)]
    pre = Preprocessor(_spec())
    for _ in range(2):  # the second call reuses the buffers, which must not leak the first call's pixels
        blob, geometries = pre(frames)
    assert blob.shape == (3, 3, 320, 256) and blob.dtype == np.float32
    for i, frame in enumerate(frames):
        padded, (ratio, _), _ = reference_letterbox(frame, (320, 256))
        want = padded[:, :, ::-1].transpose(2, 0, 1).astype(np.float32) / np.float32(255)
        np.testing.assert_array_equal(blob[i], want)
        assert geometries[i].ratio == ratio and geometries[i].shape == shape


def test_preprocessor_layout_dtype_and_normalisation():
    frame = np.random.default_rng(0).integers(0, 256, (50, 70, 3), dtype=np.uint8)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    nchw, _ = Preprocessor(_spec(mean=mean, std=std))([frame])
    nhwc, _ = Preprocessor(_spec(mean=mean, std=std, layout="NHWC"))([frame])
    np.testing.assert_array_equal(nhwc[0], nchw[0].transpose(1, 2, 0))
    padded = reference_letterbox(frame, (320, 256))[0][:, :, ::-1].astype(np.float32) / np.float32(255)
    want = (padded - np.float32(mean)) / np.float32(std)
    np.testing.assert_allclose(nhwc[0], want, rtol=1e-6, atol=1e-6)
    half, _ = Preprocessor(_spec(), np.float16)([frame])
    assert half.dtype == np.float16
    raw, _ = Preprocessor(_spec(), np.uint8)([frame])
    np.testing.assert_array_equal(raw[0], reference_letterbox(frame, (320, 256))[0][:, :, ::-1].transpose(2, 0, 1))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("dtype", [np.float32, np.float16, np.uint8])
@pytest.mark.parametrize("bgr_to_rgb", [True, False])
def test_reused_preprocessor_equals_a_fresh_one_whatever_came_before(layout, dtype, bgr_to_rgb):
    """Frames of changing shapes, batch sizes and pixels through one Preprocessor (painted canvases, partly
    rewritten blobs) give what a new Preprocessor gives for each call alone."""
    spec = _spec(layout=layout, bgr_to_rgb=bgr_to_rgb, mean=(0.1, 0.2, 0.3), std=(0.5, 0.6, 0.7))
    rng = np.random.default_rng(0)
    shapes = [[(720, 1280)], [(720, 1280)], [(90, 60)], [(720, 1280)], [(90, 60), (720, 1280)], [(320, 256)],
              [(720, 1280)], [(90, 60), (720, 1280)], [(720, 1280), (90, 60)]]
    reused = Preprocessor(spec, dtype)
    for batch in shapes:
        frames = [rng.integers(0, 256, (*shape, 3), dtype=np.uint8) for shape in batch]
        got, geometries = reused(frames)
        want, want_geometries = Preprocessor(spec, dtype)(frames)
        np.testing.assert_array_equal(got, want)
        assert geometries == want_geometries


def test_preprocessor_auto_letterbox_for_one_frame():
    frame = np.zeros((720, 1280, 3), np.uint8)
    blob, geometries = Preprocessor(_spec(imgsz=(640, 640), letterbox_auto=True))([frame])
    assert blob.shape == (1, 3, 384, 640) and geometries[0].top == 12


@pytest.mark.parametrize(
    "image, message",
    [
        (None, r"HxWx3 uint8 BGR image .*got None"),
        (np.zeros((8, 8, 3), np.float32), r"got dtype float32; convert to uint8"),
        (np.zeros((8, 8, 2), np.uint8), r"got shape \(8, 8, 2\)"),
        (np.zeros((1, 1, 8, 8, 3), np.uint8), r"got shape \(1, 1, 8, 8, 3\)"),
        ("image.jpg", r"got str"),
        (np.zeros((0, 0, 3), np.uint8), r"got an empty image of shape \(0, 0, 3\)"),
        (np.zeros((0, 7), np.uint8), r"got an empty image of shape \(0, 7\)"),
    ],
)
def test_bad_images_are_rejected(image, message):
    with pytest.raises(ValueError, match=message):
        check_image(image)


def test_grey_and_bgra_are_converted():
    grey = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(check_image(grey), np.repeat(grey[:, :, None], 3, axis=2))
    bgra = np.dstack([grey, grey + 1, grey + 2, np.full_like(grey, 255)])
    np.testing.assert_array_equal(check_image(bgra), bgra[:, :, :3])


@pytest.mark.parametrize("shape", [(480, 640), (640, 480), (224, 224), (100, 300)])
def test_center_crop(shape):
    image = np.random.default_rng(1).integers(0, 256, (*shape, 3), dtype=np.uint8)
    crop = center_crop(image, (224, 224), 0.875)
    assert crop.shape == (224, 224, 3)
    short = min(shape)
    if shape[0] <= shape[1]:
        resized_shape = (256, int(256 * shape[1] / shape[0]))
    else:
        resized_shape = (int(256 * shape[0] / shape[1]), 256)
    resized = cv2.resize(image, resized_shape[::-1], interpolation=cv2.INTER_LINEAR) if short != 256 else image
    top, left = round((resized_shape[0] - 224) / 2), round((resized_shape[1] - 224) / 2)
    np.testing.assert_array_equal(crop, resized[top : top + 224, left : left + 224])


def _check_plan(shape, new_shape, plan, auto=False):
    """Output size, padding and the inverse mapping of the resized image's corners (see plan_letterbox)."""
    h, w = shape
    rw, rh = plan.resized
    assert rw >= 1 and rh >= 1 and min(plan.top, plan.bottom, plan.left, plan.right) >= 0
    if not auto:
        assert (plan.top + rh + plan.bottom, plan.left + rw + plan.right) == new_shape
    corners = np.array([[plan.left, plan.top, plan.left + rw, plan.top + rh]], np.float32)
    geometry = Geometry(plan.ratio, plan.left, plan.top, shape)
    back = (corners - np.float32([plan.left, plan.top, plan.left, plan.top])) / np.float32(plan.ratio)
    # unclipped, the corners come back within one network pixel of the image's own corners
    tolerance = 1.0 / plan.ratio + 1e-3 * max(h, w)
    np.testing.assert_allclose(back[0], [0, 0, w, h], atol=tolerance)
    x1, y1, x2, y2 = scale_boxes(corners, geometry)[0]
    assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h


@pytest.mark.parametrize("shape", [(1, 5000), (5000, 2), (1, 1), (10000, 1), (2, 10000)])
@pytest.mark.parametrize("new_shape", [640, (320, 256)])
def test_extreme_aspect_ratios_keep_one_pixel(shape, new_shape):
    image = np.full((*shape, 3), 200, np.uint8)
    padded, _, _ = letterbox(image, new_shape)
    target = (new_shape, new_shape) if isinstance(new_shape, int) else new_shape
    assert padded.shape == (*target, 3)
    plan = plan_letterbox(shape, target)
    _check_plan(shape, target, plan)
    rw, rh = plan.resized
    assert (padded[plan.top : plan.top + rh, plan.left : plan.left + rw] == 200).all()  # the image is in there
    spec = ModelSpec(task="detect", names=("a",), imgsz=target, output_layout="boxes_scores", output_names=("b", "s"))
    blob, geometries = Preprocessor(spec)([image])
    assert blob.shape == (1, 3, *target) and geometries[0].shape == shape


@pytest.mark.parametrize("shape, new_shape", [((0, 0), 640), ((0, 5), 640), ((5, 5), (0, 640))])
def test_empty_sides_are_refused(shape, new_shape):
    with pytest.raises(ValueError, match="at least 1 pixel per side"):
        plan_letterbox(shape, new_shape)
    if 0 in shape:
        with pytest.raises(ValueError, match="empty image"):
            Preprocessor(ModelSpec(task="detect", names=("a",), imgsz=(64, 64), output_layout="boxes_scores",
                                   output_names=("b", "s")))([np.zeros((*shape, 3), np.uint8)])


@settings(max_examples=300, deadline=None)
@given(
    h=st.integers(1, 10_000), w=st.integers(1, 10_000), th=st.integers(1, 1280), tw=st.integers(1, 1280),
    scaleup=st.booleans(), auto=st.booleans(), center=st.booleans(),
)
def test_letterbox_plan_property(h, w, th, tw, scaleup, auto, center):
    plan = plan_letterbox((h, w), (th, tw), 32, auto, scaleup, center)
    _check_plan((h, w), (th, tw), plan, auto)
    if auto:  # the minimal rectangle: no larger than the target, and smaller by whole strides
        height, width = plan.top + plan.resized[1] + plan.bottom, plan.left + plan.resized[0] + plan.right
        assert height <= th and width <= tw and (th - height) % 32 == 0 and (tw - width) % 32 == 0


@settings(max_examples=40, deadline=None)
@given(h=st.integers(1, 3000), w=st.integers(1, 3000), size=st.sampled_from([64, 320, 640]))
def test_letterbox_pixels_property(h, w, size):
    padded, _, _ = letterbox(np.zeros((h, w, 3), np.uint8), size)
    assert padded.shape == (size, size, 3)


@pytest.mark.parametrize("layout, dtype", [("NCHW", np.float32), ("NHWC", np.float32), ("NCHW", np.float16),
                                           ("NCHW", np.uint8)])
def test_preprocessor_buffers_follow_changing_frame_shapes(layout, dtype):
    # the padding of a reused canvas / blob is written once per letterbox geometry: a new geometry (landscape,
    # portrait, a small frame, back again) must still give exactly the reference blob
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    pre = Preprocessor(_spec(mean=mean, std=std, layout=layout), dtype)
    rng = np.random.default_rng(0)
    for shape in [(720, 1280), (720, 1280), (1280, 720), (90, 60), (720, 1280), (1280, 720)]:
        frame = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
        blob, _ = pre([frame])
        padded = reference_letterbox(frame, (320, 256))[0][:, :, ::-1]
        if dtype == np.uint8:
            want = padded
        else:
            want = ((padded.astype(np.float32) / np.float32(255) - np.float32(mean)) / np.float32(std)).astype(dtype)
        got = blob[0].transpose(1, 2, 0) if layout == "NCHW" else blob[0]
        np.testing.assert_array_equal(got, want)


def test_preprocessor_costs_little_more_than_its_resize():
    # the blob is one resize into a reused canvas plus one table lookup per pixel into the float planes: within
    # one run (interleaved, medians) it costs at most 4x the bare resize of a 1280x720 frame to 640x360
    # (about 2.5x measured; the per-channel divide of the full 640x640 float blob it replaced cost about 10x)
    frame = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), dtype=np.uint8)
    pre = Preprocessor(_spec(imgsz=(640, 640)))
    canvas = np.empty((360, 640, 3), np.uint8)
    pre_ms, resize_ms = [], []
    for _ in range(60):
        start = time.perf_counter()
        pre([frame])
        middle = time.perf_counter()
        cv2.resize(frame, (640, 360), dst=canvas, interpolation=cv2.INTER_LINEAR)
        end = time.perf_counter()
        pre_ms.append(middle - start)
        resize_ms.append(end - middle)
    assert statistics.median(pre_ms) <= 4 * statistics.median(resize_ms)
