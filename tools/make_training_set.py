"""A small labelled training and test set of classes ImageNet does not name, from the
real photos that ship with scikit-image (no download), for docs/TRAINING.md.

Classes: ``coin`` (the 24 coins of ``data.coins()``, found by a watershed),
``face`` (the 100 face photos of ``data.lfw_subset()``, Labeled Faces in the Wild),
``text`` (crops of printed text: ``data.page()`` to train, ``data.text()`` to test)
and ``background`` (the background photos alone). Every object image is one object
instance pasted at a random place and scale onto a random crop of a background photo.
Train and test use different instances (even / odd coins, faces 0-59 / 60-99, the
two text photos) and different background photos, so the test says how the model does
on things it has never seen.

    python tools/make_training_set.py --out DIR [--per-class 60] [--test-per-class 20]

writes DIR/train/<class>/*.jpg (the layout ``python -m export --train`` reads) and
DIR/test/images/*.jpg with DIR/test/labels.json (COCO boxes, ``realtime.evaluate``);
background test frames are in the JSON with no annotations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

__all__ = ["CLASSES", "build", "main"]

CLASSES = ("coin", "face", "text")
TRAIN_BACKGROUNDS = ("grass", "brick", "moon", "immunohistochemistry")
TEST_BACKGROUNDS = ("gravel", "hubble_deep_field", "rocket", "coffee")
FRAMES = ((240, 320), (320, 240), (288, 288))  # (H, W)


def _rgb(img: np.ndarray) -> np.ndarray:
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return np.ascontiguousarray(img[..., :3])


def _coins() -> list[np.ndarray]:
    """Each coin of data.coins() with a 4-pixel margin, found by a watershed on edges."""
    from scipy import ndimage as ndi
    from skimage import data, filters, measure, segmentation

    img = data.coins()
    markers = np.zeros_like(img)
    markers[img < 30], markers[img > 150] = 1, 2
    mask = ndi.binary_fill_holes(segmentation.watershed(filters.sobel(img), markers) - 1)
    out = []
    for r in sorted(measure.regionprops(measure.label(mask)), key=lambda r: r.bbox):
        if r.area > 300:
            y1, x1, y2, x2 = r.bbox
            out.append(_rgb(img[max(0, y1 - 4):y2 + 4, max(0, x1 - 4):x2 + 4]))
    return out


def _texts(name: str, count: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Random crops (40-70% of the height, 1-2x as wide) of a photo of printed text."""
    from skimage import data

    img = _rgb(getattr(data, name)())
    h, w = img.shape[:2]
    out = []
    for _ in range(count):
        ch = int(h * rng.uniform(0.4, 0.7))
        cw = min(w, int(ch * rng.uniform(1.0, 2.0)))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        out.append(img[y:y + ch, x:x + cw])
    return out


def instances(split: str, rng: np.random.Generator) -> dict[str, list[np.ndarray]]:
    """class -> object crops (RGB) for ``split`` ("train" or "test"), disjoint between splits."""
    from skimage import data

    coins = _coins()
    faces = [_rgb(f) for f in data.lfw_subset()[:100]]
    if split == "train":
        return {"coin": coins[0::2], "face": faces[:60], "text": _texts("page", 30, rng)}
    return {"coin": coins[1::2], "face": faces[60:], "text": _texts("text", 30, rng)}


def backgrounds(split: str) -> list[np.ndarray]:
    from skimage import data

    return [_rgb(getattr(data, n)()) for n in (TRAIN_BACKGROUNDS if split == "train"
                                               else TEST_BACKGROUNDS)]


def _background_frame(bgs: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """A random crop (40-100% of the side) of a random background, at a random frame size."""
    bg = bgs[int(rng.integers(len(bgs)))]
    fh, fw = FRAMES[int(rng.integers(len(FRAMES)))]
    h, w = bg.shape[:2]
    s = rng.uniform(0.4, 1.0)
    ch, cw = int(h * s), int(min(w, h * s * fw / fh))
    y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    return cv2.resize(bg[y:y + ch, x:x + cw], (fw, fh), interpolation=cv2.INTER_AREA)


def composite(obj: np.ndarray, bgs: list[np.ndarray], rng: np.random.Generator
              ) -> tuple[np.ndarray, list[int]]:
    """Paste ``obj`` at 30-65% of the frame's height at a random place: (RGB frame, COCO
    bbox [x, y, w, h])."""
    frame = _background_frame(bgs, rng)
    fh, fw = frame.shape[:2]
    oh = int(fh * rng.uniform(0.3, 0.65))
    ow = min(fw - 2, max(8, int(oh * obj.shape[1] / obj.shape[0])))
    oh = min(fh - 2, oh)
    patch = cv2.resize(obj, (ow, oh), interpolation=cv2.INTER_CUBIC if oh > obj.shape[0]
                       else cv2.INTER_AREA)
    if rng.random() < 0.5:
        patch = patch[:, ::-1]
    x, y = int(rng.integers(0, fw - ow + 1)), int(rng.integers(0, fh - oh + 1))
    frame[y:y + oh, x:x + ow] = patch
    return frame, [x, y, ow, oh]


def _write(path: Path, rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError(f"cannot write {path}")


def build(out: Path, per_class: int = 60, test_per_class: int = 20, seed: int = 0) -> dict:
    """Write the train folder and the COCO test set under ``out``; return counts."""
    rng = np.random.default_rng(seed)
    train_objs, train_bgs = instances("train", rng), backgrounds("train")
    for name in CLASSES:
        objs = train_objs[name]
        for i in range(per_class):
            frame, _ = composite(objs[i % len(objs)], train_bgs, rng)
            _write(out / "train" / name / f"{name}_{i:03d}.jpg", frame)
    for i in range(per_class):
        _write(out / "train" / "background" / f"background_{i:03d}.jpg",
               _background_frame(train_bgs, rng))

    test_objs, test_bgs = instances("test", rng), backgrounds("test")
    coco = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(CLASSES)]}
    for k, name in enumerate(CLASSES):
        objs = test_objs[name]
        for i in range(test_per_class):
            frame, bbox = composite(objs[i % len(objs)], test_bgs, rng)
            image_id = len(coco["images"]) + 1
            file_name = f"{name}_{i:03d}.jpg"
            _write(out / "test" / "images" / file_name, frame)
            coco["images"].append({"id": image_id, "file_name": file_name,
                                   "width": frame.shape[1], "height": frame.shape[0]})
            coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                        "category_id": k + 1, "bbox": bbox, "area": bbox[2] * bbox[3],
                                        "iscrowd": 0})
    for i in range(test_per_class):
        frame = _background_frame(test_bgs, rng)
        file_name = f"background_{i:03d}.jpg"
        _write(out / "test" / "images" / file_name, frame)
        coco["images"].append({"id": len(coco["images"]) + 1, "file_name": file_name,
                               "width": frame.shape[1], "height": frame.shape[0]})
    (out / "test" / "labels.json").write_text(json.dumps(coco, indent=1), encoding="utf-8")
    return {"train": per_class * (len(CLASSES) + 1), "test": len(coco["images"])}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write train/ and test/ into")
    p.add_argument("--per-class", type=int, default=60, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=20, help="test images per class")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    counts = build(args.out, args.per_class, args.test_per_class, args.seed)
    print(f"wrote {counts['train']} training images to {args.out / 'train'} and "
          f"{counts['test']} test images with {args.out / 'test' / 'labels.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
