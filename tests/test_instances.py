"""Several instances of one class in a frame give one box each: real photo (scikit-image's
cat) pasted two and three times onto a real photo (grass), the default model with its
real ImageNet weights, the runtime's default box rule and threshold."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from realtime import Localizer
from realtime.model.accuracy import iou
from realtime.model.boxes import boxes_from_cam


def _frame(cat: np.ndarray, n: int) -> tuple[np.ndarray, list[list[int]]]:
    """A 640x360 BGR frame of grass with ``n`` cats 150 px high, spread left to right,
    alternately high and low; their true boxes."""
    from skimage import data

    grass = cv2.resize(data.grass(), (640, 360), interpolation=cv2.INTER_AREA)
    frame = np.repeat(grass[..., None], 3, axis=2)
    h = 150
    w = int(h * cat.shape[1] / cat.shape[0])
    patch = cv2.resize(cat, (w, h), interpolation=cv2.INTER_AREA)[:, :, ::-1]
    truth = []
    for i, x in enumerate(np.linspace(10, 640 - w - 10, n).astype(int)):
        y = 30 + 150 * (i % 2)
        frame[y:y + h, x:x + w] = patch
        truth.append([int(x), y, int(x) + w, y + h])
    return np.ascontiguousarray(frame), truth


@pytest.mark.parametrize("n", [1, 2, 3])
def test_each_instance_gets_its_own_box(lite0_onnx, photos, n) -> None:
    frame, truth = _frame(photos["cat"], n)
    res = Localizer(lite0_onnx, device="cpu")(frame)
    assert "cat" in res.labels[0]
    boxes = res.boxes[0]
    assert len(boxes) == n
    for t in truth:  # every cat has a box of its own, and no box covers two cats
        best = max(range(len(boxes)), key=lambda i: iou(boxes[i], t))
        assert iou(boxes[best], t) >= 0.5
    assert len({max(range(len(boxes)), key=lambda i: iou(boxes[i], t)) for t in truth}) == n


def test_two_touching_instances_split_at_the_valley() -> None:
    # two equal peaks joined by a ridge above the threshold: one component, two objects
    y, x = np.mgrid[0:8, 0:16].astype(np.float32)
    cam = np.exp(-((x - 4) ** 2 + (y - 4) ** 2) / 10) + np.exp(-((x - 11) ** 2 + (y - 4) ** 2) / 10)
    cam /= cam.max()
    assert cam[4, 7] > 0.3  # the valley between them stays above the threshold
    boxes, _ = boxes_from_cam(cam, threshold=0.3)
    assert len(boxes) == 2
    left, right = sorted(boxes.tolist())
    assert left[2] <= right[0] + 0.5 and left[0] < 4 < left[2] and right[0] < 11 < right[2]
