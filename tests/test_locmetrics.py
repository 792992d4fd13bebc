"""Localization metrics against values computed by hand on tiny inputs."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.model.accuracy import best_iou, box_accuracy, iou, max_box_acc_v2


def test_iou_by_hand():
    assert iou([0, 0, 10, 10], [5, 0, 15, 10]) == pytest.approx(50 / 150)  # half overlap
    assert iou([0, 0, 10, 10], [0, 0, 5, 10]) == pytest.approx(0.5)        # contained
    assert iou([0, 0, 10, 10], [0, 0, 10, 10]) == 1.0
    assert iou([0, 0, 10, 10], [10, 0, 20, 10]) == 0.0                     # x2 is exclusive
    assert iou([0, 0, 0, 0], [0, 0, 0, 0]) == 0.0


def test_iou_rejects_inverted_box():
    with pytest.raises(ValueError, match="x1 <= x2"):
        iou([10, 0, 0, 10], [0, 0, 10, 10])


def test_best_iou_takes_the_best_pair():
    truth = [[0, 0, 10, 10], [20, 20, 30, 30]]
    assert best_iou([[5, 0, 15, 10], [20, 20, 30, 25]], truth) == pytest.approx(0.5)
    assert best_iou([], truth) == 0.0


def test_max_box_acc_v2_by_hand():
    # 3 images x thresholds (0.1, 0.2, 0.3): each image's best IoU at each threshold.
    ious = np.array([[0.20, 0.60, 0.80],
                     [0.40, 0.50, 0.72],
                     [0.35, 0.75, 0.10]])
    # IoU 0.3: 2/3, 3/3, 2/3 -> 1 at 0.2;  IoU 0.5: 0, 3/3, 2/3 -> 1 at 0.2;
    # IoU 0.7: 0, 1/3, 2/3 -> 2/3 at 0.3;  mean (1 + 1 + 2/3) / 3 = 8/9.
    assert box_accuracy(ious, 0.3) == pytest.approx([2 / 3, 1, 2 / 3])
    value, per = max_box_acc_v2(ious, [0.1, 0.2, 0.3])
    assert value == pytest.approx(8 / 9)
    assert per[0.3] == pytest.approx((1.0, 0.2))
    assert per[0.5] == pytest.approx((1.0, 0.2))
    assert per[0.7] == pytest.approx((2 / 3, 0.3))


def test_max_box_acc_v2_ties_go_to_the_lowest_threshold():
    value, per = max_box_acc_v2(np.array([[0.9, 0.9]]), [0.4, 0.6])
    assert value == 1.0 and per[0.5] == (1.0, 0.4)


def test_max_box_acc_v2_checks_shapes():
    with pytest.raises(ValueError, match="thresholds"):
        max_box_acc_v2(np.zeros((2, 3)), [0.1, 0.2])
    with pytest.raises(ValueError, match="at least one image"):
        box_accuracy(np.zeros((0, 3)), 0.5)
