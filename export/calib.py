"""Calibration frames for INT8 export: read a folder of images or a video, sample evenly.

Frames are prepared exactly as the runtime prepares them (``realtime.model.preprocess``
at the runtime's default working size), so the INT8 ranges are measured on the
tensors the model will really see. Torch-free.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from realtime.errors import CamlocError

__all__ = ["MIN_CALIB_FRAMES", "CalibError", "CalibFrame", "evenly", "prepare_frames",
           "read_frames"]

log = logging.getLogger(__name__)

MIN_CALIB_FRAMES = 16  # readable frames needed: 3 in 4 calibrate, 1 in 4 is held out to verify


class CalibError(CamlocError, ValueError):
    """The calibration source cannot give enough readable frames."""


@dataclass
class CalibFrame:
    name: str          # image path, or "video.mp4#123"
    image: np.ndarray  # BGR uint8 HxWx3


def evenly(total: int, count: int) -> list[int]:
    """``count`` indices spread evenly over ``range(total)`` (all of them if fewer)."""
    if total <= count:
        return list(range(total))
    return sorted({int(round(i * (total - 1) / (count - 1))) for i in range(count)}) if count > 1 \
        else [total // 2]


def _images_in(folder: Path) -> list[Path]:
    from realtime.sources import IMAGE_SUFFIXES

    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def _read_folder(folder: Path, count: int) -> list[CalibFrame]:
    paths = _images_in(folder)
    frames: list[CalibFrame] = []
    # walk evenly spaced picks first, then fill with the rest if some were unreadable
    order = evenly(len(paths), count)
    order += [i for i in range(len(paths)) if i not in set(order)]
    for i in order:
        if len(frames) >= count:
            break
        image = cv2.imread(str(paths[i]), cv2.IMREAD_COLOR)
        if image is None:
            log.warning("calibration: skipped %s (not a readable image)", paths[i])
            continue
        frames.append(CalibFrame(str(paths[i]), image))
    frames.sort(key=lambda f: f.name)
    return frames


def _count_frames(path: Path) -> int:
    cap = cv2.VideoCapture(str(path))
    n = 0
    try:
        while cap.isOpened() and cap.grab():
            n += 1
    finally:
        cap.release()
    return n


def _read_video(path: Path, count: int, total: int | None = None) -> list[CalibFrame]:
    """Decode sequentially and keep the evenly spaced picks (seeking is unreliable in
    many codecs). A missing or wrong frame count costs one extra counting pass."""
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return []
        if total is None:
            total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if total <= 0:
            cap.release()
            total = _count_frames(path)
            cap = cv2.VideoCapture(str(path))
        picks = set(evenly(total, count))
        kept: list[CalibFrame] = []
        index = 0
        while index <= max(picks, default=-1):
            ok, image = cap.read()
            if not ok:
                break
            if index in picks:
                kept.append(CalibFrame(f"{path}#{index}", image))
            index += 1
    finally:
        cap.release()
    if len(kept) < len(picks) and 0 < index < total:  # the container over-reported its length
        return _read_video(path, count, index)
    return kept


def read_frames(source: str | Path, count: int = 64) -> list[CalibFrame]:
    """Up to ``count`` BGR frames sampled evenly from a folder of images or a video file.

    Raises CalibError when the source is missing, has no readable frame, or has
    fewer than ``MIN_CALIB_FRAMES``.
    """
    if count < MIN_CALIB_FRAMES:
        raise CalibError(f"--calib-frames must be at least {MIN_CALIB_FRAMES}, got {count}")
    path = Path(source).expanduser()
    if not path.exists():
        raise CalibError(f"calibration source not found: {source}")
    if path.is_dir():
        frames = _read_folder(path, count)
        what = "readable images"
    else:
        frames = _read_video(path, count)
        what = "readable video frames"
    if not frames:
        raise CalibError(f"calibration source {source} has no {what} (give a folder of "
                         f"images or a video file with at least {MIN_CALIB_FRAMES} frames)")
    if len(frames) < MIN_CALIB_FRAMES:
        raise CalibError(f"calibration source {source} has only {len(frames)} {what}; INT8 "
                         f"calibration needs at least {MIN_CALIB_FRAMES} (40-60 varied frames "
                         "from where the model will run work well)")
    return frames


def prepare_frames(frames: list[CalibFrame], stride: int, mean: tuple[float, float, float],
                   std: tuple[float, float, float], rgb: bool, input_size: tuple[int, int]
                   ) -> list[np.ndarray]:
    """Each frame -> float32 [1, 3, H, W] exactly as the runtime prepares it by default."""
    from realtime.model.engine import default_imgsz
    from realtime.model.format import ModelInfo
    from realtime.model.preprocess import prepare_frame

    info = ModelInfo(path="", arch="", weights="", labels=("",), color="RGB" if rgb else "BGR",
                     mean=mean, std=std, input_size=input_size, stride=stride,
                     precision="fp32", format=1)
    out = []
    for f in frames:
        h, w = f.image.shape[:2]
        x, _ = prepare_frame(f.image, default_imgsz(info, h, w), stride, mean, std, rgb)
        out.append(np.ascontiguousarray(x, np.float32))
    return out
