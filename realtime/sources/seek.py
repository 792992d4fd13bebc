"""Frame-accurate seeking in a video file with OpenCV, for segments of a video.

OpenCV's frame counter is not trusted: after an undecodable frame it lags, and a
seek past one lands early. Every frame read here is placed by its timestamp
instead, and a seek that lands past the wanted frame is redone from the start.
"""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["seek_frame"]


def seek_frame(cap: cv2.VideoCapture, fps: float, start: int, max_bad: int
               ) -> tuple[np.ndarray | None, int]:
    """Go to frame ``start`` of ``cap`` (a video at ``fps``): (the first decodable frame
    from there, the tries it took counted from ``start``, so that frame is number
    ``start + tries - 1``), or (None, max_bad) when ``max_bad`` reads in a row fail."""
    for target in (start, 0):
        cap.set(cv2.CAP_PROP_POS_FRAMES, target)
        bad = 0
        while bad < max_bad:
            ok, image = cap.read()
            if not ok or image is None:
                bad += 1
                continue
            bad = 0
            at = round(cap.get(cv2.CAP_PROP_POS_MSEC) * fps / 1e3)
            if at < start:
                continue
            if at == start or target == 0:  # from 0: the frames between were corrupt
                return image, at - start + 1
            break
    return None, max_bad
