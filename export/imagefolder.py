"""An ImageFolder training set: one sub-folder per class, the folder names are the labels.

Scanning checks what a user gets wrong (fewer than two classes, a class with too
few images) before any network work, and reading skips unreadable files, counting
them, so one broken JPEG does not stop a training run. Images are kept at most
``MAX_SIDE`` on their longer side (a folder of 12-megapixel phone photos would
otherwise hold 36 MB per photo in memory); large JPEGs are decoded at a reduced
scale directly, which is also faster. The camera's EXIF orientation is applied.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.errors import CamlocError
from realtime.model.format import BACKGROUND_LABEL as BACKGROUND
from realtime.sources import IMAGE_SUFFIXES

__all__ = ["BACKGROUND", "MAX_SIDE", "MIN_IMAGES_PER_CLASS", "DatasetError", "ImageFolder",
           "jpeg_size", "load_images", "read_rgb", "scan_folder"]

log = logging.getLogger(__name__)

MIN_IMAGES_PER_CLASS = 4    # at least 3 to train on and 1 held out
# The longer side an image is kept at: the views are 224-320 px, and a crop of 35% of the
# area of a 1024 px image still has 600 px on its side (export.train asks for more when
# --train-size is larger).
MAX_SIDE = 1024


class DatasetError(CamlocError, ValueError):
    """The training folder cannot be used as it is (a user error: exit status 2)."""


@dataclass
class ImageFolder:
    """Class names (sorted folder names) and, per class, its image paths (sorted)."""

    root: Path
    labels: list[str]
    paths: list[list[Path]]
    skipped: list[Path] = field(default_factory=list)  # unreadable, filled by load_images

    @property
    def counts(self) -> list[int]:
        return [len(p) for p in self.paths]


def scan_folder(root: str | Path, min_per_class: int = MIN_IMAGES_PER_CLASS) -> ImageFolder:
    """List ``root``'s classes and images; raise DatasetError for an unusable layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"training folder {root} does not exist or is not a folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        found = ", ".join(c.name for c in classes) or "none"
        raise DatasetError(f"{root} needs at least two class sub-folders (one per class, "
                           f"e.g. {root}/widget, {root}/{BACKGROUND}); found {len(classes)}: {found}")
    paths = [sorted(p for p in c.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
             for c in classes]
    few = [f"{c.name} ({len(p)})" for c, p in zip(classes, paths) if len(p) < min_per_class]
    if few:
        raise DatasetError(f"every class needs at least {min_per_class} images (some to train on, "
                           f"one or more held out); too few in: {', '.join(few)}")
    return ImageFolder(root, [c.name for c in classes], paths)


def jpeg_size(data: bytes) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header (before any orientation), or None when
    ``data`` is not a JPEG or its header cannot be found before the first scan."""
    if data[:2] != b"\xff\xd8":
        return None
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        if marker == 0xFF:                      # fill byte
            i += 1
            continue
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:   # markers without a length
            i += 2
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):   # SOFn
            if i + 9 > len(data):
                return None
            h, w = int.from_bytes(data[i + 5:i + 7], "big"), int.from_bytes(data[i + 7:i + 9], "big")
            return (h, w) if h and w else None
        if marker == 0xDA:                      # a scan before any frame header
            return None
        i += 2 + int.from_bytes(data[i + 2:i + 4], "big")
    return None


def read_rgb(path: Path, max_side: int = MAX_SIDE) -> np.ndarray | None:
    """An image file as RGB uint8, upright (EXIF orientation applied), its longer side at
    most ``max_side``; None when it cannot be decoded."""
    import cv2

    data = path.read_bytes()
    if not data:
        return None
    size, factor = jpeg_size(data), 1
    while size and factor < 8 and max(size) // (2 * factor) >= max_side:
        factor *= 2   # libjpeg's scaled decoding: a quarter of the pixels per step
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 8:
        return None
    h, w = img.shape[:2]
    if max(h, w) > max_side:
        scale = max_side / max(h, w)
        img = cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                         interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(img[:, :, ::-1])


def load_images(folder: ImageFolder, min_per_class: int = MIN_IMAGES_PER_CLASS,
                max_side: int = MAX_SIDE) -> list[list[np.ndarray]]:
    """Decode every image (RGB uint8, longer side at most ``max_side``), per class.
    Unreadable files are skipped, counted in ``folder.skipped`` and warned about; a class
    left with too few images is an error."""
    images: list[list[np.ndarray]] = []
    for paths in folder.paths:
        kept = []
        for path in paths:
            try:
                img = read_rgb(path, max_side)
            except OSError:
                img = None
            if img is None:
                folder.skipped.append(path)
            else:
                kept.append(img)
        images.append(kept)
    few = [f"{label} ({len(imgs)} readable, {len(paths) - len(imgs)} unreadable)"
           for label, imgs, paths in zip(folder.labels, images, folder.paths)
           if len(imgs) < min_per_class]
    if few:
        raise DatasetError(f"every class needs at least {min_per_class} readable images; too few "
                           f"in: {', '.join(few)}")
    if folder.skipped:
        names = ", ".join(str(p.relative_to(folder.root)) for p in folder.skipped[:3])
        more = f" and {len(folder.skipped) - 3} more" if len(folder.skipped) > 3 else ""
        log.warning("skipped %d unreadable image(s): %s%s", len(folder.skipped), names, more)
    return images
