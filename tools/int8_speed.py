"""FP32 vs INT8 (or FP16) files on this CPU: median milliseconds per call and each file's
speed ratio to the first one, calls interleaved so every file sees the same load
(docs/EDGE.md). One intra-op thread by default; the load average is printed with it.

    python tools/int8_speed.py fp32=lite0.onnx int8=lite0.int8.onnx ff3=lite0.ff3.onnx

The input is a 1280x720 frame prepared as the runtime prepares it (1x3x256x448 for
EfficientNet-Lite0): a synthetic gradient, since the speed does not depend on the pixels.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

__all__ = ["main", "ratios"]


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def ratios(models: dict[str, Path], rounds: int = 3, calls: int = 30, threads: int = 1
           ) -> list[str]:
    """One line per model: median ms over the rounds' medians, median ratio to the first
    model and each round's ratio."""
    from export.calib import CalibFrame, prepare_frames
    from realtime.model.format import FRAME_OUTPUTS, INPUT, parse_metadata

    sessions = {k: _session(p, threads) for k, p in models.items()}
    first = next(iter(models.values()))
    info = parse_metadata(next(iter(sessions.values())).get_modelmeta().custom_metadata_map, first)
    frame = np.tile(np.linspace(0, 255, 1280, dtype=np.uint8)[None, :, None], (720, 1, 3))
    x = prepare_frames([CalibFrame("gradient", frame)], info.stride, info.mean, info.std,
                       info.color == "RGB", info.input_size)[0]
    for s in sessions.values():
        for _ in range(3):
            s.run(list(FRAME_OUTPUTS), {INPUT: x})
    med: dict[str, list[float]] = {k: [] for k in sessions}
    for _ in range(rounds):
        times: dict[str, list[float]] = {k: [] for k in sessions}
        for _ in range(calls):
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(list(FRAME_OUTPUTS), {INPUT: x})
                times[k].append((time.perf_counter() - t0) * 1e3)
        for k in sessions:
            med[k].append(statistics.median(times[k]))
    base = next(iter(sessions))
    lines = [f"input {tuple(x.shape)}, {threads} thread(s), {rounds} rounds of {calls} "
             f"interleaved calls, load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}"]
    for k in sessions:
        r = [a / b for a, b in zip(med[base], med[k])]
        lines.append(f"{k:<14} {statistics.median(med[k]):7.1f} ms  {statistics.median(r):.2f}x "
                     f"{base}  (rounds {', '.join(f'{v:.2f}' for v in r)})")
    return lines


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", metavar="NAME=PATH", help="the first is the reference")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--calls", type=int, default=30)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    models = {k: Path(v) for k, v in (a.split("=", 1) for a in args.models)}
    for line in ratios(models, args.rounds, args.calls, args.threads):
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
