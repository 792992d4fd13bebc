"""Measure quantization-aware fine-tuning (``--int8 --qat``, export/qat.py) against plain
post-training INT8, both made the way a user makes them, on photo sets (docs/EDGE.md).

Writes scikit-image's 78 calibration frames (13 photos x 6 views, as tests/test_quantize.py
does) to OUT/calib and 52 other views of the same photos (another seed) to OUT/val, the
set the QAT settings were chosen on; exports ``--int8 --calib OUT/calib`` with and without
``--qat`` (or with the settings given) and prints, per set, each file's agreement with
the ORIGINAL FP32 model (tools/int8_sets.py) and the export's wall-clock time.

    python tools/int8_qat.py --fp32 lite0.onnx --out /tmp/qat --steps 300 \\
        --sets /tmp/sets/opencv /tmp/sets/wallpapers /tmp/sets/video /tmp/sets/skimage
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main"]


def _write_views(folder: Path, per: int, seed: int) -> Path:
    from export.photos import CALIB_PHOTOS, photo_set

    if not folder.is_dir():
        folder.mkdir(parents=True)
        for name, rgb in photo_set(CALIB_PHOTOS, per, seed):
            cv2.imwrite(str(folder / f"{name.replace('#', '_')}.png"),
                        np.ascontiguousarray(rgb[..., ::-1]))
    return folder


def main(argv: list[str] | None = None) -> int:
    import torch

    from export.qat import QatConfig
    from export.quantize import quantize_zoo_model
    from tools.int8_sets import measure

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, required=True, help="the ORIGINAL FP32 export")
    p.add_argument("--out", type=Path, required=True, help="folder for the files written")
    p.add_argument("--model", default="efficientnet_lite0")
    p.add_argument("--steps", type=int, default=300, help="0: plain post-training INT8")
    p.add_argument("--lr", type=float, default=QatConfig.lr)
    p.add_argument("--feature-weight", type=float, default=QatConfig.feature_weight)
    p.add_argument("--views", type=int, default=QatConfig.views)
    p.add_argument("--temperature", type=float, default=QatConfig.temperature)
    p.add_argument("--target", default="portable", choices=("portable", "vnni"))
    p.add_argument("--threads", type=int, default=1, help="torch threads for the fine-tuning")
    p.add_argument("--sets", type=Path, nargs="*", default=[])
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    torch.set_num_threads(args.threads)
    calib = _write_views(args.out / "calib", 6, 1)
    val = _write_views(args.out / "val", 4, 7)
    qat = (QatConfig(steps=args.steps, lr=args.lr, feature_weight=args.feature_weight,
                     views=args.views, temperature=args.temperature) if args.steps else None)
    tag = (f"qat_{args.target}_s{args.steps}_lr{args.lr:g}_f{args.feature_weight:g}"
           f"_v{args.views}_t{args.temperature:g}" if qat else f"ptq_{args.target}")
    out = args.out / f"{tag}.onnx"
    t0 = time.perf_counter()
    r = quantize_zoo_model(args.model, out, "int8", calib, qat=qat, calib_frames=100,
                           target=args.target)
    print(r.summary())
    print(f"{tag}: whole export {time.perf_counter() - t0:.0f} s", flush=True)
    for line in measure(args.fp32, {tag: out}, [val, *args.sets]):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
