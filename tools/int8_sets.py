"""INT8 (or FP16) files against their FP32 model on several photo sets, one line per set:
top-1 agreement on all frames and where FP32 is sure, CAM correlation, box IoU (docs/EDGE.md).

    python tools/int8_sets.py --fp32 lite0.onnx --variant portable=lite0.int8.onnx \\
        --sets /tmp/sets/opencv /tmp/sets/wallpapers /tmp/sets/video /tmp/sets/skimage

The sets come from tools/photo_sets.py; every image of a set is used (up to --max).
``--floor`` adds, per set, how many frames FP32 itself barely decides (top-2 logit margin)
and the agreement the variant would reach with its own logit error scaled down (x0.75,
x0.5, x0.25): how much smaller the error must get for a given agreement (docs/EDGE.md).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["error_floor", "main", "measure"]

SCALES = (1.0, 0.75, 0.5, 0.25)


def error_floor(ref_logits: list, variant_logits: list) -> str:
    """FP32's top-2 margins and the variant's agreement with its logit error scaled."""
    import numpy as np

    a = np.stack([x.ravel() for x in ref_logits])
    err = np.stack([x.ravel() for x in variant_logits]) - a
    top2 = np.sort(a, 1)[:, -2:]
    margin = top2[:, 1] - top2[:, 0]
    shares = " ".join(f"<{m}: {np.mean(margin < m):.2f}" for m in (0.1, 0.25, 0.5))
    scaled = " ".join(f"x{f}: {np.mean((a + f * err).argmax(1) == a.argmax(1)):.3f}"
                      for f in SCALES)
    rms = float(np.sqrt(np.mean(err ** 2)))
    return f"    FP32 top-2 margin {shares}; logit error RMS {rms:.3f}; error scaled {scaled}"


def measure(fp32: Path, variants: dict[str, Path], sets: list[Path], most: int = 200,
            floor: bool = False) -> list[str]:
    from export.calib import prepare_frames, read_frames
    from export.compare import compare, open_session, run_all
    from realtime.model.format import parse_metadata

    s32 = open_session(fp32)
    sessions = {name: open_session(path) for name, path in variants.items()}
    info = parse_metadata(s32.get_modelmeta().custom_metadata_map, fp32)
    lines = [f"{'set':<12} {'model':<14} {'n':>4}  top-1 agr.  sure-only (n)  "
             "CAM corr mean/min  box IoU"]
    for folder in sets:
        xs = prepare_frames(read_frames(folder, most), info.stride, info.mean, info.std,
                            info.color == "RGB", info.input_size)
        ref = run_all(s32, xs)
        for name, sq in sessions.items():
            out = run_all(sq, xs)
            c = compare(s32, sq, xs, info.stride, reference=ref, outputs=out)
            sure = "-" if c.agreement_confident is None else f"{c.agreement_confident:.3f}"
            lines.append(f"{folder.name:<12} {name:<14} {len(xs):>4}  {c.agreement:.3f}      "
                         f"{sure} ({c.confident:>3})    {c.cam_corr:.4f}/{c.cam_corr_min:.4f}"
                         f"   {c.box_iou:.3f}")
            if floor:
                lines.append(error_floor(ref[0], out[0]))
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--variant", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--sets", type=Path, nargs="+", required=True)
    p.add_argument("--max", type=int, default=200, help="images per set at most")
    p.add_argument("--floor", action="store_true",
                   help="also FP32's top-2 margins and agreement with the error scaled down")
    args = p.parse_args(argv)
    variants = {k: Path(v) for k, v in (a.split("=", 1) for a in args.variant)}
    for line in measure(args.fp32, variants, args.sets, args.max, args.floor):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
