"""Drawing on small frames, pixel by pixel; in place, frame first, frame returned."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.model.draw import (
    RenderOptions,
    colorize,
    draw_boxes,
    draw_heatmap,
    draw_hud,
    draw_result,
    hud_text,
)
from realtime.model.engine import Result


def test_colorize_jet_ends() -> None:
    img = colorize(np.array([[1.0, 0.0]], np.float32), upsample=1)
    assert img.tolist() == [[[0, 0, 128], [128, 0, 0]]]  # JET: 1 -> dark red, 0 -> dark blue


def test_heatmap_exact_pixels_in_place() -> None:
    frame = np.full((4, 4, 3), 100, np.uint8)
    cam = np.ones((2, 2), np.float32)
    out = draw_heatmap(frame, cam, alpha=0.5)
    assert out is frame
    # 0.5 * (100, 100, 100) + 0.5 * JET(255) = 0.5 * (0, 0, 128): (50, 50, 114)
    assert (frame == np.array([50, 50, 114], np.uint8)).all()


def test_heatmap_follows_the_map_and_alpha_zero_is_a_no_op() -> None:
    frame = np.zeros((8, 16, 3), np.uint8)
    cam = np.array([[0.0, 1.0]], np.float32)  # left cold, right hot
    draw_heatmap(frame, cam, alpha=1.0)
    assert frame[4, 0].tolist() == [128, 0, 0] and frame[4, 15].tolist() == [0, 0, 128]
    before = frame.copy()
    draw_heatmap(frame, np.ones((2, 2), np.float32), alpha=0.0)
    assert (frame == before).all()


def test_box_outline_exact_pixels() -> None:
    frame = np.zeros((10, 10, 3), np.uint8)
    out = draw_boxes(frame, [[2, 3, 7, 8]], colors=[(0, 255, 0)], thickness=1)
    assert out is frame
    green = (frame == [0, 255, 0]).all(axis=2)
    expected = np.zeros((10, 10), bool)
    expected[3, 2:7] = expected[7, 2:7] = True    # top and bottom rows (y2 exclusive)
    expected[3:8, 2] = expected[3:8, 6] = True    # left and right columns (x2 exclusive)
    assert (green == expected).all()


def test_box_label_is_drawn_and_degenerate_boxes_skipped() -> None:
    frame = np.zeros((60, 120, 3), np.uint8)
    draw_boxes(frame, [[10, 30, 100, 55], [5, 5, 5, 9]], labels=["cat 0.90", "x"])
    assert frame[:30].any()            # the label sits above the box
    assert not frame[:, :10].any()     # the empty box drew nothing


def test_hud_top_left_only() -> None:
    frame = np.full((120, 400, 3), 7, np.uint8)
    draw_hud(frame, "30.0 fps  12.1 ms  CPUExecutionProvider")
    assert (frame[1, 1] == 0).all()           # dark band behind the text
    assert (frame[100:, 300:] == 7).all()     # the rest untouched


@pytest.mark.parametrize(("frame", "error", "message"), [
    (np.zeros((4, 4), np.uint8), ValueError, r"HxWx3 uint8 frame, got uint8 \(4, 4\)"),
    (np.zeros((4, 4, 3), np.float32), ValueError, r"HxWx3 uint8 frame, got float32"),
    ([[0]], TypeError, "frame must be a numpy array, got list"),
])
def test_bad_canvas(frame: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        draw_heatmap(frame, np.ones((2, 2), np.float32))  # type: ignore[arg-type]


def test_read_only_frame_and_bad_alpha() -> None:
    frame = np.zeros((4, 4, 3), np.uint8)
    frame.flags.writeable = False
    with pytest.raises(ValueError, match=r"frame is read-only; pass frame.copy\(\)"):
        draw_boxes(frame, [[0, 0, 2, 2]])
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 2"):
        draw_heatmap(np.zeros((4, 4, 3), np.uint8), np.ones((2, 2)), alpha=2)


def test_empty_result_draws_only_the_hud() -> None:
    """A background frame (no classes, CAMs or boxes) with any view options: nothing but
    the HUD is drawn, whichever class the window had selected."""
    empty = Result(class_ids=np.zeros(0, np.int64), scores=np.zeros(0, np.float32), labels=[],
                   cams=np.zeros((0, 2, 3), np.float32), boxes=[], frame_shape=(120, 400),
                   provider="CPUExecutionProvider")
    for options in (None, RenderOptions(index=1), RenderOptions(heatmap=True, boxes=True)):
        frame = np.full((120, 400, 3), 7, np.uint8)
        assert draw_result(frame, empty, options) is frame and (frame == 7).all()
    hud = hud_text(empty, 25.0)
    assert hud == "25.0 fps | CPUExecutionProvider"
    frame = np.full((120, 400, 3), 7, np.uint8)
    draw_result(frame, empty, RenderOptions(index=0), hud)
    assert (frame[1, 1] == 0).all() and (frame[100:, 300:] == 7).all()
