"""Issue 26: would the tiled path's box correction (boxes_from_cam ``blur``) pay on untiled
frames? Every ``--blurs`` value (Gaussian sigma in the CAM's own cells) is given to
untiled frames by patching realtime.model.tiling.map_blur (the runtime's one hook: the
Localizer and realtime.evaluate both ask it), on

- the localization set of tools/eval_localization.py (zoo model, the runtime's defaults:
  shorter side 256, threshold 0.3, ``mass``): top-1 loc (the first box) and mean IoU per
  split, and MaxBoxAccV2 / top-1 loc at the best threshold of realtime.evaluate's sweep
  (the CAM of the best-scoring accepted class for GT-known);
- the hard sets' frames (``--root``/<set>/``--split``, m.onnx): realtime.evaluate's figures
  and top-1 loc by object height at the threshold 0.3 (the models store 0.5, where
  edge_shift is 0 and nothing changes).

    python tools/eval_untiled_blur.py --root /tmp/hs26n --split val   # choose on val + tune
    python tools/eval_untiled_blur.py --root /tmp/hs26n --split test --skip-loc-set
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.eval_tiles import _memo  # noqa: E402

__all__ = ["loc_set", "hard_set", "main", "untiled_blur"]


@contextlib.contextmanager
def untiled_blur(blur: float):
    """realtime.model.tiling.map_blur answers ``blur`` for untiled frames while inside."""
    from realtime.model import tiling

    original = tiling.map_blur
    tiling.map_blur = lambda geo, b=tiling.BLUR: original(geo, b) if isinstance(
        geo, tiling.TileGeometry) and geo.tiles else blur
    try:
        yield
    finally:
        tiling.map_blur = original


def loc_set(blurs: list[float]) -> dict:
    """{blur: {split: figures}} on tools/eval_localization.py's 220 samples."""
    from realtime import Localizer
    from realtime.evaluate import THRESHOLDS, _iou_curve
    from realtime.model.accuracy import iou, max_box_acc_v2
    from realtime.model.cam import normalize_cams
    from tools.eval_localization import build_samples

    loc = Localizer("efficientnet_lite0", device="cpu")
    _memo(loc)
    samples = build_samples(0)
    names = loc.info.labels
    out = {}
    for blur in blurs:
        rows = []
        with untiled_blur(blur):
            for s in samples:
                res = loc(s.image)
                right = names[int(res.class_ids[0])] in s.accepted
                first = iou(res.boxes[0][0], s.box) if res.boxes[0] else 0.0
                x, geo = loc.prepare(s.image)
                logits, feats = loc.infer(x)
                scores, cams_of = loc.class_maps(logits[0], feats[0], geo)
                ids = [i for i, n in enumerate(names) if n in s.accepted]
                best = max(ids, key=lambda i: scores[i])
                cam = normalize_cams(cams_of(np.array([best])), loc.normalize)[0]
                gt = _iou_curve(loc, cam, [list(s.box)], s.image.shape[:2], blur)
                rows.append((s.split, right, first, gt))
        out[blur] = {}
        for split in ("tune", "held-out", "all"):
            r = [x for x in rows if split == "all" or x[0] == split]
            curves = np.array([x[3] for x in r])
            maxbox, per = max_box_acc_v2(curves, THRESHOLDS)
            i = int(np.flatnonzero(THRESHOLDS == per[0.5][1])[0])
            # the top class is an accepted one: its CAM is the best accepted class's
            best_loc = float(np.mean([x[1] and x[3][i] >= 0.5 for x in r]))
            out[blur][split] = {"top1_loc": round(float(np.mean([x[1] and x[2] >= 0.5 for x in r])), 3),
                                "miou": round(float(np.mean([x[2] for x in r])), 3),
                                "maxboxacc_v2": round(maxbox, 3),
                                "sweep_top1_loc": round(best_loc, 3),
                                "best_threshold": float(per[0.5][1]), "n": len(r)}
            f = out[blur][split]
            f["top1_curve"] = np.mean([x[1] & (x[3] >= 0.5) for x in r], axis=0).round(3).tolist()
            print(f"loc-set blur {blur:4} {split:8} top1_loc@0.3 {f['top1_loc']:.3f} "
                  f"mIoU {f['miou']:.3f} | sweep: top1_loc {f['sweep_top1_loc']:.3f} "
                  f"MaxBoxAccV2 {f['maxboxacc_v2']:.3f} (t {f['best_threshold']:.2f})", flush=True)
        curve = out[blur]["tune"]["top1_curve"]  # the threshold chosen on tune, with this blur
        t = int(np.argmax(curve))
        out[blur]["tune_threshold"] = float(THRESHOLDS[t])
        print(f"loc-set blur {blur:4} threshold chosen on tune {THRESHOLDS[t]:.2f}: top1_loc (any "
              f"box) tune {curve[t]:.3f} held-out {out[blur]['held-out']['top1_curve'][t]:.3f}; "
              f"at 0.30: {curve[30]:.3f} / {out[blur]['held-out']['top1_curve'][30]:.3f}", flush=True)
    return out


def hard_set(root: Path, split: str, blurs: list[float], threshold: float = 0.3) -> dict:
    """{blur: figures} on one hard set's ``split`` frames."""
    from realtime import Localizer
    from realtime.evaluate import evaluate, load_coco
    from tools.eval_sets import by_height

    loc = Localizer(root / "m.onnx", device="cpu")
    _memo(loc)
    samples = load_coco(root / split / "labels.json", root / split / "images",
                        list(loc.info.labels))
    stored, out = loc.threshold, {}
    for blur in blurs:
        with untiled_blur(blur):
            f = {k: round(v, 3) for k, v in evaluate(loc, samples).items()}
            loc.threshold = threshold
            f["by_height@0.3"] = by_height(loc, samples)
            loc.threshold = stored
        obj = list(f["by_height@0.3"].values())
        f["top1_loc@0.3"] = round(sum(v["top1_loc"] * v["frames"] for v in obj)
                                  / max(1, sum(v["frames"] for v in obj)), 3)
        out[blur] = f
        bh = " / ".join(f"{v['top1_loc']:.2f}" for v in f["by_height@0.3"].values())
        print(f"{root.name:6} {split:5} blur {blur:4} top1_loc {f['top1_loc']:.3f} "
              f"MaxBoxAccV2 {f['maxboxacc_v2']:.3f} (t {f['best_threshold']:.2f}) | "
              f"@0.3: loc {f['top1_loc@0.3']:.3f} by height {bh}", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=None, help="the hard sets (<set>/m.onnx)")
    p.add_argument("--sets", nargs="+", default=["photo", "glyph", "shape"])
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--blurs", nargs="+", type=float, default=[0.0, 0.5, 0.75, 1.0, 1.5])
    p.add_argument("--skip-loc-set", action="store_true")
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    results: dict = {}
    if not args.skip_loc_set:
        results["loc_set"] = loc_set(args.blurs)
    for name in args.sets if args.root else []:
        results[name] = hard_set(args.root / name, args.split, args.blurs)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
