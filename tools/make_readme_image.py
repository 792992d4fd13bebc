"""Make docs/demo.jpg: three annotated frames of the demo clip side by side.

    python -m realtime                      # writes runs/demo*/demo.mp4
    python tools/make_readme_image.py runs/demo/demo.mp4
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("video", type=Path, help="an annotated video written by python -m realtime")
    p.add_argument("--seconds", type=float, nargs="+", default=[1.0, 3.6, 7.2])
    p.add_argument("--width", type=int, default=480, help="width of each panel")
    p.add_argument("--output", type=Path, default=Path("docs/demo.jpg"))
    args = p.parse_args()
    cap = cv2.VideoCapture(str(args.video))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    panels = []
    for s in args.seconds:
        cap.set(cv2.CAP_PROP_POS_FRAMES, round(s * fps))
        ok, frame = cap.read()
        if not ok:
            raise SystemExit(f"no frame at {s} s in {args.video}")
        h = round(frame.shape[0] * args.width / frame.shape[1])
        panels.append(cv2.resize(frame, (args.width, h), interpolation=cv2.INTER_AREA))
    cap.release()
    gap = np.full((panels[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.hstack([x for panel in panels for x in (panel, gap)][:-1])
    cv2.imwrite(str(args.output), strip, [cv2.IMWRITE_JPEG_QUALITY, 85])
    print(f"wrote {args.output} ({strip.shape[1]}x{strip.shape[0]})")


if __name__ == "__main__":
    main()
