"""Tiled inference for small objects: the frame and an N x N grid of overlapping tiles in
one batch, their CAMs merged into one frame-level map (pure numpy + cv2 resizes).

A GAP-CNN's class score is the *mean* of its evidence over the map, so an object of a
tenth of the frame's height is outvoted by the background around it, and at the working
size it covers one or two CAM cells. A tile magnifies it (each tile is resized to the
whole frame's working size) and holds less background. ``prepare_tiles`` stacks the whole
frame (row 0) and the tiles (rows 1..N*N) into one input; ``TiledMaps`` turns the batch's
logits and features back into one frame's class scores and raw CAMs:

- maps: each pass's raw (un-normalised) CAM of a class placed where its tile lies in a
  frame-level map at the tiles' finer resolution (the whole frame's map resized onto it),
  overlaps combined by ``merge`` (``"max"`` or ``"mean"``); normalising and boxing are
  then exactly the untiled ones (realtime/model/boxes.py), in frame pixels.
- class scores (``decision``): ``"frame"`` the whole frame's softmax (as untiled);
  ``"max"`` per class the highest softmax probability of any pass; ``"mix"`` the softmax
  of the mean of the whole frame's logits and the best tile's. A model's background class
  (``ModelInfo.background``) is the *lowest* of the passes instead of the highest: a tile
  of grass says "background", which must not outvote the tile that holds the object.
- boxes (``map_blur``): the merged map is the evidence blurred by the network, the resizes
  and the mean with the whole frame's coarser map, about ``BLUR`` of its own cells at 2x2
  and 3x3 alike; boxes_from_cam moves each box's contour sides in by where such a blurred
  edge crosses the threshold, so a small object's box is not mostly blur (chosen on the
  validation frames, docs/TRAINING.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from realtime.errors import OptionError
from realtime.model.cam import compute_cams, softmax
from realtime.model.preprocess import Geometry, as_bgr, normalize_to_tensor, resize_frame, working_size

__all__ = ["BLUR", "DECISIONS", "DEFAULT_DECISION", "DEFAULT_MERGE", "MAX_TILES", "MERGES",
           "OVERLAP", "TileGeometry", "TiledMaps", "check_tile_options", "map_blur",
           "prepare_tiles", "tile_boxes"]

MAX_TILES = 4          # a 4 x 4 grid: 17 passes per frame
OVERLAP = 0.25         # of a tile's side shared with its neighbour
MERGES = ("max", "mean")
DECISIONS = ("frame", "max", "mix")
DEFAULT_MERGE = "mean"     # chosen on frames rendered from the training material (TRAINING.md)
DEFAULT_DECISION = "max"
BLUR = 1.75    # the merged map's blur in its own cells, a tile's CAM cells (TRAINING.md)


@dataclass(frozen=True)
class TileGeometry(Geometry):
    """A frame's geometry plus its tiles, (y0, x0, y1, x1) in frame pixels, in the batch's
    order after the whole frame (row 0)."""

    tiles: tuple[tuple[int, int, int, int], ...] = ()


def map_blur(geo: Geometry, blur: float = BLUR) -> float:
    """The blur (Gaussian sigma, in the map's own cells) boxes_from_cam takes off a map of
    this geometry: ``blur`` on the tiles' merged map, 0 for an untiled frame (its box rule
    stays the one chosen in docs/LOCALIZATION.md). ``BLUR`` fits the default training's
    maps; a model trained with ``--attention`` has sharper ones: 0 (TRAINING.md)."""
    return blur if isinstance(geo, TileGeometry) and geo.tiles else 0.0


def check_tile_options(tiles: int, merge: str, decision: str, blur: float = BLUR) -> None:
    """Raise OptionError (a ValueError) for a tile count, merge or decision rule we lack,
    or a negative blur."""
    _check_count(tiles)
    if merge not in MERGES:
        raise OptionError(f"tile_merge must be one of {', '.join(MERGES)}, got {merge!r}")
    if decision not in DECISIONS:
        raise OptionError(f"tile_decision must be one of {', '.join(DECISIONS)}, "
                          f"got {decision!r}")
    if isinstance(blur, bool) or not isinstance(blur, (int, float)) or not blur >= 0:
        raise OptionError(f"tile_blur must be a number >= 0, got {blur!r}")


def _check_count(tiles: int) -> None:
    if not isinstance(tiles, int) or isinstance(tiles, bool) or not 1 <= tiles <= MAX_TILES:
        raise OptionError(f"tiles must be an integer in [1, {MAX_TILES}], got {tiles!r}")


def tile_boxes(frame_h: int, frame_w: int, n: int, overlap: float = OVERLAP
               ) -> list[tuple[int, int, int, int]]:
    """The ``n`` x ``n`` tiles covering a frame, neighbours sharing ``overlap`` of a tile's
    side, row by row: (y0, x0, y1, x1) in frame pixels, the last row and column flush
    with the frame's edge."""
    _check_count(n)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")

    def spans(size: int) -> list[tuple[int, int]]:
        side = size / (n - (n - 1) * overlap)
        starts = [round(i * side * (1 - overlap)) for i in range(n)]
        return [(s, min(size, max(s + 1, round(s + side)))) for s in starts[:-1]] + \
            [(max(0, size - max(1, round(side))), size)]

    return [(y0, x0, y1, x1) for y0, y1 in spans(frame_h) for x0, x1 in spans(frame_w)]


def prepare_tiles(frame: np.ndarray, imgsz: int, stride: int, mean: tuple[float, float, float],
                  std: tuple[float, float, float], rgb: bool, n: int,
                  overlap: float = OVERLAP) -> tuple[np.ndarray, TileGeometry]:
    """One frame -> (float32 [1 + n*n, 3, H, W]: the whole frame then each tile, every one
    resized to the whole frame's working size; its TileGeometry)."""
    bgr = as_bgr(frame)
    fh, fw = bgr.shape[:2]
    size = working_size(fh, fw, imgsz, stride)
    boxes = tile_boxes(fh, fw, n, overlap)
    x = np.empty((1 + len(boxes), 3, *size), np.float32)
    x[0] = normalize_to_tensor(resize_frame(bgr, size), mean, std, rgb)[0]
    for i, (y0, x0, y1, x1) in enumerate(boxes, 1):
        x[i] = normalize_to_tensor(resize_frame(bgr[y0:y1, x0:x1], size), mean, std, rgb)[0]
    return x, TileGeometry(fh, fw, size[0], size[1], tuple(boxes))


class TiledMaps:
    """One frame's passes (logits [1 + T, K], features [1 + T, C, h, w]) as one frame's
    class scores and raw CAMs on the tiles' finer grid."""

    def __init__(self, logits: np.ndarray, features: np.ndarray, geo: TileGeometry,
                 weight: np.ndarray, merge: str = DEFAULT_MERGE,
                 decision: str = DEFAULT_DECISION, background: int | None = None):
        check_tile_options(1, merge, decision)
        if len(logits) != 1 + len(geo.tiles) or len(features) != len(logits):
            raise ValueError(f"{len(logits)} passes for {len(geo.tiles)} tiles and the frame")
        self.logits = np.asarray(logits, np.float32)
        self.features, self.geo, self.weight = features, geo, weight
        self.merge, self.decision, self.background = merge, decision, background
        h, w = features.shape[2:]
        y0, x0, y1, x1 = geo.tiles[0]  # the finer grid: a tile's cell size over the frame
        self.shape = (max(h, round(h * geo.frame_h / (y1 - y0))),
                      max(w, round(w * geo.frame_w / (x1 - x0))))

    def scores(self) -> np.ndarray:
        """The frame's class scores [K] under ``decision`` (probabilities in [0, 1])."""
        frame = softmax(self.logits[0])
        if self.decision == "frame":
            return frame
        bg = self.background
        if self.decision == "max":
            probs = softmax(self.logits)
            out = probs.max(axis=0)
            if bg is not None:  # background only where every pass says so
                out[bg] = probs[:, bg].min()
            return out
        tiles = self.logits[1:]
        best = tiles.max(axis=0)
        if bg is not None:
            best[bg] = tiles[:, bg].min()
        return softmax(0.5 * (self.logits[0] + best))

    def cams(self, class_ids: np.ndarray) -> np.ndarray:
        """Raw (un-normalised) merged CAMs [k, H, W] of ``class_ids`` on the finer grid."""
        ids = np.asarray(class_ids)
        hm, wm = self.shape
        sy, sx = hm / self.geo.frame_h, wm / self.geo.frame_w
        out = np.zeros((len(ids), hm, wm), np.float32)
        if not len(ids):
            return out
        count = np.zeros((hm, wm), np.float32)
        whole = compute_cams(self.features[0], self.weight, ids)
        passes = [((0, 0, hm, wm), whole)]
        for (y0, x0, y1, x1), feats in zip(self.geo.tiles, self.features[1:]):
            box = (round(y0 * sy), round(x0 * sx), max(round(y1 * sy), round(y0 * sy) + 1),
                   max(round(x1 * sx), round(x0 * sx) + 1))
            passes.append((box, compute_cams(feats, self.weight, ids)))
        for (a, b, c, d), raw in passes:
            placed = np.stack([cv2.resize(m, (d - b, c - a), interpolation=cv2.INTER_LINEAR)
                               for m in raw])
            if self.merge == "max":
                np.maximum(out[:, a:c, b:d], placed, out=out[:, a:c, b:d])
            else:
                out[:, a:c, b:d] += placed
                count[a:c, b:d] += 1
        if self.merge == "mean":
            out /= np.maximum(count, 1)
        return out
