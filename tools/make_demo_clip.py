"""Make the bundled demo clip, ``assets/demo.mp4``, from public-domain photos.

Three ImageNet objects photographed for scikit-image's sample data (a tabby
cat, a cup of espresso and a motorcycle) glide across a soft gradient
background, overlapping at times and changing size, so that the CAMs and their
boxes have something to follow. Provenance and licences: ``docs/DEMO.md``.

The clip is deterministic: no randomness, integer positions computed from the
frame number only, so the same OpenCV build writes the same frames every time.

    python tools/make_demo_clip.py                  # writes assets/demo.mp4
    python tools/make_demo_clip.py --output /tmp/clip.mp4 --seconds 2
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

__all__ = ["Sprite", "background", "demo_frames", "main", "sprites", "write_clip"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "assets" / "demo.mp4"


@dataclass(frozen=True)
class Sprite:
    """A photo moving along straight segments between key frames.

    ``keys`` holds ``(t_seconds, x_center, y_center, height_px)``; between two
    keys everything is interpolated linearly, outside them the sprite is absent.
    """

    name: str
    image: np.ndarray  # BGR uint8
    keys: tuple[tuple[float, float, float, float], ...]

    def place(self, t: float) -> tuple[int, int, int] | None:
        """Centre x, centre y and height at time ``t``, or None when off stage."""
        ts = [k[0] for k in self.keys]
        if t < ts[0] or t > ts[-1]:
            return None
        i = max(0, min(len(ts) - 2, int(np.searchsorted(ts, t, side="right")) - 1))
        (t0, *a), (t1, *b) = self.keys[i], self.keys[i + 1]
        u = 0.0 if t1 == t0 else (t - t0) / (t1 - t0)
        u = u * u * (3 - 2 * u)  # smoothstep: ease in and out of each segment
        x, y, h = (p + (q - p) * u for p, q in zip(a, b))
        return round(x), round(y), round(h)


def _photos() -> dict[str, np.ndarray]:
    """The three photos, BGR, from scikit-image's bundled (public-domain) data."""
    from skimage import data

    rgb = {
        "cat": data.chelsea(),
        "espresso": data.coffee(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    return {k: np.ascontiguousarray(v[:, :, ::-1]) for k, v in rgb.items()}


def sprites(seconds: float = 8.0) -> list[Sprite]:
    """The choreography, scaled to a clip of ``seconds`` (designed for 8 s)."""
    p = _photos()
    s = seconds / 8.0
    return [
        Sprite("motorcycle", p["motorcycle"],
               ((5.0 * s, 1700, 400, 300), (6.6 * s, 660, 380, 440), (8.0 * s, 620, 370, 480))),
        Sprite("espresso", p["espresso"],
               ((2.2 * s, -330, 380, 300), (3.6 * s, 640, 360, 380), (4.8 * s, 660, 360, 380),
                (5.8 * s, -420, 400, 300))),
        Sprite("cat", p["cat"],
               ((0.0, 360, 300, 360), (1.8 * s, 640, 300, 400), (3.0 * s, 1560, 260, 300))),
    ]


def background(width: int, height: int) -> np.ndarray:
    """A soft vertical grey-blue gradient with a faint floor line (BGR uint8)."""
    y = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    top, bottom = np.array([200, 190, 180], np.float32), np.array([120, 110, 100], np.float32)
    col = top * (1 - y) + bottom * y  # (H, 3)
    img = np.repeat(col[:, None, :], width, axis=1)
    floor = int(height * 0.82)
    img[floor:floor + 3] *= 0.85
    return np.clip(img, 0, 255).astype(np.uint8)


def _feather(h: int, w: int, radius: int) -> np.ndarray:
    """Alpha mask (float32, H x W x 1) of a rounded rectangle with soft edges."""
    m = np.zeros((h, w), np.uint8)
    r = max(1, min(radius, h // 4, w // 4))
    cv2.rectangle(m, (r, 0), (w - 1 - r, h - 1), 255, -1)
    cv2.rectangle(m, (0, r), (w - 1, h - 1 - r), 255, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(m, (cx, cy), r, 255, -1)
    m = cv2.GaussianBlur(m, (0, 0), 2.0)
    return (m.astype(np.float32) / 255.0)[:, :, None]


def _paste(canvas: np.ndarray, photo: np.ndarray, cx: int, cy: int, h: int) -> None:
    """Alpha-blend ``photo`` scaled to height ``h`` centred at (cx, cy), in place."""
    w = max(1, round(photo.shape[1] * h / photo.shape[0]))
    img = cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32)
    alpha = _feather(h, w, radius=h // 12)
    x0, y0 = cx - w // 2, cy - h // 2
    H, W = canvas.shape[:2]
    ax0, ay0, ax1, ay1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if ax0 >= ax1 or ay0 >= ay1:
        return
    src = img[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    a = alpha[ay0 - y0:ay1 - y0, ax0 - x0:ax1 - x0]
    dst = canvas[ay0:ay1, ax0:ax1].astype(np.float32)
    canvas[ay0:ay1, ax0:ax1] = (src * a + dst * (1 - a) + 0.5).astype(np.uint8)


def demo_frames(width: int = 1280, height: int = 720, fps: float = 25.0,
                seconds: float = 8.0) -> Iterator[np.ndarray]:
    """Yield the clip's frames (BGR uint8, ``height`` x ``width``)."""
    base = background(1280, 720)
    cast = sprites(seconds)
    for i in range(round(fps * seconds)):
        t = i / fps
        frame = base.copy()
        for sp in cast:
            where = sp.place(t)
            if where is not None:
                _paste(frame, sp.image, *where)
        if (width, height) != (1280, 720):
            frame = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        yield frame


def write_clip(output: Path, width: int = 1280, height: int = 720, fps: float = 25.0,
               seconds: float = 8.0) -> int:
    """Write the clip as mp4v in an .mp4; returns the number of frames written."""
    output.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(output), cv2.VideoWriter_fourcc(*"mp4v"), fps, (width, height))
    if not writer.isOpened():
        raise OSError(f"cannot write {output}")
    n = 0
    try:
        for frame in demo_frames(width, height, fps, seconds):
            writer.write(frame)
            n += 1
    finally:
        writer.release()
    return n


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="where to write the clip")
    ap.add_argument("--width", type=int, default=1280, help="frame width")
    ap.add_argument("--height", type=int, default=720, help="frame height")
    ap.add_argument("--fps", type=float, default=25.0, help="frames per second")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of the clip")
    a = ap.parse_args(argv)
    n = write_clip(a.output, a.width, a.height, a.fps, a.seconds)
    size = a.output.stat().st_size
    print(f"wrote {a.output}: {n} frames, {a.width}x{a.height} at {a.fps:g} fps, "
          f"{size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
