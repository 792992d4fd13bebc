"""Where a trained model's top-1 goes wrong on a hard set's frames (right / background /
another class), and what lowering the background logit by d would do (docs/TRAINING.md).

    python tools/class_errors.py --root sets --split val --sets photo glyph shape

Diagnostic only: it reads ``Localizer.infer``'s logits of each frame (untiled) and changes
nothing in the model.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main", "set_logits"]

OFFSETS = (0.0, 0.5, 1.0, 1.5, 2.0, 3.0)


def set_logits(root: Path, split: str) -> tuple[np.ndarray, np.ndarray, int]:
    """(logits per frame, true class per frame, background class id) of ``root``/``split``."""
    import cv2

    from realtime import Localizer
    from realtime.evaluate import load_coco

    loc = Localizer(root / "m.onnx", device="cpu")
    bg = loc.info.background
    if bg is None:
        raise SystemExit(f"{root / 'm.onnx'} has no background class")
    samples = load_coco(root / split / "labels.json", root / split / "images",
                        list(loc.info.labels))
    logits, truth, seen = [], [], set()
    for s in samples:
        if s.path in seen:  # a frame with several instances has one sample per box
            continue
        seen.add(s.path)
        x, _ = loc.prepare(cv2.imread(str(s.path), cv2.IMREAD_COLOR))
        logits.append(loc.infer(x)[0][0])
        truth.append(bg if s.class_id is None else s.class_id)
    return np.array(logits), np.array(truth), bg


def report(name: str, logits: np.ndarray, truth: np.ndarray, bg: int) -> list[str]:
    pred, obj = logits.argmax(1), truth != bg
    lines = [f"{name}: {len(truth)} frames ({int(obj.sum())} with an object)",
             f"  object frames: right {np.mean(pred[obj] == truth[obj]):.3f}, background "
             f"{np.mean(pred[obj] == bg):.3f}, another class "
             f"{np.mean((pred[obj] != bg) & (pred[obj] != truth[obj])):.3f}; background "
             f"frames right {np.mean(pred[~obj] == bg):.3f}"]
    for d in OFFSETS:
        moved = logits.copy()
        moved[:, bg] -= d
        p = moved.argmax(1)
        lines.append(f"  background logit -{d:<3}: all {np.mean(p == truth):.3f}, object frames "
                     f"{np.mean(p[obj] == truth[obj]):.3f}, background frames "
                     f"{np.mean(p[~obj] == bg):.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--sets", nargs="+", default=["photo", "glyph", "shape"])
    args = p.parse_args(argv)
    for name in args.sets:
        print("\n".join(report(f"{name} {args.split}", *set_logits(args.root / name, args.split))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
