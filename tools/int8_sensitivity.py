"""Per-layer INT8 sensitivity of a camloc model (export/sensitivity.py), for docs/EDGE.md.

Quantizes the FP32 model with every convolution INT8 (7-bit weights unless --target
vnni) on scikit-image's calibration photos (export.photos.CALIB_PHOTOS, 6 views each),
then runs each convolution alone in float and prints the KL divergence to FP32 it
removes, largest first.

    python tools/int8_sensitivity.py --fp32 lite0.onnx [--frames 16] [--top 15]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main"]


def main(argv: list[str] | None = None) -> int:
    import cv2
    import onnx

    import export.quantize as qz
    from export.calib import CalibFrame, prepare_frames
    from export.compare import open_session
    from export.photos import CALIB_PHOTOS, photo_set
    from export.sensitivity import layer_sensitivity
    from realtime.model.format import parse_metadata

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--fp32", type=Path, required=True)
    p.add_argument("--target", default="portable", choices=tuple(qz.INT8_TARGETS))
    p.add_argument("--frames", type=int, default=16, help="calibration frames to measure on")
    p.add_argument("--top", type=int, default=15)
    args = p.parse_args(argv)
    cal = [CalibFrame(n, cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
           for n, im in photo_set(CALIB_PHOTOS, 6, 1)]
    s32 = open_session(args.fp32)
    info = parse_metadata(s32.get_modelmeta().custom_metadata_map, args.fp32)
    qz.check = lambda report: None  # an all-INT8 model is the starting point, not a product
    with tempfile.TemporaryDirectory() as tmp:
        all8 = Path(tmp) / "all8.onnx"
        qz.quantize_onnx(args.fp32, all8, "int8", cal, heldout=cal[::4], bench_runs=0,
                         float_first=0, target=args.target)
        convs = [n.name for n in onnx.load(str(all8)).graph.node if n.op_type == "Conv"]
        xs = prepare_frames(cal[::max(1, len(cal) // args.frames)][:args.frames], info.stride,
                            info.mean, info.std, info.color == "RGB", info.input_size)
        sens = layer_sensitivity(all8, s32, xs, convs)
    print(f"{len(xs)} frames, {len(convs)} convolutions; KL to FP32 removed by floating one:")
    for name in sorted(sens, key=lambda k: -sens[k])[:args.top]:
        print(f"  conv #{convs.index(name):<3} {name:<28} {sens[name]:+.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
