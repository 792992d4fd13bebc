"""Assemble varied real photo sets from public sources that Debian and scikit-image ship,
for measuring INT8 against FP32 (docs/EDGE.md). Nothing is downloaded here and nothing
of it is committed: each set is rebuilt, identically, from the installed packages.

Sets (one folder each under OUT):

* ``opencv``     OpenCV's sample images (Debian ``opencv-doc``: examples/data): scenes,
                 objects, logos, a chessboard, text, charts; the stereo-calibration series
                 (left01..right14) left out, they are 26 near-copies of one chessboard.
* ``wallpapers`` desktop wallpapers (Debian ``ukui-wallpapers``, ``gnome-backgrounds``,
                 ``mate-backgrounds``): landscapes, flowers, animals, abstract art.
* ``video``      16 evenly spaced frames of each of OpenCV's sample videos (vtest.avi,
                 Megamind.avi, tree.avi).
* ``skimage``    scikit-image's held-out photos (export.photos.HELDOUT_PHOTOS), 8 seeded
                 views each (crops, mirrors, rescales, brightness).

    apt-get install ukui-wallpapers gnome-backgrounds mate-backgrounds
    apt-get download opencv-doc && dpkg -x opencv-doc_*.deb /tmp/opencv-doc   # or install it
    python tools/photo_sets.py --out /tmp/sets --opencv /tmp/opencv-doc/usr/share/doc/opencv-doc/examples/data

Images wider or taller than 1600 pixels are scaled down (INTER_AREA) and written as
JPEG (quality 95); the others are copied byte for byte.
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["SETS", "build", "main"]

SETS = ("opencv", "wallpapers", "video", "skimage")
OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")
WALLPAPERS = Path("/usr/share/backgrounds")
VIDEOS = ("vtest.avi", "Megamind.avi", "tree.avi")
RASTER = (".jpg", ".jpeg", ".png", ".webp")
MAX_SIDE = 1600


def _put(src: Path, dst: Path) -> bool:
    image = cv2.imread(str(src), cv2.IMREAD_COLOR)
    if image is None:
        return False
    h, w = image.shape[:2]
    if max(h, w) <= MAX_SIDE:
        shutil.copyfile(src, dst.with_suffix(src.suffix.lower()))
        return True
    s = MAX_SIDE / max(h, w)
    small = cv2.resize(image, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
    return cv2.imwrite(str(dst.with_suffix(".jpg")), small, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _opencv(out: Path, data: Path) -> int:
    n = 0
    for p in sorted(data.iterdir()):
        if p.suffix.lower() in RASTER and not re.fullmatch(r"(left|right)\d+", p.stem):
            n += _put(p, out / p.stem)
    return n


def _wallpapers(out: Path, root: Path) -> int:
    n = 0
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in RASTER:
            name = "_".join(p.relative_to(root).with_suffix("").parts)
            n += _put(p, out / name)
    return n


def _video(out: Path, data: Path) -> int:
    from export.calib import MIN_CALIB_FRAMES, read_frames

    n = 0
    for name in VIDEOS:
        if (data / name).is_file():
            for f in read_frames(data / name, MIN_CALIB_FRAMES):
                index = int(f.name.rsplit("#", 1)[1])
                n += cv2.imwrite(str(out / f"{Path(name).stem}_{index:05d}.png"), f.image)
    return n


def _skimage(out: Path, per_photo: int = 8, seed: int = 3) -> int:
    from export.photos import HELDOUT_PHOTOS, photo_set

    n = 0
    for name, rgb in photo_set(HELDOUT_PHOTOS, per_photo, seed):
        n += cv2.imwrite(str(out / f"{name.replace('#', '_')}.png"),
                         np.ascontiguousarray(rgb[..., ::-1]))
    return n


def build(out: Path, opencv: Path = OPENCV_DATA, wallpapers: Path = WALLPAPERS,
          sets: tuple[str, ...] = SETS) -> dict[str, int]:
    """Write the sets under ``out``; name -> number of images (0: its source is missing)."""
    counts = {}
    for name in sets:
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        if name == "opencv":
            counts[name] = _opencv(folder, opencv) if opencv.is_dir() else 0
        elif name == "wallpapers":
            counts[name] = _wallpapers(folder, wallpapers) if wallpapers.is_dir() else 0
        elif name == "video":
            counts[name] = _video(folder, opencv) if opencv.is_dir() else 0
        else:
            counts[name] = _skimage(folder)
    return counts


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--opencv", type=Path, default=OPENCV_DATA,
                   help="opencv-doc's examples/data folder")
    p.add_argument("--wallpapers", type=Path, default=WALLPAPERS)
    p.add_argument("--sets", default=",".join(SETS))
    args = p.parse_args(argv)
    sets = tuple(s for s in args.sets.split(",") if s)
    bad = [s for s in sets if s not in SETS]
    if bad:
        p.error(f"unknown set {bad[0]!r}; choose from {', '.join(SETS)}")
    counts = build(args.out, args.opencv, args.wallpapers, sets)
    for name, n in counts.items():
        print(f"{name}: {n} images" + ("  (source missing: see --help)" if not n else ""))
    return 0 if all(counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
