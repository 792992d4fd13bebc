"""A video with a known schedule of appearances, for the events tests.

The cat photo (scikit-image's ``chelsea``, public domain) over a neutral grey
background, at 10 frames per second: visible at the left from 2 s to 5 s and from
9 s to 12 s, for one frame at 7 s (a flicker), and at the right from 14 s to 16 s
(outside the left zone). ``SCHEDULE`` is the truth the tests compare with.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

__all__ = ["FPS", "LEFT_ZONE", "SCHEDULE", "SIZE", "schedule_frames", "write_schedule_clip"]

FPS = 10
SIZE = (320, 240)
# (start s, end s, where): the cat is visible for start <= t < end
SCHEDULE = ((2.0, 5.0, "left"), (7.0, 7.1, "left"), (9.0, 12.0, "left"), (14.0, 16.0, "right"))
DURATION = 18.0
LEFT_ZONE = "left:0,0,160,0,160,240,0,240"
_X = {"left": 10, "right": 150}


def schedule_frames(cat_rgb: np.ndarray, duration: float = DURATION) -> list[np.ndarray]:
    """The BGR frames of the schedule."""
    w, h = SIZE
    cat = cv2.resize(np.ascontiguousarray(cat_rgb[:, :, ::-1]), (160, 106),
                     interpolation=cv2.INTER_AREA)
    frames = []
    for i in range(round(duration * FPS)):
        t = i / FPS
        f = np.full((h, w, 3), 128, np.uint8)
        for start, end, where in SCHEDULE:
            if start - 1e-6 <= t < end - 1e-6:
                x = _X[where]
                f[60:166, x:x + 160] = cat
        frames.append(f)
    return frames


def write_schedule_clip(path: Path, cat_rgb: np.ndarray, duration: float = DURATION) -> Path:
    """Write the schedule as an MJPEG .avi (every frame a keyframe, exact colours)."""
    w, h = SIZE
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, (w, h))
    for f in schedule_frames(cat_rgb, duration):
        out.write(f)
    out.release()
    return path
