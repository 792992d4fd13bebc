"""What each ``--codec`` costs per annotated 720p frame, on this machine.

Annotated frames (the demo clip through the default model, heatmap and boxes
drawn, as the pipeline draws them) are written with every writer ``--save``
offers, one encoder at a time in one process; each figure is the median of
``--repeats`` passes. Reported: wall ms per frame and CPU ms per frame of the
whole process (encoders may use threads of their own), and the file size.

    python tools/codec_cost.py [--source assets/demo.mp4] [--frames 120] [--repeats 3]
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realtime.outputs.recorder import CODECS, AvVideoSink, open_video_sink  # noqa: E402

# extra libx264 settings measured beside the default (name -> options)
X264_VARIANTS = {"h264 veryfast": {"preset": "veryfast", "tune": "zerolatency", "crf": "23"},
                 "h264 ultrafast, 1 thread": {"preset": "ultrafast", "tune": "zerolatency",
                                              "crf": "23", "threads": "1"}}


def _cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def annotated_frames(source: str, count: int) -> tuple[list, float]:
    """The first ``count`` frames of ``source``, drawn on as the pipeline draws them."""
    from itertools import islice

    from realtime.model.engine import Localizer
    from realtime.sources import open_source

    loc = Localizer("efficientnet_lite0")
    with open_source(source) as src:
        frames = [f.image for f in islice(src, count)]
        fps = src.fps
    return [loc(f).draw(f) for f in frames], fps


def cost(make_sink, frames: list) -> tuple[float, float, int]:
    """(wall ms, CPU ms) per frame of writing ``frames``, and the file's size in bytes."""
    with tempfile.TemporaryDirectory() as tmp:
        sink = make_sink(Path(tmp))
        c0, t0 = _cpu_s(), time.perf_counter()
        with sink:
            for f in frames:
                sink.write_image(f)
        wall, cpu = time.perf_counter() - t0, _cpu_s() - c0
        size = sink.path.stat().st_size
    n = len(frames)
    return wall * 1e3 / n, cpu * 1e3 / n, size


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--source", default=str(ROOT / "assets" / "demo.mp4"))
    p.add_argument("--frames", type=int, default=120)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    frames, fps = annotated_frames(args.source, args.frames)
    h, w = frames[0].shape[:2]
    import av

    writers = {c: (lambda d, c=c: open_video_sink(d / ("out.avi" if c == "mjpeg" else "out.mp4"),
                                                  fps, c))
               for c in CODECS if c != "h264_nvenc"}
    writers.update({k: (lambda d, o=o: AvVideoSink(d / "out.mp4", fps, options=o))
                    for k, o in X264_VARIANTS.items()})
    print(f"{len(frames)} annotated {w}x{h} frames, median of {args.repeats}; "
          f"PyAV {av.__version__}")
    print("| codec | wall ms/frame | CPU ms/frame | MB per 100 frames |")
    print("|---|---|---|---|")
    for name, make in writers.items():
        runs = [cost(make, frames) for _ in range(args.repeats)]
        wall, cpu = median(r[0] for r in runs), median(r[1] for r in runs)
        mb = runs[0][2] / len(frames) * 100 / 1e6
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {mb:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
