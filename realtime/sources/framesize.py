"""The frame size of a video made from still images of mixed sizes, and which images are
too small to localize.

A folder's video used to take the first image's size: a 1x1 first image made the
writer fail (no good photo after it written), a 3x3 one made the whole video 2x2.
Now the size is the **most common** size among the images (ties: the larger), so a
folder of one camera's snapshots keeps its pixels unscaled and only the odd ones out
are letterboxed; the largest would let one panorama blow every frame up. The long
side is capped at ``MAX_VIDEO_SIDE`` (4K), which every common decoder plays.

Sizes come from the image headers through Pillow when it is installed (it reads a few
hundred bytes per file: a 10,000-image folder in about a second); without it, from
``SAMPLE`` images spread over the list, decoded with OpenCV (a bounded cost).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import cv2

__all__ = ["MAX_VIDEO_SIDE", "MIN_SIDE", "SAMPLE", "choose_frame_size", "image_sizes",
           "too_small"]

log = logging.getLogger(__name__)

# an image with a side under 8 px is smaller than one cell of any CNN's last feature map
# (strides are 8 to 64): there is nothing to localize in it, and a video cannot be that small
MIN_SIDE = 8
MAX_VIDEO_SIDE = 3840
SAMPLE = 16


def too_small(width: int, height: int) -> bool:
    """True for an image with a side under MIN_SIDE pixels (skipped and counted)."""
    return min(width, height) < MIN_SIDE


def choose_frame_size(sizes: Iterable[tuple[int, int]]) -> tuple[int, int] | None:
    """(width, height) for a video of images of these sizes: the most common one not too
    small (ties: the larger area), the long side capped at MAX_VIDEO_SIDE; None when no
    size is usable."""
    counts = Counter(s for s in sizes if not too_small(*s))
    if not counts:
        return None
    w, h = max(counts, key=lambda s: (counts[s], s[0] * s[1], s))
    scale = min(1.0, MAX_VIDEO_SIDE / max(w, h))
    return max(MIN_SIDE, round(w * scale)), max(MIN_SIDE, round(h * scale))


def _header_size(path: Path) -> tuple[int, int] | None:
    from PIL import Image  # noqa: PLC0415 (optional dependency)

    try:
        with Image.open(path) as im:
            return im.size
    except Exception:  # noqa: BLE001 (unreadable here: the reader will skip and count it)
        return None


def image_sizes(paths: Sequence[Path]) -> list[tuple[int, int]]:
    """(width, height) of the readable images among ``paths``: all headers with Pillow,
    else SAMPLE images spread over the list, decoded."""
    try:
        import PIL.Image  # noqa: F401, PLC0415
    except ImportError:
        step = max(1, len(paths) // SAMPLE)
        images = (cv2.imread(str(p), cv2.IMREAD_COLOR) for p in paths[::step][:SAMPLE])
        return [(im.shape[1], im.shape[0]) for im in images if im is not None]
    return [s for s in map(_header_size, paths) if s is not None]
