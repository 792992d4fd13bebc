"""An ImageFolder training set: one sub-folder per class, the folder names are the labels.

Scanning checks what a user gets wrong (fewer than two classes, a class with too
few images, a set's root with train/ and test/ instead of one split) before any network
work, and leaves out what copying, unzipping or a NAS adds (``SYSTEM_FOLDERS``, hidden
names). Reading skips unreadable files, counting them, so one broken JPEG does not stop a
training run; uses a file repeated within its class once and one in two classes in
neither. Images are kept at most ``MAX_SIDE`` on their longer side (a folder of
12-megapixel phone photos would otherwise hold 36 MB per photo in memory); large JPEGs
are decoded at a reduced scale directly, which is also faster. The camera's EXIF
orientation is applied. Cutouts (transparency) stay RGBA, and product photos on a plain
backdrop become cutouts (export/matte.py): export.trainaug.flatten puts them into scenes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from realtime.errors import CamlocError
from realtime.model.format import BACKGROUND_LABEL as BACKGROUND
from realtime.sources import IMAGE_SUFFIXES

from .matte import backdrop_alpha

__all__ = ["BACKGROUND", "MAX_SIDE", "MIN_IMAGES_PER_CLASS", "PHOTO_SUFFIXES", "SYSTEM_FOLDERS",
           "UNDECODABLE", "DatasetError", "ImageFolder", "decode_rgb", "jpeg_size", "load_images",
           "read_rgb", "scan_folder"]

log = logging.getLogger(__name__)

MIN_IMAGES_PER_CLASS = 4    # at least 3 to train on and 1 held out
# The longer side an image is kept at: the views are 224-320 px, and a crop of 35% of the
# area of a 1024 px image still has 600 px on its side (export.train asks for more when
# --train-size is larger).
MAX_SIDE = 1024
# Folders that copying, unzipping or a NAS adds to a photo folder: never classes, never images
# (macOS zip metadata, Synology and QNAP thumbnails, recycle bins). Hidden names are skipped too.
SYSTEM_FOLDERS = frozenset({"__MACOSX", "@eaDir", "#recycle", "@Recycle", "$RECYCLE.BIN",
                            "System Volume Information", "Thumbs"})
# What training reads: the runtime's still-image suffixes, and AVIF and GIF (first frame),
# which OpenCV decodes too. Camera formats it cannot decode are named, never silently lost.
PHOTO_SUFFIXES = IMAGE_SUFFIXES | {".avif", ".gif"}
UNDECODABLE = frozenset({".heic", ".heif", ".jxl", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf",
                         ".rw2", ".raf"})
CONVERT_HINT = ("convert them to JPEG (an iPhone's Settings > Camera > Formats > Most Compatible "
                "saves JPEG; heif-convert or your raw converter converts existing ones)")
# Names of a dataset's splits: a --train folder whose only "classes" are these, sharing their
# sub-folders, is a folder of splits, not of classes.
SPLIT_NAMES = frozenset({"train", "training", "test", "testing", "val", "valid", "validation"})


class DatasetError(CamlocError, ValueError):
    """The training folder cannot be used as it is (a user error: exit status 2)."""


@dataclass
class ImageFolder:
    """Class names (sorted folder names) and, per class, its image paths (sorted)."""

    root: Path
    labels: list[str]
    paths: list[list[Path]]
    skipped: list[Path] = field(default_factory=list)  # unreadable, filled by load_images
    duplicates: list[Path] = field(default_factory=list)  # a second copy within its class
    conflicts: list[Path] = field(default_factory=list)   # the same file in two classes
    ignored: int = 0                                      # files in hidden or system folders
    matted: int = 0                # photos on a plain backdrop, cut out (export/matte.py)

    @property
    def counts(self) -> list[int]:
        return [len(p) for p in self.paths]


def scan_folder(root: str | Path, min_per_class: int = MIN_IMAGES_PER_CLASS) -> ImageFolder:
    """List ``root``'s classes and images; raise DatasetError for an unusable layout."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"training folder {root} does not exist or is not a folder")
    classes = sorted(p for p in root.iterdir() if p.is_dir() and not _system(p.name))
    if len(classes) < 2:
        found = ", ".join(c.name for c in classes) or "none"
        raise DatasetError(f"{root} needs at least two class sub-folders (one per class, "
                           f"e.g. {root}/widget, {root}/{BACKGROUND}); found {len(classes)}: {found}")
    _refuse_split_root(root, classes)
    paths, ignored, undecodable = [], 0, []
    for c in classes:
        files = [p for p in c.rglob("*") if p.suffix.lower() in PHOTO_SUFFIXES | UNDECODABLE
                 and p.is_file()]
        kept = sorted(p for p in files if not any(map(_system, p.relative_to(c).parts)))
        ignored += len(files) - len(kept)
        undecodable.append([p for p in kept if p.suffix.lower() in UNDECODABLE])
        paths.append([p for p in kept if p.suffix.lower() in PHOTO_SUFFIXES])
    lost = sum(map(len, undecodable))
    kinds = _kinds([p for u in undecodable for p in u])
    few = [f"{c.name} ({len(p)}{f' and {len(u)} {_kinds(u)}' if u else ''})"
           for c, p, u in zip(classes, paths, undecodable) if len(p) < min_per_class]
    if few:
        hint = f"; {kinds} files cannot be read here: {CONVERT_HINT}" if lost else ""
        raise DatasetError(f"every class needs at least {min_per_class} images (some to train on, "
                           f"one or more held out); too few in: {', '.join(few)}{hint}")
    if lost:
        log.warning("left out %d %s file(s), which cannot be read here: %s", lost, kinds, CONVERT_HINT)
    if ignored:
        log.info("ignored %d image file(s) in hidden or system folders (%s)", ignored,
                 ", ".join(sorted(SYSTEM_FOLDERS)))
    return ImageFolder(root, [c.name for c in classes], paths, ignored=ignored)


def _refuse_split_root(root: Path, classes: list[Path]) -> None:
    """A folder of splits (train/, test/, each with the class folders) given instead of one
    split: its "classes" would be the splits, every image under each. Refused, naming both."""
    if not {c.name.lower() for c in classes} <= SPLIT_NAMES:
        return
    subs = [{d.name for d in c.iterdir() if d.is_dir() and not _system(d.name)} for c in classes]
    shared = sorted(set.intersection(*subs))
    if shared:
        names = ", ".join(c.name for c in classes)
        one = next((c for c in classes if c.name.lower() in ("train", "training")), classes[0])
        raise DatasetError(f"{root} holds splits ({names}), each with the same class folders "
                           f"({', '.join(shared[:4])}): give one split, e.g. --train {one}")


def _kinds(paths: list[Path]) -> str:
    return ", ".join(sorted({p.suffix.lower() for p in paths}))


def _system(name: str) -> bool:
    return name.startswith(".") or name in SYSTEM_FOLDERS


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
    most ``max_side``; RGBA for a PNG or WebP that is transparent somewhere (a cutout:
    export.trainaug.flatten puts it into scenes); None when it cannot be decoded or is
    transparent everywhere."""
    return decode_rgb(path.read_bytes(), max_side)


def decode_rgb(data: bytes, max_side: int = MAX_SIDE) -> np.ndarray | None:
    """``read_rgb`` of a file's bytes."""
    import cv2

    if not data:
        return None
    if _may_be_transparent(data):   # decoded with its alpha only then: not every PNG twice
        cutout = _cutout(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED))
        if cutout is not None:
            return _fit(cutout, max_side) if cutout is not False else None
    size, factor = jpeg_size(data), 1
    while size and factor < 8 and max(size) // (2 * factor) >= max_side:
        factor *= 2   # libjpeg's scaled decoding: a quarter of the pixels per step
    flag = {1: cv2.IMREAD_COLOR, 2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
            8: cv2.IMREAD_REDUCED_COLOR_8}[factor]
    img = cv2.imdecode(np.frombuffer(data, np.uint8), flag)
    if img is None or img.ndim != 3 or min(img.shape[:2]) < 8:
        return None
    return _fit(np.ascontiguousarray(img[:, :, ::-1]), max_side)


def _may_be_transparent(data: bytes) -> bool:
    """Whether a file can hold transparency: a WebP, or a PNG whose header says it has an
    alpha channel (colour types 4 and 6) or a transparency chunk (tRNS) before its data."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return True
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        return False
    if len(data) < 26 or data[25] in (4, 6):
        return True
    i = 8
    while i + 8 <= len(data):
        kind = data[i + 4:i + 8]
        if kind == b"tRNS":
            return True
        if kind == b"IDAT":
            return False
        i += 12 + int.from_bytes(data[i:i + 4], "big")
    return False


def _cutout(img: np.ndarray | None) -> np.ndarray | bool | None:
    """An image decoded with its alpha as RGBA uint8 when it is transparent somewhere (a
    cutout); False when it is transparent everywhere or too small (nothing to train on);
    None for anything else (read it as a colour image)."""
    if img is None or img.ndim != 3 or img.shape[2] != 4:
        return None
    if img.dtype == np.uint16:
        img = (img >> 8).astype(np.uint8)
    alpha = img[:, :, 3]
    if alpha.min() == 255:
        return None
    if alpha.max() == 0 or min(img.shape[:2]) < 8:
        return False
    return np.ascontiguousarray(img[:, :, [2, 1, 0, 3]])


def _fit(img: np.ndarray, max_side: int) -> np.ndarray:
    import cv2

    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    scale = max_side / max(h, w)
    return cv2.resize(img, (max(1, round(w * scale)), max(1, round(h * scale))),
                      interpolation=cv2.INTER_AREA)


def load_images(folder: ImageFolder, min_per_class: int = MIN_IMAGES_PER_CLASS,
                max_side: int = MAX_SIDE) -> list[list[np.ndarray]]:
    """Decode every image (``read_rgb``: RGB uint8, RGBA for a cutout), per class.
    Unreadable files are skipped (``folder.skipped``); a file whose bytes repeat one of
    its class is used once (``folder.duplicates``: a copy would sit on both sides of the
    held-out split); one whose bytes are in two classes is used in neither
    (``folder.conflicts``: it has no one label). Each is warned about; a class left with
    too few images is an error."""
    owners: dict[bytes, set[int]] = {}   # each file's bytes -> the classes holding them
    decoded: list[list[tuple[bytes, Path, np.ndarray, bool]]] = []
    for c, (label, paths) in enumerate(zip(folder.labels, folder.paths)):   # one read per file
        decoded.append([])
        for path in paths:
            try:
                data = path.read_bytes()
            except OSError:
                data = b""
            key = hashlib.sha256(data).digest()
            if data and c in owners.get(key, ()):
                folder.duplicates.append(path)
                continue
            img = decode_rgb(data, max_side)
            if img is None:
                folder.skipped.append(path)
                continue
            owners.setdefault(key, set()).add(c)
            alpha = backdrop_alpha(img) if img.shape[2] == 3 and label != BACKGROUND else None
            if alpha is not None:   # a product photo on a plain backdrop: trained on as a cutout
                img = np.dstack([img, alpha])
            decoded[-1].append((key, path, img, alpha is not None))
    images: list[list[np.ndarray]] = []
    for entries in decoded:
        images.append([])
        for key, path, img, matted in entries:
            if len(owners[key]) > 1:
                folder.conflicts.append(path)
            else:
                images[-1].append(img)
                folder.matted += matted
    few = [f"{label} ({len(imgs)} usable of {len(paths)}: unreadable, duplicate or in two classes)"
           for label, imgs, paths in zip(folder.labels, images, folder.paths)
           if len(imgs) < min_per_class]
    if few:
        raise DatasetError(f"every class needs at least {min_per_class} readable images; too few "
                           f"in: {', '.join(few)}")
    if folder.matted:
        log.info("%d photo(s) on a plain backdrop: cut out, trained on in background photos",
                 folder.matted)
    for paths, what in ((folder.skipped, "skipped {} unreadable image(s)"),
                        (folder.duplicates, "used once: {} image(s) that repeat another of their class"),
                        (folder.conflicts, "left out: {} image(s) whose same file is in two classes")):
        if paths:
            names = ", ".join(str(p.relative_to(folder.root)) for p in paths[:3])
            more = f" and {len(paths) - 3} more" if len(paths) > 3 else ""
            log.warning("%s: %s%s", what.format(len(paths)), names, more)
    return images

