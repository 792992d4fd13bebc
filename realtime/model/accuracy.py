"""Weakly-supervised localization metrics, as the field reports them (pure numpy).

* IoU of boxes [x1, y1, x2, y2] in pixels, x2/y2 exclusive (camloc's box convention).
* BoxAcc(delta, tau): the fraction of images whose CAM, thresholded at tau, gives a
  box with IoU >= delta with a true box. Following Choe et al., "Evaluating Weakly
  Supervised Object Localization Methods Right" (CVPR 2020), an image's IoU at tau is
  the best over every box the thresholded map yields and every true box of the class.
* MaxBoxAccV2: for each delta in (0.3, 0.5, 0.7), BoxAcc at its best tau over the sweep,
  then the mean over the three deltas. The threshold is chosen on data rather than
  fixed (the CAM paper's 20%), which is what the metric is about.

The callers (``realtime.evaluate``) turn CAMs into per-image IoU curves; everything
here works on those numbers, so it can be checked by hand on tiny inputs.
"""

from __future__ import annotations

import numpy as np

__all__ = ["IOU_DELTAS", "box_accuracy", "best_iou", "iou", "max_box_acc_v2"]

IOU_DELTAS = (0.3, 0.5, 0.7)


def iou(a, b) -> float:
    """Intersection over union of two boxes [x1, y1, x2, y2] (x2/y2 exclusive); 0 when
    both are empty."""
    ax1, ay1, ax2, ay2 = (float(v) for v in a)
    bx1, by1, bx2, by2 = (float(v) for v in b)
    if ax2 < ax1 or ay2 < ay1 or bx2 < bx1 or by2 < by1:
        raise ValueError(f"a box must have x1 <= x2 and y1 <= y2, got {list(a)} and {list(b)}")
    iw = max(0.0, min(ax2, bx2) - max(ax1, bx1))
    ih = max(0.0, min(ay2, by2) - max(ay1, by1))
    inter = iw * ih
    union = (ax2 - ax1) * (ay2 - ay1) + (bx2 - bx1) * (by2 - by1) - inter
    return inter / union if union > 0 else 0.0


def best_iou(predicted, truth) -> float:
    """The best IoU between any predicted box and any true box (0 when either list is empty)."""
    return max((iou(p, t) for p in predicted for t in truth), default=0.0)


def box_accuracy(ious: np.ndarray, delta: float) -> np.ndarray:
    """BoxAcc per threshold: ``ious`` [images, thresholds] -> fraction >= ``delta`` [thresholds]."""
    ious = np.asarray(ious, np.float64)
    if ious.ndim != 2 or ious.shape[0] == 0:
        raise ValueError(f"ious must be [images, thresholds] with at least one image, got {ious.shape}")
    return (ious >= delta).mean(axis=0)


def max_box_acc_v2(ious: np.ndarray, thresholds, deltas=IOU_DELTAS) -> tuple[float, dict]:
    """MaxBoxAccV2 from per-image IoU curves ``ious`` [images, thresholds].

    Returns (the mean over ``deltas`` of the best BoxAcc, {delta: (best BoxAcc, its
    threshold)}). Ties go to the lowest threshold.
    """
    thresholds = np.asarray(thresholds, np.float64)
    if np.asarray(ious).shape[1:] != thresholds.shape:
        raise ValueError(f"ious has {np.asarray(ious).shape[1:]} thresholds, the sweep {thresholds.shape}")
    per = {}
    for d in deltas:
        acc = box_accuracy(ious, d)
        i = int(np.argmax(acc))
        per[float(d)] = (float(acc[i]), float(thresholds[i]))
    return float(np.mean([v[0] for v in per.values()])), per
