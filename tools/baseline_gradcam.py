"""What a user writes today for CAMs on a video, measured beside camloc in one run.

The loop below is the pytorch-grad-cam way (its README's recipe applied per
frame): read a 720p frame, preprocess it with torchvision-style code, run
``GradCAM`` on the same EfficientNet-Lite0 weights camloc uses (target: the last
conv layer, the top class), upsample the map to the frame, ``show_cam_on_image``
and write the mp4. Then the same clip goes through camloc's file-to-file
pipeline (``realtime.bench``'s ``file_fps``), and the ratio is printed.

Needs the extra package: ``pip install grad-cam`` (not a camloc dependency).

    python tools/baseline_gradcam.py [--source assets/demo.mp4] [--frames 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402


def gradcam_fps(source: str, frames: int, warmup: int, out: Path, size: tuple[int, int]) -> float:
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.image import preprocess_image, show_cam_on_image
    except ImportError:
        raise SystemExit("this baseline needs pytorch-grad-cam: pip install grad-cam") from None
    from models.zoo import load_model

    model = load_model("efficientnet_lite0").module.eval()
    cam = GradCAM(model=model, target_layers=[model._conv_head])
    cap = cv2.VideoCapture(source)
    fps_in = cap.get(cv2.CAP_PROP_FPS) or 25.0
    writer = None
    stamps = []
    for _ in range(frames):
        ok, frame = cap.read()
        if not ok:
            break
        rgb = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
        x = preprocess_image(cv2.resize(rgb, size).astype(np.float32) / 255,
                             mean=[127 / 255] * 3, std=[128 / 255] * 3)
        gray = cam(input_tensor=x, targets=None)[0]
        heat = cv2.resize(gray, (frame.shape[1], frame.shape[0]))
        vis = show_cam_on_image(rgb.astype(np.float32) / 255, heat, use_rgb=True)
        if writer is None:
            writer = cv2.VideoWriter(str(out), cv2.VideoWriter_fourcc(*"mp4v"), fps_in,
                                     (frame.shape[1], frame.shape[0]))
        writer.write(cv2.cvtColor(vis, cv2.COLOR_RGB2BGR))
        stamps.append(time.monotonic())
    cap.release()
    if writer is not None:
        writer.release()
    steady = stamps[warmup:]
    return (len(steady) - 1) / (steady[-1] - steady[0])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--source", default=str(ROOT / "assets" / "demo.mp4"))
    p.add_argument("--frames", type=int, default=60)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--size", default="224x224",
                   help="grad-cam input WxH: 224x224 is the usual recipe, 448x256 camloc's default")
    args = p.parse_args()
    from realtime.bench import run_bench

    with tempfile.TemporaryDirectory() as tmp:
        size = tuple(int(v) for v in args.size.lower().split("x"))
        base = gradcam_fps(args.source, args.frames, args.warmup, Path(tmp) / "gradcam.mp4", size)
    print(f"pytorch-grad-cam loop (GradCAM at {args.size}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads): {base:.1f} fps")
    ours = run_bench(args.source, frames=max(args.frames, 100), repeats=1)
    print(f"camloc file-to-file pipeline ({ours['provider']}): {ours['file_fps']:.1f} fps "
          f"= {ours['file_fps'] / base:.1f}x")


if __name__ == "__main__":
    main()
