"""An ImageFolder training set: one sub-folder per class, the folder names are the labels.

Scanning checks what a user gets wrong (fewer than two classes, a class with too
few images) before any network work, and reading skips unreadable files, counting
them, so one broken JPEG does not stop a training run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.errors import CamlocError
from realtime.model.format import BACKGROUND_LABEL as BACKGROUND
from realtime.sources import IMAGE_SUFFIXES

__all__ = ["BACKGROUND", "MIN_IMAGES_PER_CLASS", "DatasetError", "ImageFolder", "load_images",
           "scan_folder"]

log = logging.getLogger(__name__)

MIN_IMAGES_PER_CLASS = 4    # at least 3 to train on and 1 held out


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


def read_rgb(path: Path) -> np.ndarray | None:
    """An image file as RGB uint8, or None when it cannot be decoded."""
    import cv2

    data = np.fromfile(str(path), np.uint8) if path.stat().st_size else np.zeros(0, np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 8:
        return None
    return np.ascontiguousarray(img[:, :, ::-1])


def load_images(folder: ImageFolder, min_per_class: int = MIN_IMAGES_PER_CLASS
                ) -> list[list[np.ndarray]]:
    """Decode every image (RGB uint8), per class. Unreadable files are skipped, counted in
    ``folder.skipped`` and warned about; a class left with too few images is an error."""
    images: list[list[np.ndarray]] = []
    for paths in folder.paths:
        kept = []
        for path in paths:
            try:
                img = read_rgb(path)
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
