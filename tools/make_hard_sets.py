"""Three harder training / test sets, made here from public material on this machine (no
download), for the measurements in docs/TRAINING.md ("Harder sets").

What makes them hard, as a camera's frames are: the objects are small (training: 15-60%
of the frame's height; test: 10-45%), the scenes are busy real photographs, most frames
hold distractor objects of no class, and about a quarter of the test frames show two or
three instances of their class. Train and test never share an object instance, a
background photo or a distractor source.

* ``photo``: coin / face / text, as tools/make_training_set.py (scikit-image's coins,
  Labeled Faces in the Wild subset, printed text), on cluttered photos; distractors are
  crops of other scikit-image photos.
* ``glyph``: ampersand / at / question / percent signs rendered with the DejaVu fonts
  (Debian ``fonts-dejavu-core``): 13 font files to train, the other 9 to test, random
  colours and rotations; distractors are other characters in the same fonts.
* ``shape``: star / arrow / ring drawn with random proportions, rotations and fills
  (train: flat colours; test: tinted textures cut from test photos); distractors are filled
  triangles, rectangles and ellipses.

    python tools/make_hard_sets.py --out DIR [--sets photo glyph shape] [--per-class 60]

writes DIR/<set>/train/<class>/*.jpg (``python -m export --train``) and
DIR/<set>/test/images/*.jpg with DIR/<set>/test/labels.json (COCO, ``realtime.evaluate``).
``--cutouts N`` (after the set exists) also writes DIR/<set>/cutouts/: N transparent PNGs per
class of the training instances alone, as product cutouts come, with the set's training
background frames: a training folder of cutouts for the same test half (glyph and shape);
and DIR/<set>/backdrop/: the same objects on white as JPEGs, as shop photos come.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.make_training_set import (  # noqa: E402
    _background_frame,
    _rgb,
    _write,
    instances,
)

__all__ = ["SETS", "build_cutouts", "build_set", "build_val", "main"]

SETS = {"photo": ("coin", "face", "text"), "glyph": ("ampersand", "at", "question", "percent"),
        "shape": ("arrow", "ring", "star")}
GLYPHS = {"ampersand": "&", "at": "@", "question": "?", "percent": "%"}
DISTRACTOR_GLYPHS = "#$8BKRWgx5"
BACKGROUNDS = {"train": ("grass", "brick", "moon", "camera", "astronaut", "motorcycle_left",
                         "immunohistochemistry"),
               "test": ("gravel", "hubble_deep_field", "rocket", "coffee", "chelsea", "retina",
                        "motorcycle_right")}
DISTRACTOR_PHOTOS = {"train": ("horse", "logo", "cell", "clock_motion"),
                     "test": ("phantom", "microaneurysms", "chessboard_RGB", "color")}
SCALES = {"train": (0.15, 0.6), "test": (0.10, 0.45)}      # object height / frame height
INSTANCES = {"train": (0.8, 0.2, 0.0), "test": (0.72, 0.2, 0.08)}  # P(1, 2, 3 instances)


def _photo(name: str) -> np.ndarray:
    from skimage import data

    if name.startswith("motorcycle_"):
        return _rgb(data.stereo_motorcycle()[0 if name.endswith("left") else 1])
    files = sorted(Path(data.__file__).parent.glob(name + ".*"))
    if files:  # photos that ship with scikit-image but have no loader function
        return _rgb(cv2.imread(str(files[0]), cv2.IMREAD_COLOR)[:, :, ::-1])
    return _rgb(getattr(data, name)())


def _fonts(split: str) -> list[str]:
    fonts = sorted(Path("/usr/share/fonts/truetype/dejavu").glob("*.ttf"))
    if len(fonts) < 4:
        raise SystemExit("the glyph set needs the DejaVu fonts: apt-get install fonts-dejavu-core "
                         "fonts-dejavu-extra")
    k = (len(fonts) * 3) // 5
    return [str(f) for f in (fonts[:k] if split == "train" else fonts[k:])]


def _glyph(char: str, font: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(RGB, mask) of one character, tightly cropped, random colour and rotation."""
    from PIL import Image, ImageDraw, ImageFont

    f = ImageFont.truetype(font, 160)
    img = Image.new("L", (260, 260), 0)
    ImageDraw.Draw(img).text((40, 20), char, font=f, fill=255)
    mask = np.array(img.rotate(float(rng.uniform(-20, 20)), resample=Image.BILINEAR))
    ys, xs = np.nonzero(mask > 64)
    mask = mask[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    color = rng.integers(0, 256, 3)
    rgb = np.empty(mask.shape + (3,), np.uint8)
    rgb[:] = color
    return rgb, mask


def _polygon(kind: str, rng: np.random.Generator) -> np.ndarray:
    """A mask (200x200 canvas, tightly cropped) of one shape of ``kind``."""
    m = np.zeros((200, 200), np.uint8)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == "star":
        n, inner = int(rng.integers(5, 7)), rng.uniform(0.35, 0.55)
        t = angle + np.arange(2 * n) * np.pi / n
        r = np.where(np.arange(2 * n) % 2 == 0, 90, 90 * inner)
        pts = np.stack([100 + r * np.cos(t), 100 + r * np.sin(t)], 1)
        cv2.fillPoly(m, [pts.astype(np.int32)], 255)
    elif kind == "ring":
        a, b = int(rng.uniform(60, 90)), int(rng.uniform(45, 90))
        cv2.ellipse(m, (100, 100), (a, b), float(np.degrees(angle)), 0, 360, 255,
                    int(rng.uniform(0.15, 0.3) * min(a, b)))
    elif kind == "arrow":
        w, head = rng.uniform(0.15, 0.3), rng.uniform(0.35, 0.55)
        pts = np.array([[-1, -w], [1 - head, -w], [1 - head, -2.2 * w], [1, 0],
                        [1 - head, 2.2 * w], [1 - head, w], [-1, w]]) * 90
        c, s = np.cos(angle), np.sin(angle)
        pts = pts @ np.array([[c, s], [-s, c]]) + 100
        cv2.fillPoly(m, [pts.astype(np.int32)], 255)
    elif kind == "triangle":
        t = angle + np.array([0, 2.1, 4.2]) + rng.uniform(-0.4, 0.4, 3)
        cv2.fillPoly(m, [np.stack([100 + 90 * np.cos(t), 100 + 90 * np.sin(t)], 1).astype(np.int32)], 255)
    elif kind == "rectangle":
        box = ((100, 100), (float(rng.uniform(60, 170)), float(rng.uniform(40, 120))),
               float(np.degrees(angle)))
        cv2.fillPoly(m, [cv2.boxPoints(box).astype(np.int32)], 255)
    else:  # ellipse
        cv2.ellipse(m, (100, 100), (int(rng.uniform(50, 90)), int(rng.uniform(25, 60))),
                    float(np.degrees(angle)), 0, 360, 255, -1)
    ys, xs = np.nonzero(m)
    return m[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _fill(mask: np.ndarray, split: str, textures: list[np.ndarray], rng: np.random.Generator
          ) -> np.ndarray:
    """Train: a flat random colour; test: a texture cut from a test photo, tinted half-way
    towards a random colour (so that it stands out of a background of the same photo)."""
    h, w = mask.shape
    if split == "train":
        rgb = np.empty((h, w, 3), np.uint8)
        rgb[:] = rng.integers(0, 256, 3)
        return rgb
    tex = textures[int(rng.integers(len(textures)))]
    th, tw = tex.shape[:2]
    y, x = int(rng.integers(0, th - h + 1)), int(rng.integers(0, tw - w + 1))
    tint = rng.integers(0, 256, 3).astype(np.float64)
    return (0.5 * tex[y:y + h, x:x + w] + 0.5 * tint).astype(np.uint8)


class _Maker:
    """Objects (RGB, mask) of every class and distractors for one set and split."""

    def __init__(self, kind: str, split: str, rng: np.random.Generator, like: str | None = None):
        self.kind, self.split, self.rng = kind, split, rng
        self.like = like or split  # whose scales and instance counts the frames take
        self.bgs = [_photo(n) for n in BACKGROUNDS[split]]
        self.fonts = _fonts(split) if kind == "glyph" else []
        self.photos = instances(split, rng) if kind == "photo" else {}
        self.textures = [cv2.resize(_photo(n), (400, 400)) for n in BACKGROUNDS["test"][:4]]
        self.distractor_photos = [_photo(n) for n in DISTRACTOR_PHOTOS[split]]

    def obj(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        if self.kind == "photo":
            objs = self.photos[name]
            rgb = objs[int(rng.integers(len(objs)))]
            return rgb, np.full(rgb.shape[:2], 255, np.uint8)
        if self.kind == "glyph":
            return _glyph(GLYPHS[name], self.fonts[int(rng.integers(len(self.fonts)))], rng)
        mask = _polygon(name, rng)
        return _fill(mask, self.split, self.textures, rng), mask

    def distractor(self) -> tuple[np.ndarray, np.ndarray]:
        rng = self.rng
        if self.kind == "glyph":
            char = DISTRACTOR_GLYPHS[int(rng.integers(len(DISTRACTOR_GLYPHS)))]
            return _glyph(char, self.fonts[int(rng.integers(len(self.fonts)))], rng)
        if self.kind == "shape":
            mask = _polygon(("triangle", "rectangle", "ellipse")[int(rng.integers(3))], rng)
            return _fill(mask, self.split, self.textures, rng), mask
        img = self.distractor_photos[int(rng.integers(len(self.distractor_photos)))]
        h, w = img.shape[:2]
        ch, cw = int(h * rng.uniform(0.2, 0.5)), int(w * rng.uniform(0.2, 0.5))
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        return crop, np.full(crop.shape[:2], 255, np.uint8)

    def background(self) -> np.ndarray:
        return _background_frame(self.bgs, self.rng)

    def paste(self, frame: np.ndarray, item, height: float, taken: list) -> list[int] | None:
        """Paste (RGB, mask) at ``height`` x the frame's height where it overlaps nothing in
        ``taken``; its COCO box, or None when no free place was found."""
        rgb, mask = item
        fh, fw = frame.shape[:2]
        oh = max(8, int(fh * height))
        ow = max(8, min(fw - 2, int(oh * rgb.shape[1] / rgb.shape[0])))
        oh = min(fh - 2, oh)
        interp = cv2.INTER_AREA if oh < rgb.shape[0] else cv2.INTER_CUBIC
        patch = cv2.resize(rgb, (ow, oh), interpolation=interp)
        alpha = cv2.resize(mask, (ow, oh), interpolation=cv2.INTER_LINEAR)[..., None] / 255.0
        if self.rng.random() < 0.5:
            patch, alpha = patch[:, ::-1], alpha[:, ::-1]
        for _ in range(30):
            x, y = int(self.rng.integers(0, fw - ow + 1)), int(self.rng.integers(0, fh - oh + 1))
            if all(x + ow <= a or a + c <= x or y + oh <= b or b + d <= y for a, b, c, d in taken):
                region = frame[y:y + oh, x:x + ow].astype(np.float64)
                frame[y:y + oh, x:x + ow] = (alpha * patch + (1 - alpha) * region).astype(np.uint8)
                taken.append([x, y, ow, oh])
                return [x, y, ow, oh]
        return None

    def frame(self, name: str | None) -> tuple[np.ndarray, list[list[int]]]:
        """A frame with 1-3 instances of class ``name`` (None: none) and 0-2 distractors."""
        rng = self.rng
        frame, taken, boxes = self.background(), [], []
        lo, hi = SCALES[self.like]
        if name is not None:
            n = 1 + int(rng.choice(3, p=INSTANCES[self.like]))
            for _ in range(n):
                box = self.paste(frame, self.obj(name), rng.uniform(lo, hi / np.sqrt(len(boxes) + 1)), taken)
                if box is not None:
                    boxes.append(box)
        for _ in range(int(rng.choice(3, p=(0.35, 0.4, 0.25)))):
            self.paste(frame, self.distractor(), rng.uniform(0.1, 0.35), taken)
        return frame, boxes


def build_set(kind: str, out: Path, per_class: int = 60, test_per_class: int = 20,
              seed: int = 0) -> dict:
    """Write ``out``/train/<class>/ and ``out``/test/ (images, labels.json) for set ``kind``."""
    classes = SETS[kind]
    rng = np.random.default_rng(seed)
    train = _Maker(kind, "train", rng)
    # the training frames' boxes, outside train/ (the trainer never reads them): for
    # choosing box settings without touching the test half
    seen = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)]}
    for k, name in enumerate((*classes, None)):
        for i in range(per_class):
            frame, boxes = train.frame(name)
            label = name or "background"
            _write(out / "train" / label / f"{label}_{i:03d}.jpg", frame)
            _add(seen, f"{label}/{label}_{i:03d}.jpg", frame, k + 1, boxes)
    (out / "train_labels.json").write_text(json.dumps(seen, indent=1), encoding="utf-8")
    coco = _write_split(_Maker(kind, "test", rng), classes, out / "test", test_per_class)
    multi = sum(1 for img in coco["images"]
                if sum(a["image_id"] == img["id"] for a in coco["annotations"]) > 1)
    return {"train": per_class * (len(classes) + 1), "test": len(coco["images"]), "multi": multi}


def build_val(kind: str, out: Path, per_class: int = 10, seed: int = 1) -> int:
    """Write ``out``/val/ (images, labels.json): frames made of the TRAINING material
    (instances, backgrounds, distractors) at the test half's scales and instance counts, with
    their own seed: for choosing runtime settings (e.g. tiles' merge rule) on frames that are
    not the test half. The model has seen these instances, so val figures run high."""
    classes = SETS[kind]
    maker = _Maker(kind, "train", np.random.default_rng(seed), like="test")
    return len(_write_split(maker, classes, out / "val", per_class)["images"])


def build_cutouts(kind: str, out: Path, per_class: int = 60, seed: int = 5) -> int:
    """Write ``out``/cutouts/<class>/*.png: ``per_class`` training instances each as RGBA
    (transparent around the object, 5-30% of its side each way, black under the
    transparency, as many tools save it) and ``out``/cutouts/background/ (a copy of the
    set's training background frames); and ``out``/backdrop/: the same objects composed
    onto white and saved as JPEG (quality 90), as a shop photographs them, with the same
    backgrounds."""
    import shutil

    if kind == "photo":
        raise ValueError("--cutouts: the photo set's instances are rectangular photos; glyph or shape")
    rng = np.random.default_rng(seed)
    maker, n = _Maker(kind, "train", rng), 0
    for name in SETS[kind]:
        (out / "cutouts" / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            rgb, mask = maker.obj(name)
            (h, w), m = mask.shape, [int(rng.uniform(0.05, 0.3) * s) for s in (*mask.shape, *mask.shape)]
            rgba = np.zeros((h + m[0] + m[2], w + m[1] + m[3], 4), np.uint8)
            rgba[m[0]:m[0] + h, m[1]:m[1] + w, :3] = rgb[:, :, ::-1]
            rgba[m[0]:m[0] + h, m[1]:m[1] + w, 3] = mask
            rgba[rgba[:, :, 3] == 0, :3] = 0
            cv2.imwrite(str(out / "cutouts" / name / f"{name}_{i:03d}.png"), rgba)
            a = rgba[:, :, 3:] / 255.0
            (out / "backdrop" / name).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(out / "backdrop" / name / f"{name}_{i:03d}.jpg"),
                        (a * rgba[:, :, :3] + (1 - a) * 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
            n += 1
    for folder in ("cutouts", "backdrop"):
        shutil.copytree(out / "train" / "background", out / folder / "background", dirs_exist_ok=True)
    return n


def _write_split(maker: _Maker, classes: tuple[str, ...], folder: Path, per_class: int) -> dict:
    """``per_class`` frames of each class and of the background from ``maker`` into
    ``folder``/images with their COCO ``folder``/labels.json; returns the COCO dict."""
    coco = {"images": [], "annotations": [],
            "categories": [{"id": k + 1, "name": n} for k, n in enumerate(classes)]}
    for k, name in enumerate((*classes, None)):
        for i in range(per_class):
            frame, boxes = maker.frame(name)
            file_name = f"{name or 'background'}_{i:03d}.jpg"
            _write(folder / "images" / file_name, frame)
            _add(coco, file_name, frame, k + 1, boxes)
    (folder / "labels.json").write_text(json.dumps(coco, indent=1), encoding="utf-8")
    return coco


def _add(coco: dict, file_name: str, frame: np.ndarray, category: int, boxes: list) -> None:
    """Append one image and its boxes (COCO [x, y, w, h]) to a COCO dict."""
    image_id = len(coco["images"]) + 1
    coco["images"].append({"id": image_id, "file_name": file_name,
                           "width": frame.shape[1], "height": frame.shape[0]})
    for b in boxes:
        coco["annotations"].append({"id": len(coco["annotations"]) + 1, "image_id": image_id,
                                    "category_id": category, "bbox": b, "area": b[2] * b[3],
                                    "iscrowd": 0})


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="folder to write <set>/train, <set>/test into")
    p.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS))
    p.add_argument("--per-class", type=int, default=60, help="training images per class")
    p.add_argument("--test-per-class", type=int, default=20, help="test images per class")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--val-only", type=int, default=0, metavar="N",
                   help="only write <set>/val: N frames per class from the training material "
                        "at test scales (tools/eval_tiles.py chooses its rule on them)")
    p.add_argument("--cutouts", type=int, default=0, metavar="N",
                   help="only write <set>/cutouts: N transparent PNGs per class of training "
                        "instances and the training backgrounds (glyph, shape)")
    args = p.parse_args(argv)
    for kind in args.sets:
        if args.cutouts:
            n = build_cutouts(kind, args.out / kind, args.cutouts, args.seed + 5)
            print(f"{kind}: {n} cutouts in {args.out / kind / 'cutouts'} and on white in "
                  f"{args.out / kind / 'backdrop'}")
            continue
        if args.val_only:
            n = build_val(kind, args.out / kind, args.val_only, args.seed + 1)
            print(f"{kind}: {n} validation frames in {args.out / kind / 'val'}")
            continue
        n = build_set(kind, args.out / kind, args.per_class, args.test_per_class, args.seed)
        print(f"{kind}: {n['train']} training images, {n['test']} test images "
              f"({n['multi']} with several instances) in {args.out / kind}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
