"""INT8 (or FP16) files against their FP32 model on several photo sets, one line per set:
top-1 agreement on all frames and where FP32 is sure, CAM correlation, box IoU (docs/EDGE.md).

    python tools/int8_sets.py --fp32 lite0.onnx --variant portable=lite0.int8.onnx \\
        --sets /tmp/sets/opencv /tmp/sets/wallpapers /tmp/sets/video /tmp/sets/skimage

The sets come from tools/photo_sets.py; every image of a set is used (up to --max).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main", "measure"]


def measure(fp32: Path, variants: dict[str, Path], sets: list[Path], most: int = 200
            ) -> list[str]:
    from export.calib import prepare_frames, read_frames
    from export.compare import compare, open_session, run_all
    from realtime.model.format import parse_metadata

    s32 = open_session(fp32)
    info = parse_metadata(s32.get_modelmeta().custom_metadata_map, fp32)
    lines = [f"{'set':<12} {'model':<14} {'n':>4}  top-1 agr.  sure-only (n)  "
             "CAM corr mean/min  box IoU"]
    for folder in sets:
        xs = prepare_frames(read_frames(folder, most), info.stride, info.mean, info.std,
                            info.color == "RGB", info.input_size)
        ref = run_all(s32, xs)
        for name, path in variants.items():
            c = compare(s32, path, xs, info.stride, reference=ref)
            sure = "-" if c.agreement_confident is None else f"{c.agreement_confident:.3f}"
            lines.append(f"{folder.name:<12} {name:<14} {len(xs):>4}  {c.agreement:.3f}      "
                         f"{sure} ({c.confident:>3})    {c.cam_corr:.4f}/{c.cam_corr_min:.4f}"
                         f"   {c.box_iou:.3f}")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--variant", action="append", required=True, metavar="NAME=PATH")
    p.add_argument("--sets", type=Path, nargs="+", required=True)
    p.add_argument("--max", type=int, default=200, help="images per set at most")
    args = p.parse_args(argv)
    variants = {k: Path(v) for k, v in (a.split("=", 1) for a in args.variant)}
    for line in measure(args.fp32, variants, args.sets, args.max):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
