"""Boxes from synthetic CAMs: one blob, two blobs, an empty map; scaling to pixels."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.model.boxes import boxes_from_cam, scale_boxes


def _blob(shape: tuple[int, int], y0: int, y1: int, x0: int, x1: int, v: float = 1.0,
          cam: np.ndarray | None = None) -> np.ndarray:
    cam = np.zeros(shape, np.float32) if cam is None else cam
    cam[y0:y1, x0:x1] = v
    return cam


def test_one_blob_exact_at_cam_resolution() -> None:
    cam = _blob((8, 10), 2, 5, 3, 7)
    boxes, masses = boxes_from_cam(cam, threshold=0.5, upsample=1)
    assert boxes.tolist() == [[3, 2, 7, 5]]
    assert masses.tolist() == [12.0]


def test_one_blob_upsampled_keeps_the_cell_edges() -> None:
    # bilinear between a 0 cell and a 1 cell reaches 0.5 exactly on the cell border
    cam = _blob((8, 10), 2, 5, 3, 7)
    boxes, _ = boxes_from_cam(cam, threshold=0.5, upsample=4)
    np.testing.assert_allclose(boxes, [[3, 2, 7, 5]])


def test_two_strong_blobs_give_two_boxes_by_mass() -> None:
    cam = _blob((10, 12), 1, 3, 1, 3)            # small, mass 4
    cam = _blob((10, 12), 5, 9, 6, 11, cam=cam)  # big, mass 20
    boxes, masses = boxes_from_cam(cam, threshold=0.5, upsample=1, min_area=0.0)
    assert boxes.tolist() == [[6, 5, 11, 9], [1, 1, 3, 3]]
    assert masses.tolist() == [20.0, 4.0]


def test_weak_second_blob_is_not_a_box_with_mass_rule() -> None:
    cam = _blob((10, 12), 5, 9, 6, 11)
    cam = _blob((10, 12), 1, 3, 1, 3, v=0.6, cam=cam)  # above threshold, below "strong"
    boxes, _ = boxes_from_cam(cam, threshold=0.5, upsample=1, min_area=0.0, strong=0.8)
    assert boxes.tolist() == [[6, 5, 11, 9]]


def test_rules_largest_and_merge() -> None:
    cam = _blob((10, 12), 0, 2, 0, 6, v=0.6)             # area 12, mass 7.2
    cam = _blob((10, 12), 6, 9, 8, 11, v=1.0, cam=cam)   # area 9, mass 9
    mass, _ = boxes_from_cam(cam, 0.5, rule="mass", upsample=1, min_area=0.0)
    largest, _ = boxes_from_cam(cam, 0.5, rule="largest", upsample=1, min_area=0.0)
    merged, m = boxes_from_cam(cam, 0.5, rule="merge", upsample=1, min_area=0.0)
    assert mass[0].tolist() == [8, 6, 11, 9]
    assert largest.tolist() == [[0, 0, 6, 2]]
    assert merged.tolist() == [[0, 0, 11, 9]]
    assert m.tolist() == pytest.approx([16.2])


def test_min_area_drops_specks_but_never_the_main_region() -> None:
    cam = _blob((10, 10), 4, 8, 4, 8)
    cam[0, 0] = 1.0                                       # a one-cell speck
    boxes, _ = boxes_from_cam(cam, 0.5, upsample=1, min_area=0.05)
    assert boxes.tolist() == [[4, 4, 8, 8]]
    only_speck = _blob((10, 10), 0, 1, 0, 1)
    boxes, _ = boxes_from_cam(only_speck, 0.5, upsample=1, min_area=0.5)
    assert boxes.tolist() == [[0, 0, 1, 1]]


def test_empty_map_has_no_boxes() -> None:
    boxes, masses = boxes_from_cam(np.zeros((7, 7), np.float32), 0.3)
    assert boxes.shape == (0, 4) and masses.shape == (0,)
    assert scale_boxes(boxes, (7, 7), 100, 100).shape == (0, 4)


def test_scale_boxes_to_frame_pixels_rounding_outwards() -> None:
    cells = np.array([[3.0, 2.0, 7.0, 5.0], [0.25, 0.0, 10.0, 8.0]])
    px = scale_boxes(cells, (8, 10), 720, 1280)  # 128 x 90 pixels per cell
    assert px.tolist() == [[384, 180, 896, 450], [32, 0, 1280, 720]]
    odd = scale_boxes(np.array([[1.0, 1.0, 2.0, 2.0]]), (3, 3), 100, 100)
    assert odd.tolist() == [[33, 33, 67, 67]]   # 33.3 -> 33, 66.7 -> 67: never shrinks


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"threshold": 1.0}, r"threshold must be in \[0, 1\), got 1.0"),
    ({"rule": "biggest"}, "box rule must be one of mass, largest, merge, got 'biggest'"),
    ({"upsample": 0}, "upsample and max_boxes must be >= 1, got 0, 3"),
])
def test_bad_arguments(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        boxes_from_cam(np.ones((4, 4), np.float32), **kwargs)
    with pytest.raises(ValueError, match=r"cam must be a 2-D map, got shape \(1, 4, 4\)"):
        boxes_from_cam(np.ones((1, 4, 4), np.float32))
