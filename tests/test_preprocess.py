"""Frame checks and conversion, working sizes, resize and normalisation."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime.model.preprocess import as_bgr, normalize_to_tensor, prepare_frame, resize_frame, working_size


def test_bgr_uint8_passes_through_without_copy() -> None:
    frame = np.zeros((3, 5, 3), np.uint8)
    assert as_bgr(frame) is frame


def test_conversions() -> None:
    gray = np.array([[0, 200]], np.uint8)
    assert as_bgr(gray).tolist() == [[[0, 0, 0], [200, 200, 200]]]
    assert as_bgr(gray[..., None]).tolist() == [[[0, 0, 0], [200, 200, 200]]]
    bgra = np.array([[[1, 2, 3, 255]]], np.uint8)
    assert as_bgr(bgra).tolist() == [[[1, 2, 3]]]
    deep = np.array([[[65535, 256, 255]]], np.uint16)
    assert as_bgr(deep).tolist() == [[[255, 1, 0]]]   # 16-bit: top byte


@pytest.mark.parametrize(("frame", "error", "message"), [
    ("frame.png", TypeError, "frame must be a numpy array, got str"),
    (np.zeros((4, 4, 3), np.float32), TypeError, "frame dtype must be uint8 or uint16, got float32"),
    (np.zeros((4, 4, 2), np.uint8), ValueError,
     r"frame must be HxW, HxWx1, HxWx3 or HxWx4 \(grayscale, BGR or BGRA\), got shape \(4, 4, 2\)"),
    (np.zeros((2, 4, 4, 3), np.uint8), ValueError, r"got shape \(2, 4, 4, 3\)"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, r"frame is empty: shape \(0, 4, 3\)"),
])
def test_bad_frames(frame: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        as_bgr(frame)  # type: ignore[arg-type]


@pytest.mark.parametrize(("hw", "imgsz", "expected"), [
    ((720, 1280), 448, (256, 448)),    # 16:9 -> 448x252 -> 448x256
    ((1280, 720), 448, (448, 256)),    # portrait
    ((480, 640), 320, (256, 320)),     # 4:3 -> 320x240 -> 320x256 (nearest multiple)
    ((500, 500), 224, (224, 224)),
    ((100, 3000), 256, (32, 256)),     # never below one stride
    ((720, 1280), 300, (160, 288)),    # imgsz rounded to the stride
])
def test_working_size(hw: tuple[int, int], imgsz: int, expected: tuple[int, int]) -> None:
    assert working_size(*hw, imgsz, 32) == expected


def test_working_size_too_small() -> None:
    with pytest.raises(ValueError, match="imgsz must be an integer >= the model stride 32, got 16"):
        working_size(720, 1280, 16, 32)


def test_resize_keeps_content_close_to_area_resampling(photos: dict[str, np.ndarray]) -> None:
    img = cv2.resize(photos["astronaut"], (1280, 720))
    fast = resize_frame(img, (256, 448))
    ref = cv2.resize(img, (448, 256), interpolation=cv2.INTER_AREA)
    assert fast.shape == (256, 448, 3)
    assert np.abs(fast.astype(int) - ref).mean() < 3.0


def test_normalize_to_tensor_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (4, 6, 3), dtype=np.uint8)
    mean, std = (1.0, 2.0, 3.0), (4.0, 5.0, 6.0)
    for rgb in (True, False):
        ordered = img[..., ::-1] if rgb else img
        ref = ((ordered - np.array(mean)) / np.array(std)).transpose(2, 0, 1)[None]
        got = normalize_to_tensor(img, mean, std, rgb)
        assert got.shape == (1, 3, 4, 6) and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_prepare_frame_geometry() -> None:
    frame = np.zeros((720, 1280), np.uint8)  # grayscale is accepted
    x, geo = prepare_frame(frame, 448, 32, (127.0,) * 3, (128.0,) * 3, True)
    assert x.shape == (1, 3, 256, 448)
    assert (geo.frame_h, geo.frame_w, geo.input_h, geo.input_w) == (720, 1280, 256, 448)
    assert geo.scale_x == pytest.approx(1280 / 448) and geo.scale_y == pytest.approx(720 / 256)
