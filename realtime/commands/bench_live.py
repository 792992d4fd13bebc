"""``python -m realtime.bench --live``: latency on a live stream paced like a camera.

The clip's frames are JPEG-encoded once and served from a local HTTP Motion-JPEG
server (:class:`~realtime.commands.paced_stream.PacedMjpegServer`) at the clip's frame
rate (``--fps`` to change it); the pipeline reads that stream through the same
:class:`~realtime.sources.live.LiveSource` a camera URL gets (newest frame, the rest
dropped and counted). For each configuration (no outputs; the recording; the web view
with one viewer; both) it runs ``--seconds`` after ``--warmup`` seconds and reports,
per frame, p50/p95/p99 in milliseconds of:

- ``reader_wait``: from the frame's arrival (the capture returned it) to a worker taking it;
- the stages' own times: ``preprocess``, ``infer``, ``postprocess``, ``draw``,
  ``encode`` (the recording), ``web`` (handing the frame to the web view);
- ``e2e_out``: arrival to the frame leaving the pipeline (every output fed);
- ``e2e_video``: arrival to the recording having it written (``encode`` returned);
- ``e2e_web_sent``: arrival to the web view sending it to a viewer (its socket took it),
  and ``e2e_web_received``: to an in-process viewer reading the whole part (the
  frame's arrival travels in each part's ``X-Camloc-Arrival`` header);

plus frames served, read, processed and dropped. Figures from one process, one model
session; the machine's load is the caller's to state.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from itertools import islice
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.commands.paced_stream import MjpegViewer, PacedMjpegServer, encode_jpegs
from realtime.commands.parser import Parser
from realtime.errors import UsageError, report_error
from realtime.outputs.latency import percentiles_of

__all__ = ["CONFIGS", "format_live", "live_run", "main", "run_live_bench"]

log = logging.getLogger(__name__)

DEMO_CLIP = Path(__file__).resolve().parents[2] / "assets" / "demo.mp4"
CONFIGS = {"none": (False, False), "video": (True, False), "web": (False, True),
           "video+web": (True, True)}  # name -> (recording, web view)
_STAGES = ("preprocess", "infer", "postprocess", "draw", "encode", "web")


def _clip(spec: str, frames: int, size: tuple[int, int] | None) -> list[np.ndarray]:
    from realtime.sources import open_source

    with open_source(spec) as source:
        out = [f.image for f in islice(source, frames)]
    if size is not None:
        out = [cv2.resize(f, size, interpolation=cv2.INTER_AREA)
               if (f.shape[1], f.shape[0]) != size else f for f in out]
    return out


def live_run(loc: Any, url: str, fps: float, seconds: float, warmup_s: float, *,
             video: Path | None = None, web: bool = False, workers: int = 1,
             draw_workers: int = 1, codec: str = "h264") -> dict[str, Any]:
    """One paced run: per-frame samples after ``warmup_s``, summarized (see the module)."""
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.web import WebView
    from realtime.pipeline.runner import Pipeline
    from realtime.sources.live import LiveSource

    samples: dict[str, list[float]] = {}
    received: list[tuple[float, float]] = []
    with ExitStack() as stack:
        source = stack.enter_context(LiveSource(url, stream=True))
        sinks: list[Any] = []
        if video is not None:
            sinks.append(stack.enter_context(open_video_sink(video, fps, codec)))
        view = viewer = None
        if web:
            view = stack.enter_context(WebView(port=0))
            sinks.append(view)
        run = stack.enter_context(Pipeline(source, loc, sinks=sinks, draw=True,
                                           workers=workers, draw_workers=draw_workers))
        if view is not None:
            viewer = MjpegViewer("127.0.0.1", view.port)
            stack.callback(viewer.close)
        start = time.monotonic()
        measured_from, end = start + warmup_s, start + warmup_s + seconds
        processed = 0
        for item in run:
            now = time.monotonic()
            if now >= measured_from:
                processed += 1
                f, t = item.frame, item.times
                add = samples.setdefault
                add("reader_wait", []).append((f.taken - f.arrival) * 1e3)
                for k in _STAGES:
                    if k in t:
                        add(k, []).append(t[k])
                add("e2e_out", []).append((now - f.arrival) * 1e3)
                if "encode" in item.latency:  # the recording's sink: written
                    add("e2e_video", []).append(item.latency["encode"])
            if now >= end and not run.stopping:
                run.stop("bench")
        dropped0 = source.frames_dropped
        if viewer is not None:
            received = [r for r in viewer.received if measured_from <= r[0] <= end]
        sent = view.latency.window().tolist() if view is not None else []
    if len(samples.get("e2e_out", [])) < 2:
        raise UsageError(f"the stream gave {processed} frames after the warm-up: too few")
    out = {k: percentiles_of(v) for k, v in samples.items()}
    if view is not None:  # the whole run's sends (the ring holds the last 1024)
        out["e2e_web_sent"] = percentiles_of(sent)
        out["e2e_web_received"] = percentiles_of([ms for _, ms in received])
    return {"latency_ms": out, "processed": processed,
            "processed_fps": round(processed / seconds, 2),
            "frames_read": source.frames_read, "frames_dropped": dropped0,
            "dropped_share": round(dropped0 / max(1, source.frames_read + dropped0), 3)}


def run_live_bench(spec: str = str(DEMO_CLIP), model: str = "efficientnet_lite0",
                   device: str = "auto", fps: float | None = None, seconds: float = 10.0,
                   warmup_s: float = 3.0, frames: int = 150, size: tuple[int, int] | None = None,
                   configs: tuple[str, ...] = tuple(CONFIGS), workers: int | None = None,
                   threads: int | None = None, imgsz: int | None = None,
                   describe: Callable[[str], str] | None = None) -> dict[str, Any]:
    """Serve ``frames`` of ``spec`` paced at ``fps`` (default: the clip's) and measure each
    of ``configs``; return the figures (``describe``: provider -> the device's name)."""
    from realtime.model.engine import Localizer
    from realtime.pipeline.render_stage import draw_parallelism
    from realtime.sources import open_source

    if fps is None:
        with open_source(spec) as src:
            fps = src.fps
    clip = _clip(spec, frames, size)
    if not clip:
        raise UsageError(f"{spec}: no frames")
    loc, workers = Localizer.for_pipeline(model, device, threads, workers, imgsz=imgsz)
    draw_workers = draw_parallelism(loc.provider)
    result: dict[str, Any] = {
        "source": spec, "frame_size": [clip[0].shape[0], clip[0].shape[1]], "fps": fps,
        "seconds": seconds, "warmup_s": warmup_s, "model": loc.info.arch,
        "provider": loc.provider, "device": describe(loc.provider) if describe else "",
        "workers": workers,
        "threads": loc.threads, "draw_workers": draw_workers, "runs": {}}
    with PacedMjpegServer(encode_jpegs(clip), fps) as server, \
            tempfile.TemporaryDirectory(prefix="camloc-bench-live-") as tmp:
        for name in configs:
            recording, web = CONFIGS[name]
            r = live_run(loc, server.url, fps, seconds, warmup_s,
                         video=Path(tmp) / f"{name}.mp4" if recording else None, web=web,
                         workers=workers, draw_workers=draw_workers)
            result["runs"][name] = r
            log.info("%s: %s", name, r["latency_ms"]["e2e_out"])
    return result


def format_live(r: dict[str, Any]) -> str:
    """A human table of :func:`run_live_bench`'s figures."""
    h, w = r["frame_size"]
    lines = [f"camloc bench --live: {r['model']} on {r['provider']} ({r['device']}), "
             f"{w}x{h} MJPEG stream paced at {r['fps']:g} fps, {r['seconds']:g} s per run "
             f"after {r['warmup_s']:g} s warm-up, {r['workers']} worker(s) x "
             f"{r['threads'] or 'default'} thread(s)"]
    for name, run in r["runs"].items():
        lines.append(f"  [{name}] {run['processed_fps']:.1f} fps processed, "
                     f"{run['frames_dropped']} dropped ({100 * run['dropped_share']:.0f}%); "
                     "ms p50 / p95 / p99:")
        for key, p in run["latency_ms"].items():
            if p:
                lines.append(f"    {key:<17} {p['p50']:7.1f} {p['p95']:7.1f} {p['p99']:7.1f}")
    return "\n".join(lines)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WxH, got {text!r}") from None
    if w < 32 or h < 32:
        raise argparse.ArgumentTypeError(f"expected WxH of at least 32x32, got {text!r}")
    return w, h


def _parser() -> argparse.ArgumentParser:
    p = Parser("python -m realtime.bench --live", "Latency per stage and end to end on a "
               "local stream paced like a camera.")
    p.add_argument("--source", default=str(DEMO_CLIP), help="video file to serve")
    p.add_model()
    p.add_device()
    p.add_imgsz()
    p.add_workers()
    p.add_argument("--fps", type=float, default=None, help="pace (default: the clip's rate)")
    p.add_argument("--size", type=_size, default=None, help="serve frames at WxH "
                                                            "(default: the clip's size)")
    p.add_argument("--frames", type=int, default=150, help="clip frames served in a loop")
    p.add_argument("--seconds", type=float, default=10.0, help="measured seconds per run")
    p.add_argument("--warmup", type=float, default=3.0, help="seconds excluded at the start")
    p.add_argument("--configs", default=",".join(CONFIGS),
                   help=f"runs, comma-separated: {', '.join(CONFIGS)}")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    return p


def main(argv: list[str] | None = None, describe: Callable[[str], str] | None = None) -> int:
    """The command; ``describe`` names the device a provider runs on (realtime.bench's)."""
    args = _parser().parse(argv, "bench --live")
    if isinstance(args, int):  # --help, or a usage error said in one line
        return args
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    configs = tuple(c for c in args.configs.split(",") if c)
    bad = [c for c in configs if c not in CONFIGS]
    if bad or not configs or args.seconds <= 0 or args.warmup < 0 or args.frames < 1 \
            or (args.fps is not None and not args.fps > 0):
        print(f"bench --live: error: --configs takes {', '.join(CONFIGS)}; --seconds, "
              "--frames and --fps must be > 0, --warmup >= 0", file=sys.stderr)
        return 2
    if not Path(args.source).is_file():
        print(f"bench --live: error: no such video file: {args.source}", file=sys.stderr)
        return 2
    try:
        result = run_live_bench(args.source, args.model, args.device, args.fps, args.seconds,
                                args.warmup, args.frames, args.size, configs, args.workers,
                                args.threads, args.imgsz, describe)
    except Exception as exc:  # noqa: BLE001 - user error 2, failed stage or bug 1; one line
        return report_error("bench", exc)
    print(format_live(result))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0
