"""The held-out split of a training folder: by image, or by folder of origin.

Images of one class that share a sub-folder (``coin/kitchen/``, ``coin/video_0031/``: one
session, one scene, frames of one clip) are near copies of each other; held out one by one,
each has its twins in training and the held-out figure flatters the model. Where a class
has sub-folders, whole sub-folders are held out (about ``fraction`` of its images, at most
``OVERSHOOT`` times that), so the held-out estimate is of scenes the model never saw: what a
user's camera will give. A class of loose files (or of one sub-folder, or whose smallest
sub-folder is too large to hold out) is split by image as before, with the same draws.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

__all__ = ["OVERSHOOT", "origins", "split_holdout"]

log = logging.getLogger(__name__)

OVERSHOOT = 1.5   # the share held out may reach 1.5x the asked one when held out by sub-folder


def origins(paths: list[Path], class_dir: Path) -> list[str]:
    """Each image's folder of origin under its class folder: its first sub-folder's name,
    or its own name for an image directly in the class folder."""
    return [p.relative_to(class_dir).parts[0] for p in paths]


def split_holdout(counts: list[int], fraction: float, seed: int,
                  groups: list[list[str]] | None = None, labels: list[str] | None = None
                  ) -> tuple[list, list]:
    """Stratified split: per class, (train indices, held-out indices) into its images.
    ``groups``: per class, each image's folder of origin (``origins``); images sharing one
    are held out together."""
    rng = np.random.default_rng(seed)
    train, held, said = [], [], []
    for c, n in enumerate(counts):
        k = min(n - 1, max(1, int(round(fraction * n))))
        chosen = _by_origin(groups[c], k, rng) if groups and _grouped(groups[c]) else None
        if chosen is not None:
            said.append(f"{labels[c] if labels else c} ({len({groups[c][i] for i in chosen})} of "
                        f"{len(set(groups[c]))} folders, {len(chosen)} images)")
        else:
            order = rng.permutation(n)
            chosen = order[:k]
        out = set(int(i) for i in chosen)
        held.append(sorted(out))
        train.append([i for i in range(n) if i not in out])
    if said:
        log.info("held out by folder of origin: %s", ", ".join(said))
    return train, held


def _grouped(keys: list[str]) -> bool:
    return len(set(keys)) < len(keys)


def _by_origin(keys: list[str], k: int, rng: np.random.Generator) -> list[int] | None:
    """Whole folders of origin, in random order, until about ``k`` images are held out (at
    most ``OVERSHOOT * k``, never every folder); None where that cannot be done."""
    names = sorted(set(keys))
    members = {name: [i for i, key in enumerate(keys) if key == name] for name in names}
    if len(names) < 2:
        return None
    chosen: list[int] = []
    for j in rng.permutation(len(names)):
        group = members[names[j]]
        if len(chosen) >= k:
            break
        if len(chosen) + len(group) <= OVERSHOOT * k and len(chosen) + len(group) < len(keys):
            chosen += group
    return chosen or None
