"""Boxes from CAMs, computed at the CAM's own low resolution.

A map is upsampled a few times (bilinear, still tiny: e.g. 7x12 -> 28x48),
thresholded relative to its maximum, split into 8-connected components, and
each component's bounding box is kept with the CAM mass it holds. Boxes are in
CAM cell units (x in [0, w], y in [0, h], right/bottom exclusive) until
``scale_boxes`` maps them to frame pixels: the full frame never goes through
connected components.

Rules (``rule``): ``"mass"`` orders components by the CAM mass they hold and
keeps further separate strong regions as extra boxes (one per instance: a component
holding two strong peaks with a valley between them is split at the valley, as two
objects of a class side by side give at CAM resolution); ``"largest"`` is the CAM
paper's single largest component; ``"merge"`` is one box around every component.

``blur`` (off by default; the tiled path, realtime/model/tiling.py, sets it): a map is the
evidence blurred by the network and the resizes, so a contour below half the peak lies
outside the object. Each box's sides move in by the distance at which a straight edge,
blurred by a Gaussian of ``blur`` cells, crosses ``threshold`` (``edge_shift``); that
matters for a small object, whose box at a low threshold is mostly blur.
"""

from __future__ import annotations

from statistics import NormalDist

import cv2
import numpy as np

__all__ = ["BOX_RULES", "boxes_from_cam", "edge_shift", "scale_boxes", "shrink_boxes"]

BOX_RULES = ("mass", "largest", "merge")


def _split_peaks(up: np.ndarray, labels: np.ndarray, n: int, low: float, strong: float,
                 valley: float = 0.85, steps: int = 12) -> tuple[np.ndarray, int]:
    """Split every component holding two or more peaks >= ``strong`` whose valley is below
    ``valley`` x the lower peak: raise the level inside it until the peaks fall apart,
    then give each pixel of the component to the nearest part. (labels, count)."""
    out, count = labels.copy(), n
    for comp in range(1, n):
        region = labels == comp
        top = float(up[region].max())
        for level in np.linspace(low, top, steps)[1:-1]:
            k, sub = cv2.connectedComponents((region & (up >= level)).astype(np.uint8), connectivity=8)
            tops = [float(up[sub == j].max()) for j in range(1, k)]
            seeds = [j for j, t in zip(range(1, k), tops) if t >= strong and level <= valley * t]
            if len(seeds) < 2:
                continue
            seed_mask = np.isin(sub, seeds)
            _, near = cv2.distanceTransformWithLabels((~seed_mask).astype(np.uint8), cv2.DIST_L2, 3,
                                                      labelType=cv2.DIST_LABEL_PIXEL)
            owner = np.zeros(int(near.max()) + 1, np.int64)
            owner[near[seed_mask]] = sub[seed_mask]     # each seed pixel's own part
            part = owner[near]
            for i, j in enumerate(seeds):
                out[region & (part == j)] = comp if i == 0 else count
                count += i > 0
            break
    return out, count


def _components(cam: np.ndarray, threshold: float, upsample: int, split: float | None = None,
                outer: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(boxes in upsampled pixels [n,4], masses [n], peaks [n], outer [n,4]) of the
    thresholded map; with ``outer``, the box of the whole component a part was split from
    (the box itself when it was not split), else the boxes again (nothing computed)."""
    h, w = cam.shape
    up = cam if upsample == 1 else cv2.resize(cam, (w * upsample, h * upsample),
                                              interpolation=cv2.INTER_LINEAR)
    peak = float(up.max())
    if not peak > 0.0:
        empty = np.zeros((0,), np.float64)
        return np.zeros((0, 4), np.float64), empty, empty, np.zeros((0, 4), np.float64)
    mask = (up >= threshold * peak).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    whole, parent = _corners(stats) if outer else None, np.arange(n)
    if split is not None:
        first = labels
        labels, n = _split_peaks(up, labels, n, threshold * peak, split * peak)
        stats = np.zeros((n, 5), np.int64)
        for i in range(1, n):
            ys, xs = np.nonzero(labels == i)
            stats[i, :4] = xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1
        if outer:  # a part's pixels all come from one component
            parent = np.zeros(n, np.int64)
            parent[labels.ravel()] = first.ravel()
    flat = labels.ravel()
    masses = np.bincount(flat, weights=up.ravel(), minlength=n)[1:]
    peaks = np.zeros(n, np.float64)
    np.maximum.at(peaks, flat, up.ravel())
    boxes = _corners(stats)
    return boxes, masses, peaks[1:] / peak, whole[parent[1:] - 1] if outer else boxes


def _corners(stats: np.ndarray) -> np.ndarray:
    """connectedComponentsWithStats' rows (background row 0 left out) -> [x1, y1, x2, y2]."""
    x, y, bw, bh = (stats[1:, i].astype(np.float64) for i in range(4))
    return np.stack([x, y, x + bw, y + bh], axis=1)


def boxes_from_cam(cam: np.ndarray, threshold: float = 0.5, rule: str = "mass",
                   min_area: float = 0.01, max_boxes: int = 3, strong: float = 0.5,
                   upsample: int = 4, blur: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Boxes of one CAM [h, w] (values >= 0), best first: (boxes [n, 4] float in CAM
    cell units, masses [n]).

    ``threshold`` is relative to the map's maximum; components smaller than
    ``min_area`` (fraction of the map) are dropped. With ``rule="mass"`` a second
    or third box is kept only for a separate *strong* region: one whose peak
    reaches ``strong`` times the map's maximum. An all-zero map has no boxes.
    ``blur`` > 0 (cells) moves each box's sides in by ``edge_shift(threshold, blur)``
    (``shrink_boxes``), after the components are chosen: only a side on the threshold's
    contour, not one on the map's border (the frame's edge) or where a component was split.
    """
    if cam.ndim != 2:
        raise ValueError(f"cam must be a 2-D map, got shape {cam.shape}")
    if not 0.0 <= threshold < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if rule not in BOX_RULES:
        raise ValueError(f"box rule must be one of {', '.join(BOX_RULES)}, got {rule!r}")
    if upsample < 1 or max_boxes < 1:
        raise ValueError(f"upsample and max_boxes must be >= 1, got {upsample}, {max_boxes}")
    if not blur >= 0.0:
        raise ValueError(f"blur must be >= 0, got {blur!r}")
    shift = edge_shift(threshold, blur)  # 0 unless tiled: the untiled path computes no outer
    boxes, masses, peaks, outer = _components(np.asarray(cam, np.float32), threshold, upsample,
                                              strong if rule == "mass" else None, shift > 0)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    big = area >= min_area * cam.size * upsample * upsample
    if not big.any() and len(area):
        big = masses == masses.max()  # never lose the map's main region to min_area
    boxes, masses, peaks, area, outer = boxes[big], masses[big], peaks[big], area[big], outer[big]
    limits = np.array([0, 0, cam.shape[1], cam.shape[0]])
    if rule == "merge":
        if not len(boxes):
            return boxes / upsample, masses
        merged = np.array([[boxes[:, 0].min(), boxes[:, 1].min(),
                            boxes[:, 2].max(), boxes[:, 3].max()]])
        return (shrink_boxes(merged / upsample, shift, merged / upsample != limits),
                np.array([masses.sum()]))
    order = np.argsort(-(area if rule == "largest" else masses), kind="stable")
    if rule == "largest":
        order = order[:1]
    else:
        keep: list[int] = []
        for j, i in enumerate(order):  # an extra box must be strong and a region of its own
            if j == 0 or (peaks[i] >= strong and all(
                    _inside(boxes[i], boxes[k]) < 0.5 for k in keep)):
                keep.append(i)
        order = np.array(keep[:max_boxes], dtype=np.int64)
    boxes = boxes[order] / upsample
    if not shift:
        return boxes, masses[order]
    # only a side on the threshold's contour moves: not the frame's edge, not a valley split
    outer = outer[order] / upsample
    return shrink_boxes(boxes, shift, (boxes == outer) & (boxes != limits)), masses[order]


def edge_shift(threshold: float, blur: float) -> float:
    """How far (in cells) outside a straight edge, blurred by a Gaussian of ``blur`` cells,
    the map falls to ``threshold`` of the plateau: ``blur * z(1 - threshold)``, 0 at and
    above a threshold of 0.5 (the half-way contour lies on the edge) or without blur."""
    if blur <= 0.0 or threshold >= 0.5:
        return 0.0
    return blur * NormalDist().inv_cdf(1.0 - max(threshold, 1e-6))


def shrink_boxes(boxes: np.ndarray, by: float, movable: np.ndarray | None = None,
                 least: float = 1.0) -> np.ndarray:
    """Boxes [n, 4] (cell units) with their sides moved in by ``by`` cells (only where
    ``movable`` [n, 4] is true, if given), never below ``least`` cells a side: a box that
    would be smaller keeps min(``least``, its size), about the moved box's centre, inside
    the box it was."""
    if by <= 0.0 or not len(boxes):
        return boxes
    move = np.ones(boxes.shape, bool) if movable is None else np.asarray(movable, bool)
    out = boxes + by * move * np.array([1.0, 1.0, -1.0, -1.0])
    size = boxes[:, 2:] - boxes[:, :2]
    half = np.minimum(least, size) / 2
    small = out[:, 2:] - out[:, :2] < 2 * half
    centre = np.clip((out[:, :2] + out[:, 2:]) / 2, boxes[:, :2] + half, boxes[:, 2:] - half)
    out[:, :2] = np.where(small, centre - half, out[:, :2])
    out[:, 2:] = np.where(small, centre + half, out[:, 2:])
    return out


def _inside(a: np.ndarray, b: np.ndarray) -> float:
    """The fraction of box ``a``'s area that lies inside box ``b`` (a part of one object
    split off by a valley in its CAM lies mostly inside the object's own box)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    area = (a[2] - a[0]) * (a[3] - a[1])
    return float(max(w, 0) * max(h, 0) / area) if area > 0 else 1.0


def scale_boxes(boxes: np.ndarray, cam_shape: tuple[int, int], frame_h: int, frame_w: int
                ) -> np.ndarray:
    """CAM cell units -> int frame pixels [x1, y1, x2, y2], x2/y2 exclusive, clipped.

    The CAM covers the whole frame (no padding), so a cell is frame_w / w pixels
    wide; the box is rounded outwards so it never shrinks.
    """
    h, w = cam_shape
    sx, sy = frame_w / w, frame_h / h
    out = np.empty((len(boxes), 4), np.int64)
    if not len(boxes):
        return out
    out[:, 0] = np.floor(boxes[:, 0] * sx + 1e-6)
    out[:, 1] = np.floor(boxes[:, 1] * sy + 1e-6)
    out[:, 2] = np.ceil(boxes[:, 2] * sx - 1e-6)
    out[:, 3] = np.ceil(boxes[:, 3] * sy - 1e-6)
    np.clip(out[:, 0::2], 0, frame_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, frame_h, out=out[:, 1::2])
    return out
