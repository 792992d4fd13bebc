"""Train on each set of tools/make_hard_sets.py and measure the model on its test half.

For every set: ``export --train`` as the CLI runs it (default flags unless ``--set``
overrides a TrainConfig field), the training time, the trainer's held-out estimate, then
``realtime.evaluate``'s figures on the test half and, on the test frames with two or
three instances, how many of the instances get a box of their own (IoU >= 0.5 with a
distinct box of the top class, at the model's threshold: the runtime's view).

    python tools/make_hard_sets.py --out sets
    python tools/eval_sets.py --root sets [--sets photo glyph shape] [--set views=6 ...]
        [--imgsz 448 640]    # the same model also evaluated at these working sizes

Each evaluation also splits the object frames by the height of their largest true box
(share of the frame's height: up to 15%, 15-25%, above): top-1 class and top-1
localization at the model's threshold in each.

The test halves are only measured; nothing here chooses a setting from them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["by_height", "instance_recall", "main", "run_set"]


def instance_recall(loc, samples) -> tuple[int, int, int]:
    """(instances, instances with a box of their own, frames) over the samples with two or
    more true boxes: boxes of the top class at the Localizer's threshold, matched greedily."""
    from realtime.model.accuracy import iou

    found = total = frames = 0
    for s in samples:
        if s.class_id is None or len(s.boxes) < 2:
            continue
        res = loc(cv2.imread(str(s.path)))
        frames += 1
        total += len(s.boxes)
        if not len(res.class_ids) or int(res.class_ids[0]) != s.class_id:
            continue
        free = list(res.boxes[0])
        for t in s.boxes:
            scores = [iou(b, t) for b in free]
            if scores and max(scores) >= 0.5:
                free.pop(int(np.argmax(scores)))
                found += 1
    return total, found, frames


SWEEP = np.round(np.arange(0.05, 1.0, 0.05), 2)


def loc_curve(loc, samples) -> np.ndarray:
    """Top-1 localization (top class right, a box of it with IoU >= 0.5) at every threshold
    of ``SWEEP``, with the runtime's box rule: what a user gets at a fixed threshold."""
    from realtime.model.accuracy import best_iou
    from realtime.model.boxes import boxes_from_cam, scale_boxes
    from realtime.model.cam import compute_cams, normalize_cams, softmax

    hits = []
    for s in samples:
        if s.class_id is None:
            continue
        frame = cv2.imread(str(s.path))
        x, geo = loc.prepare(frame)
        logits, feats = loc.infer(x)
        pred = int(np.argmax(softmax(logits[0])))
        cam = normalize_cams(compute_cams(feats[0], loc.weight, np.array([pred])), loc.normalize)[0]
        row = []
        for t in SWEEP:
            cells, _ = boxes_from_cam(cam, float(t), loc.box_rule, loc.min_area, loc.max_boxes)
            row.append(pred == s.class_id and
                       best_iou(scale_boxes(cells, cam.shape, geo.frame_h, geo.frame_w), s.boxes) >= 0.5)
        hits.append(row)
    return np.mean(np.array(hits, np.float64), axis=0)


HEIGHTS = (0.15, 0.25)  # bucket edges of by_height, shares of the frame's height


def by_height(loc, samples) -> dict:
    """Top-1 class and top-1 localization (at the Localizer's threshold, IoU >= 0.5) of the
    object frames, by the largest true box's share of the frame's height."""
    from realtime.model.accuracy import best_iou

    rows: dict[str, list] = {"<=15%": [], "15-25%": [], ">25%": []}
    for s in samples:
        if s.class_id is None:
            continue
        frame = cv2.imread(str(s.path))
        share = max(b[3] - b[1] for b in s.boxes) / frame.shape[0]
        res = loc(frame)
        right = bool(len(res.class_ids)) and int(res.class_ids[0]) == s.class_id
        hit = right and best_iou(list(res.boxes[0]), s.boxes) >= 0.5
        key = list(rows)[int(np.searchsorted(HEIGHTS, share))]
        rows[key].append((right, hit))
    return {k: {"frames": len(v), "top1_cls": round(float(np.mean([a for a, _ in v])), 3),
                "top1_loc": round(float(np.mean([b for _, b in v])), 3)}
            for k, v in rows.items() if v}


def run_set(root: Path, overrides: dict, sizes: tuple[int, ...] = ()) -> dict:
    """Train on root/train, evaluate on root/test; the figures as a dict."""
    from export.train import TrainConfig, train_and_export
    from realtime import Localizer
    from realtime.evaluate import evaluate, load_coco

    config = TrainConfig(progress=False, **overrides)
    out = root / "m.onnx"
    t0 = time.perf_counter()
    report, _ = train_and_export("efficientnet_lite0", root / "train", out, config)
    seconds = time.perf_counter() - t0
    loc = Localizer(out, device="cpu")
    samples = load_coco(root / "test" / "labels.json", root / "test" / "images", list(loc.info.labels))
    figures = evaluate(loc, samples)
    total, found, frames = instance_recall(loc, samples)
    seen = load_coco(root / "train_labels.json", root / "train", list(loc.info.labels))
    seen = [s for s in seen if s.class_id is not None][::4]   # a quarter of the training frames
    train_curve, test_curve = loc_curve(loc, seen), loc_curve(loc, samples)
    at_size = {"default": by_height(loc, samples)}
    for size in sizes:  # the same model, a larger working size (measured, not chosen here)
        big = Localizer(out, device="cpu", imgsz=size)
        at_size[str(size)] = {**{k: (round(v, 3) if isinstance(v, float) else v)
                                 for k, v in evaluate(big, samples).items()},
                              "by_height": by_height(big, samples)}
    return {"seconds": round(seconds, 1), "heldout": round(report.best_acc, 3),
            "epochs": len(report.history), "warning": getattr(report, "warning", None),
            "tune_blocks": report.tune_blocks, "auto_compared": report.compared,
            **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()},
            "threshold": loc.threshold, "multi_frames": frames,
            "instances_found": f"{found}/{total}",
            "train_curve": train_curve.round(3).tolist(), "test_curve": test_curve.round(3).tolist(),
            "imgsz": at_size}


def _value(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return {"true": True, "false": False}.get(text.lower(), text)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True, help="what make_hard_sets.py --out wrote")
    p.add_argument("--sets", nargs="+", default=["photo", "glyph", "shape"])
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig overrides (default: the CLI's defaults)")
    p.add_argument("--imgsz", nargs="*", type=int, default=[],
                   help="also evaluate each trained model at these working sizes (longer side)")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    overrides = {k: _value(v) for k, v in (s.split("=", 1) for s in args.set)}
    results = {}
    for name in args.sets:
        results[name] = run_set(args.root / name, overrides, tuple(args.imgsz))
        print(name, json.dumps(results[name]), flush=True)
        if args.json:
            args.json.write_text(json.dumps({"overrides": overrides, "sweep": SWEEP.tolist(),
                                             "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
