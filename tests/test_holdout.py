"""The held-out split: by image for a class of loose files, by whole sub-folder (folder of
origin: one session, one scene, one clip's frames) where a class has them, so that no
held-out image has its twin in training."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from export.holdout import OVERSHOOT, origins, split_holdout
from export.imagefolder import load_images, scan_folder


def test_loose_files_are_split_by_image():
    train, held = split_holdout([10, 5, 21], 0.2, seed=0)
    for n, t, h in zip((10, 5, 21), train, held):
        assert len(h) == min(n - 1, max(1, round(0.2 * n))) and sorted(t + h) == list(range(n))
    assert split_holdout([10, 5, 21], 0.2, seed=0, groups=[[str(i) for i in range(n)]
                                                            for n in (10, 5, 21)]) == (train, held)
    assert split_holdout([10, 5, 21], 0.2, seed=1) != (train, held)


def test_sub_folders_are_held_out_whole():
    keys = [f"s{i // 4}" for i in range(20)]            # 5 sessions of 4 images
    seen = set()
    for seed in range(6):
        train, held = split_holdout([20], 0.2, seed, [keys])
        out = {keys[i] for i in held[0]}
        assert len(out) == 1 and len(held[0]) == 4     # one whole session: 20%
        assert not out & {keys[i] for i in train[0]}    # no twin left in training
        seen |= out
    assert len(seen) > 1                                # which one is drawn
    mixed = ["a", "a", "a", "x.jpg", "y.jpg", "z.jpg", "b", "b", "b", "b"]
    train, held = split_holdout([10], 0.3, 0, [mixed])
    assert len(held[0]) <= OVERSHOOT * 3 and not {mixed[i] for i in held[0]} & {mixed[i] for i in train[0]}


def test_too_large_or_single_origins_fall_back_to_images():
    two_big = ["a"] * 10 + ["b"] * 10                   # either is half the class: by image
    train, held = split_holdout([20], 0.2, 0, [two_big])
    assert len(held[0]) == 4 and len(train[0]) == 16   # 4 single images, not 10 of one folder
    one = ["only"] * 8
    train, held = split_holdout([8], 0.2, 0, [one])
    assert len(held[0]) == 2 and len(train[0]) == 6


def test_a_folder_of_sessions_holds_out_whole_sessions(tmp_path, photos, caplog):
    """On disk: cat/ has five capture sessions, cup/ loose files. The split the trainer
    makes (origins of the images load_images kept) holds out a whole cat session."""
    rng = np.random.default_rng(0)
    for c, name in enumerate(("cat", "cup")):
        for i in range(20):
            sub = tmp_path / name / (f"session{i // 4}" if name == "cat" else "")
            sub.mkdir(parents=True, exist_ok=True)
            shifted = np.roll(photos["cat" if c == 0 else "espresso"], int(rng.integers(1, 500)), axis=1)
            cv2.imwrite(str(sub / f"{i}.jpg"), np.ascontiguousarray(shifted[:, :, ::-1]))
    folder = scan_folder(tmp_path)
    load_images(folder)
    groups = [origins(used, folder.root / label) for used, label in zip(folder.used, folder.labels)]
    assert set(groups[0]) == {f"session{s}" for s in range(5)} and len(set(groups[1])) == 20
    with caplog.at_level(logging.INFO, logger="export.holdout"):
        train, held = split_holdout([20, 20], 0.2, 0, groups, folder.labels)
    assert len({groups[0][i] for i in held[0]}) == 1 and len(held[0]) == 4
    assert len(held[1]) == 4
    assert "held out by folder of origin: cat (1 of 5 folders, 4 images)" in caplog.text
    assert "cup" not in caplog.text


def test_the_trainer_holds_out_by_session(tmp_path, photos, caplog):
    from export.train import TrainConfig, train_and_export

    for c, name in enumerate(("cat", "cup")):
        for i in range(10):
            sub = tmp_path / "set" / name / f"clip{i // 2}"
            sub.mkdir(parents=True, exist_ok=True)
            photo = photos["cat" if c == 0 else "espresso"]
            view = np.roll(photo, 37 * i, axis=0)[:, :, ::-1]
            cv2.imwrite(str(sub / f"{i}.jpg"), np.ascontiguousarray(view))
    with caplog.at_level(logging.INFO, logger="export.holdout"):
        report, _ = train_and_export("efficientnet_lite0", tmp_path / "set", tmp_path / "m.onnx",
                                     TrainConfig(epochs=1, views=1, tune_blocks=0, progress=False))
    assert report.heldout_images == 4 and report.train_images == 16
    assert "held out by folder of origin: cat (1 of 5 folders, 2 images), cup (1 of 5" in caplog.text
