"""Labelled localization set from real photos, and the settings search behind the defaults.

Objects (hand-annotated boxes in untouched scikit-image photos, x2/y2 exclusive):
chelsea (cat), coffee (espresso), stereo_motorcycle left (moped), camera (tripod).
Each object is also cut out (its box plus a random margin) and pasted at a random
position and scale onto other real photos (grass, gravel, brick, rocket,
astronaut, Hubble deep field) resized to 16:9, 4:3 and 3:4 frames, so its true
box is known. Backgrounds are split in two: settings are chosen on the "tune"
half and reported again on the "held-out" half.

Metrics: top-1 localization accuracy (the top class is one of the object's
accepted classes AND the best box has IoU >= 0.5 with the truth), mean IoU of
that box, classification accuracy, and GT-known localization (IoU >= 0.5 ignoring
the class).

    python tools/eval_localization.py [--model efficientnet_lite0] [--json out.json]

Prints markdown tables (pasted into docs/LOCALIZATION.md).
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from realtime.model.accuracy import iou
from realtime.model.boxes import boxes_from_cam, scale_boxes
from realtime.model.cam import compute_cams, normalize_cams, softmax
from realtime.model.engine import Localizer
from realtime.model.preprocess import normalize_to_tensor, resize_frame, working_size

# name -> (skimage loader, box [x1, y1, x2, y2], accepted ImageNet labels)
OBJECTS = {
    "cat": ("chelsea", (0, 0, 395, 300), ("Egyptian cat", "tabby", "tiger cat")),
    "espresso": ("coffee", (75, 18, 480, 390), ("espresso", "cup")),
    "moped": ("motorcycle", (92, 70, 686, 452), ("moped", "motor scooter")),
    "tripod": ("camera", (228, 138, 408, 506), ("tripod",)),
}
TUNE_BACKGROUNDS = ("grass", "brick", "astronaut")
HELD_OUT_BACKGROUNDS = ("gravel", "rocket", "hubble_deep_field")
FRAMES = ((720, 1280), (480, 640), (640, 480))  # (H, W): 16:9, 4:3, portrait 3:4
SCALES = (0.3, 0.5, 0.75)  # object's box height / frame height (before fitting)
SIZES = ("sq224", 160, 192, 224, 256, 288, 320)  # sq224: squashed; int: shorter side
THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)
RULES = ("largest", "mass", "merge")
NORMS = ("max", "minmax")
BASELINE = {"size": "sq224", "threshold": 0.2, "rule": "largest", "norm": "minmax",
            "upsample": 32}  # the CAM paper: 224x224, CAM upsampled to 224, 20%, largest


@dataclass
class Sample:
    name: str
    split: str          # "photo", "tune" or "held-out"
    image: np.ndarray   # BGR uint8
    box: tuple[int, int, int, int]
    accepted: tuple[str, ...]


def load_photo(name: str) -> np.ndarray:
    """A scikit-image photo as BGR uint8 (grayscale expanded)."""
    from skimage import data

    img = data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(data, name)()
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    return cv2.cvtColor(img[..., :3], cv2.COLOR_RGB2BGR)


def cover(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Resize and centre-crop ``img`` to fill h x w."""
    s = max(h / img.shape[0], w / img.shape[1])
    r = cv2.resize(img, (max(w, round(img.shape[1] * s)), max(h, round(img.shape[0] * s))),
                   interpolation=cv2.INTER_AREA)
    y, x = (r.shape[0] - h) // 2, (r.shape[1] - w) // 2
    return r[y:y + h, x:x + w].copy()


def paste(bg: np.ndarray, photo: np.ndarray, box: tuple[int, int, int, int], scale: float,
          rng: np.random.Generator) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste the object (box + random margin) onto ``bg``; return image and true box."""
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    m = rng.uniform(0.0, 0.15, 4)
    cx1 = max(0, int(x1 - m[0] * bw))
    cy1 = max(0, int(y1 - m[1] * bh))
    cx2 = min(photo.shape[1], int(x2 + m[2] * bw))
    cy2 = min(photo.shape[0], int(y2 + m[3] * bh))
    crop = photo[cy1:cy2, cx1:cx2]
    fh, fw = bg.shape[:2]
    s = scale * fh / bh
    s = min(s, fw / crop.shape[1], fh / crop.shape[0])
    ch, cw = max(1, round(crop.shape[0] * s)), max(1, round(crop.shape[1] * s))
    crop = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA)
    px, py = int(rng.integers(0, fw - cw + 1)), int(rng.integers(0, fh - ch + 1))
    out = bg.copy()
    out[py:py + ch, px:px + cw] = crop
    tb = (px + round((x1 - cx1) * s), py + round((y1 - cy1) * s),
          px + round((x2 - cx1) * s), py + round((y2 - cy1) * s))
    return out, (max(0, tb[0]), max(0, tb[1]), min(fw, tb[2]), min(fh, tb[3]))


def build_samples(seed: int = 0) -> list[Sample]:
    """The whole labelled set, deterministic for a seed."""
    rng = np.random.default_rng(seed)
    photos = {k: load_photo(v[0]) for k, v in OBJECTS.items()}
    samples = [Sample(k, "photo", photos[k], v[1], v[2]) for k, v in OBJECTS.items()]
    for split, bgs in (("tune", TUNE_BACKGROUNDS), ("held-out", HELD_OUT_BACKGROUNDS)):
        for bg_name, (fh, fw), scale, (k, v) in itertools.product(
                bgs, FRAMES, SCALES, OBJECTS.items()):
            bg = cover(load_photo(bg_name), fh, fw)
            img, box = paste(bg, photos[k], v[1], scale, rng)
            samples.append(Sample(f"{k}@{bg_name}", split, img, box, v[2]))
    return samples


def run_network(loc: Localizer, img: np.ndarray, size: str | int) -> tuple[int, float, np.ndarray]:
    """(top-1 class, its probability, its raw CAM) for one input-size setting."""
    info = loc.info
    h, w = img.shape[:2]
    if size == "sq224":
        hw = (224, 224)
    else:
        long_side = round(int(size) * max(h, w) / min(h, w))
        hw = working_size(h, w, long_side, info.stride)
    x = normalize_to_tensor(resize_frame(img, hw), info.mean, info.std, info.color == "RGB")
    logits, feats = loc.infer(x)
    probs = softmax(logits[0])
    top = int(np.argmax(probs))
    return top, float(probs[top]), compute_cams(feats[0], loc.weight, np.array([top]))[0]


def score(records: list[dict], cfg: dict) -> dict:
    """Metrics of one box setting over the cached network outputs of one size."""
    hits = ious = cls = known = 0.0
    for r in records:
        cam = normalize_cams(r["cam"][None], cfg["norm"])[0]
        cells, _ = boxes_from_cam(cam, cfg["threshold"], cfg["rule"],
                                  upsample=cfg.get("upsample", 4))
        b = scale_boxes(cells[:1], cam.shape, *r["frame"])
        v = iou(b[0], r["box"]) if len(b) else 0.0
        ok = r["label"] in r["accepted"]
        hits += ok and v >= 0.5
        ious += v
        cls += ok
        known += v >= 0.5
    n = max(1, len(records))
    return {"loc_acc": hits / n, "miou": ious / n, "cls_acc": cls / n, "known_loc": known / n,
            "n": len(records)}


def _time_720p(loc: Localizer, size: str | int, repeat: int = 7) -> tuple[str, float]:
    """(input WxH, median ms of the model alone) for a 1280x720 frame at ``size``."""
    import time

    frame = load_photo("astronaut")
    frame = cover(frame, 720, 1280)
    hw = (224, 224) if size == "sq224" else working_size(
        720, 1280, round(int(size) * 16 / 9), loc.info.stride)
    x = normalize_to_tensor(resize_frame(frame, hw), loc.info.mean, loc.info.std, True)
    loc.infer(x)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        loc.infer(x)
        times.append((time.perf_counter() - t0) * 1000)
    return f"{hw[1]}x{hw[0]}", float(np.median(times))


def evaluate(model: str, seed: int = 0) -> dict:
    """Every setting on every sample: {split: {(size, threshold, rule, norm): metrics}}."""
    loc = Localizer(model, device="cpu")
    samples = build_samples(seed)
    cache: dict[str | int, list[dict]] = {}
    for size in SIZES:
        cache[size] = []
        for s in samples:
            top, p, cam = run_network(loc, s.image, size)
            cache[size].append({"split": s.split, "cam": cam, "box": s.box,
                                "label": loc.info.labels[top], "accepted": s.accepted,
                                "frame": s.image.shape[:2], "name": s.name, "p": p})
    results: dict[str, dict] = {}
    for split in ("tune", "held-out", "photo", "all"):
        results[split] = {}
        for size in SIZES:
            recs = [r for r in cache[size] if split == "all" or r["split"] == split]
            for th, rule, norm in itertools.product(THRESHOLDS, RULES, NORMS):
                cfg = {"threshold": th, "rule": rule, "norm": norm}
                results[split][(size, th, rule, norm)] = score(recs, cfg)
        base = [r for r in cache["sq224"] if split == "all" or r["split"] == split]
        results[split]["baseline"] = score(base, BASELINE)
    return {"results": results, "timing": {size: _time_720p(loc, size) for size in SIZES},
            "n": {k: sum(1 for s in samples if k in ("all", s.split))
                                      for k in ("tune", "held-out", "photo", "all")}}


def _row(name: str, m: dict) -> str:
    return (f"| {name} | {m['loc_acc']:.3f} | {m['miou']:.3f} | {m['cls_acc']:.3f} | "
            f"{m['known_loc']:.3f} |")


def report(out: dict) -> tuple[str, dict]:
    """Markdown tables and the best setting (chosen on the tune split)."""
    res = out["results"]

    def key(k: tuple) -> tuple[float, float]:
        return (res["tune"][k]["loc_acc"], res["tune"][k]["miou"])

    grid = [k for k in res["tune"] if k != "baseline"]
    best = max(grid, key=key)
    head = ("| setting | top-1 loc acc | mean IoU | class acc | GT-known loc |\n"
            "|---|---|---|---|---|")
    lines = [f"Samples: {out['n']}", "", ("### Input size (tune split; best threshold, rule and "
             "normalisation for each size)"), "", head]
    for size in SIZES:
        k = max((g for g in grid if g[0] == size), key=key)
        lines.append(_row(f"{size} (th {k[1]}, {k[2]}, {k[3]})", res["tune"][k]))
    lines += ["", (f"### Input size at threshold {best[1]}, {best[2]}, {best[3]}, every split "
              "(and the model's median time on one 1280x720 frame)"), "",
              ("| shorter side | 720p input | infer ms | tune loc acc | held-out loc acc | "
              "all loc acc | all mean IoU |"), "|---|---|---|---|---|---|---|"]
    for size in SIZES:
        k = (size, *best[1:])
        t = out["timing"][size]
        lines.append(f"| {size} | {t[0]} | {t[1]:.1f} | {res['tune'][k]['loc_acc']:.3f} | "
                     f"{res['held-out'][k]['loc_acc']:.3f} | {res['all'][k]['loc_acc']:.3f} | "
                     f"{res['all'][k]['miou']:.3f} |")
    lines += ["", f"### Box rule at size {best[0]}, threshold {best[1]}, every split", "",
              "| rule | tune loc acc / mIoU | held-out loc acc / mIoU | all loc acc / mIoU |",
              "|---|---|---|---|"]
    for rule in RULES:
        k = (best[0], best[1], rule, best[3])
        lines.append(f"| {rule} | " + " | ".join(
            f"{res[sp][k]['loc_acc']:.3f} / {res[sp][k]['miou']:.3f}"
            for sp in ("tune", "held-out", "all")) + " |")
    lines += ["", f"### Threshold x rule at size {best[0]}, normalisation {best[3]} (tune)", "",
              head]
    for th, rule in itertools.product(THRESHOLDS, RULES):
        lines.append(_row(f"th {th}, {rule}", res["tune"][(best[0], th, rule, best[3])]))
    lines += ["", "### Normalisation at the best size, threshold and rule (tune)", "", head]
    for norm in NORMS:
        lines.append(_row(norm, res["tune"][(best[0], best[1], best[2], norm)]))
    lines += ["", "### Chosen setting vs the CAM paper's recipe (every split)", "",
              "| split | setting | top-1 loc acc | mean IoU | class acc | GT-known loc |",
              "|---|---|---|---|---|---|"]
    for split in ("tune", "held-out", "photo", "all"):
        for name, m in (("paper: sq224, 20%, largest", res[split]["baseline"]),
                        (f"ours: {best[0]}, {best[1]}, {best[2]}, {best[3]}", res[split][best])):
            lines.append(f"| {split} ({out['n'][split]}) " + _row(name, m))
    chosen = dict(zip(("size", "threshold", "rule", "norm"), best, strict=True))
    return "\n".join(lines), chosen


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    ap.add_argument("--model", default="efficientnet_lite0", help="zoo name or .onnx path")
    ap.add_argument("--seed", type=int, default=0, help="seed of the pasted samples")
    ap.add_argument("--json", type=Path, default=None, help="also write all figures here")
    ap.add_argument("--dump", type=Path, default=None, help="write the samples as PNGs here")
    args = ap.parse_args(argv)
    if args.dump:
        args.dump.mkdir(parents=True, exist_ok=True)
        for i, s in enumerate(build_samples(args.seed)):
            img = s.image.copy()
            cv2.rectangle(img, s.box[:2], (s.box[2] - 1, s.box[3] - 1), (0, 255, 0), 2)
            cv2.imwrite(str(args.dump / f"{i:03d}_{s.split}_{s.name}.png"), img)
    out = evaluate(args.model, args.seed)
    text, chosen = report(out)
    print(text)
    print(f"\nchosen: {chosen}")
    if args.json:
        flat = {split: {"|".join(map(str, k)) if isinstance(k, tuple) else k: v
                        for k, v in d.items()} for split, d in out["results"].items()}
        args.json.write_text(json.dumps({"n": out["n"], "chosen": chosen, "results": flat},
                                        indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
