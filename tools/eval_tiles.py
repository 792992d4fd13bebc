"""Tiled inference (``Localizer(tiles=N)``) on the hard sets: every merge and decision
rule against tiles off, with realtime.evaluate's figures and eval_sets' by-height buckets.

    python tools/make_hard_sets.py --out sets                 # the sets
    python tools/eval_sets.py --root sets                     # the models, sets/<set>/m.onnx
    python tools/make_hard_sets.py --out sets --val-only 20   # sets/<set>/val
    python tools/eval_tiles.py --root sets --split val        # choose the rule here
    python tools/eval_tiles.py --root sets --split test       # then report the test halves

The model runs once per frame and tile count (its outputs are kept), so the rules differ
only in the numpy merge. ``val`` frames are made of the training material at the test
scales (make_hard_sets.build_val): the rule is chosen there, never on ``test``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

__all__ = ["main", "run_set"]

RULES = [(m, d) for m in ("max", "mean") for d in ("frame", "max", "mix")]


def _memo(loc) -> None:
    """Keep the model's outputs per input (the rules reuse them)."""
    infer, forward, seen = loc.infer, loc.forward, {}

    def key(x):
        return hashlib.sha1(x.tobytes()).hexdigest()

    def cached_infer(x):
        k = ("i", key(x))
        if k not in seen:
            seen[k] = infer(x)
        return seen[k]

    def cached_forward(x):
        k = ("f", key(x))
        if k not in seen:
            seen[k] = forward(x)
        return seen[k]

    loc.infer, loc.forward = cached_infer, cached_forward


def run_set(root: Path, split: str, tiles: tuple[int, ...]) -> dict:
    """Figures of tiles off and each tile count x rule on ``root``/``split``."""
    from realtime import Localizer
    from realtime.evaluate import evaluate, load_coco
    from tools.eval_sets import by_height

    out = {}
    for n in (1, *tiles):
        loc = Localizer(root / "m.onnx", device="cpu", tiles=n)
        _memo(loc)
        samples = load_coco(root / split / "labels.json", root / split / "images",
                            list(loc.info.labels))
        for merge, decision in RULES if n > 1 else [("-", "-")]:
            loc.tile_merge, loc.tile_decision = (merge, decision) if n > 1 else ("max", "max")
            figures = evaluate(loc, samples)
            name = "off" if n == 1 else f"{n}/{merge}/{decision}"
            out[name] = {k: round(figures[k], 3) for k in ("top1_cls", "top1_loc", "maxboxacc_v2")}
            out[name]["by_height"] = by_height(loc, samples)
            small = out[name]["by_height"].get("<=15%", {})
            print(f"{root.name:6} {split:5} {name:16} cls {out[name]['top1_cls']:.3f} "
                  f"loc {out[name]['top1_loc']:.3f} maxbox {out[name]['maxboxacc_v2']:.3f}  "
                  f"<=15%: cls {small.get('top1_cls', 0):.3f} loc {small.get('top1_loc', 0):.3f}"
                  f" ({small.get('frames', 0)} frames)", flush=True)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--sets", nargs="+", default=["photo", "glyph", "shape"])
    p.add_argument("--split", default="val", choices=("val", "test"))
    p.add_argument("--tiles", nargs="+", type=int, default=[2, 3])
    p.add_argument("--json", type=Path, default=None)
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    results = {}
    for name in args.sets:
        results[name] = run_set(args.root / name, args.split, tuple(args.tiles))
        if args.json:
            args.json.write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
