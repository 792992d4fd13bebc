"""Product photos on a plain backdrop (the white or grey sweep of shop photos) cut out.

Such a photo shows the object on a colour no camera frame has around it; trained on as
it is, the classifier learns the backdrop as much as the object (a cutout read without its
alpha does the same: docs/TRAINING.md, "Cutouts"). Where a photo's border is one plain
colour, the backdrop is that colour's region connected to the border, and the rest is the
object: ``backdrop_alpha`` gives it as an alpha channel, and the photo is then trained on
as a cutout (``export.trainaug.flatten``: a new scene per view).

Conservative on purpose: the border must be at least ``BORDER_SHARE`` one colour, the
backdrop plain (``PLAIN_STD``: a textured grey scene is not a backdrop), the
object must cover ``FOREGROUND`` of the photo, and be at most ``MAX_PARTS`` sizeable
pieces (a page of text is many letters on paper: the paper is part of that object).
Regions of the backdrop's colour the object encloses are the backdrop seen through a hole
(a mug's handle, the loops of an ampersand) and are cut away too when they are plain (twice
``PLAIN_STD``: small regions ring more in a JPEG), of the backdrop's own tone (mean within 8)
and at least ``HOLE_SHARE`` of the photo; the lit side of a white mug is a shade darker
than the sweep and stays.
"""

from __future__ import annotations

import numpy as np

__all__ = ["BORDER_SHARE", "FOREGROUND", "HOLE_SHARE", "MAX_PARTS", "PLAIN_STD", "TOLERANCE",
           "backdrop_alpha"]

TOLERANCE = 24          # per channel, from the backdrop colour (JPEG noise, soft shadows)
BORDER_SHARE = 0.9      # of the 2-pixel border within TOLERANCE of its median colour
FOREGROUND = (0.02, 0.9)   # the object's share of the photo
MAX_PARTS = 4           # object pieces holding at least 1% of its area each
HOLE_SHARE = 0.002      # of the photo: smaller enclosed patches (highlights) stay
PLAIN_STD = 3.0         # the backdrop's standard deviation, per channel, at most: a sweep or a
#                         painted wall, not a grey textured scene (moon: 4-7; white shop JPEGs: 0.5-2)


def backdrop_alpha(rgb: np.ndarray) -> np.ndarray | None:
    """uint8 alpha (255 object, 0 backdrop, edges softened by a pixel) of an RGB photo on
    a plain backdrop; None for any other photo."""
    import cv2

    h, w = rgb.shape[:2]
    if min(h, w) < 16:
        return None
    px = rgb.astype(np.int16)
    border = np.concatenate([px[:2].reshape(-1, 3), px[-2:].reshape(-1, 3),
                             px[:, :2].reshape(-1, 3), px[:, -2:].reshape(-1, 3)])
    colour = np.median(border, axis=0)
    if (np.abs(border - colour).max(axis=1) <= TOLERANCE).mean() < BORDER_SHARE:
        return None
    near = (np.abs(px - colour).max(axis=2) <= TOLERANCE).astype(np.uint8)
    _, labels = cv2.connectedComponents(near, connectivity=4)
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    backdrop = np.isin(labels, edge[edge > 0])
    core = cv2.erode(backdrop.astype(np.uint8), np.ones((7, 7), np.uint8)) > 0   # off the edges
    if core.sum() < 0.05 * h * w or px[core].std(axis=0).max() > PLAIN_STD:   # halo, JPEG ringing
        return None
    fg = (~backdrop).astype(np.uint8)
    share = fg.mean()
    if not FOREGROUND[0] <= share <= FOREGROUND[1]:
        return None
    _, _, stats, _ = cv2.connectedComponentsWithStats(fg, connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    if (areas >= 0.01 * fg.sum()).sum() > MAX_PARTS:
        return None
    counts = np.bincount(labels.ravel())
    inner = np.setdiff1d(np.unique(labels[near > 0]), edge)
    for lab in inner[counts[inner] >= HOLE_SHARE * h * w]:   # the backdrop seen through a hole
        hole = labels == lab
        core = cv2.erode(hole.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        if not core.any():
            continue
        seen = px[core]   # plain (small regions ring more in a JPEG) and the backdrop's own tone
        if seen.std(axis=0).max() <= 2 * PLAIN_STD and np.abs(seen.mean(axis=0) - colour).max() <= 8:
            fg[hole] = 0
    return cv2.GaussianBlur(fg * 255, (3, 3), 0)
