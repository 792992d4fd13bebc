"""``python -m realtime.bench``: how fast camloc runs, against the model alone.

One run, one model session, the same frames and settings for every figure:

- ``bare_fps``: ``session.run`` in a loop on input tensors prepared beforehand
  (the ceiling: nothing the pipeline does can beat it);
- ``draw_fps``: the threaded pipeline as a live display runs it: decode,
  preprocess, infer, CAM, boxes, overlay (no encoding);
- ``file_fps``: the same plus writing the annotated video (file to file; ``--codec``,
  default h264 as the CLI writes it; several codecs are each measured in the same run);
- ``stages_ms``: median milliseconds per frame of each stage (from the file run).

Warm-up frames are excluded; each figure is the median of ``--repeats`` runs.
Pipeline rates are wall-clock rates (frames out per second), so stages that
overlap in threads are not double-counted.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from typing import Any

import numpy as np

from realtime.commands.bench_sources import sources_fps, sources_table
from realtime.commands.parser import Parser
from realtime.errors import UsageError, report_error

__all__ = ["STAGE_KEYS", "device_name", "main", "run_bench"]

log = logging.getLogger(__name__)

STAGE_KEYS = ("decode", "preprocess", "infer", "cam", "boxes", "draw", "encode")
DEMO_CLIP = Path(__file__).resolve().parent.parent / "assets" / "demo.mp4"


def device_name(provider: str) -> str:
    """What ran the model, for the record: the GPU's name (nvidia-smi) for CUDA and
    TensorRT, else the CPU's model name; "unknown" when the system does not say."""
    import platform
    import subprocess

    if provider in ("CUDAExecutionProvider", "TensorrtExecutionProvider"):
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=True)
            return out.stdout.strip().splitlines()[0] or "unknown NVIDIA GPU"
        except (OSError, subprocess.SubprocessError, IndexError):
            return "unknown NVIDIA GPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _read_frames(spec: str, count: int) -> list[np.ndarray]:
    """The first ``count`` frames, decoded by the same source the pipeline uses."""
    from itertools import islice

    from realtime.sources import open_source

    with open_source(spec) as source:
        return [f.image for f in islice(source, count)]


def bare_fps(loc: Any, tensors: list[np.ndarray], warmup: int, batch: int = 1,
             workers: int = 1) -> float:
    """Frames per second of ``loc.forward`` alone on ``tensors`` (prepared beforehand), from
    ``workers`` threads at once (as the pipeline runs it), warm-up excluded."""
    import threading

    batches = [np.concatenate(tensors[i:i + batch])
               for i in range(0, len(tensors) - batch + 1, batch)]
    start = threading.Barrier(workers + 1)
    done = threading.Barrier(workers + 1)

    def loop(mine: list[np.ndarray]) -> None:
        for x in mine[:max(1, warmup // (batch * workers))]:
            loc.forward(x)
        start.wait()
        for x in mine:
            loc.forward(x)
        done.wait()

    threads = [threading.Thread(target=loop, args=(batches[w::workers],), daemon=True)
               for w in range(workers)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    done.wait()
    elapsed = time.perf_counter() - t0
    for t in threads:
        t.join()
    return sum(len(x) for x in batches) / len(tensors[0]) / elapsed  # tiled: rows per frame


def pipeline_fps(loc: Any, spec: str, frames: int, warmup: int, video: Path | None,
                 batch: int = 1, workers: int = 1, codec: str | None = None,
                 draw_workers: int = 1) -> tuple[float, dict[str, list[float]]]:
    """Frames out per second of the threaded pipeline (after warm-up) and its stage times."""
    from realtime.outputs.recorder import open_video_sink
    from realtime.pipeline.runner import Pipeline
    from realtime.sources import open_source

    stamps: list[float] = []
    with open_source(spec) as source:
        sink = open_video_sink(video, source.fps, codec) if video is not None else None
        try:
            with Pipeline(source, loc, sinks=[sink] if sink else [], draw=True, max_frames=frames,
                          batch=batch, workers=workers, draw_workers=draw_workers) as run:
                for _ in run:
                    stamps.append(time.monotonic())
        finally:
            if sink is not None:
                sink.close()
        # exact while the run is within the stats' window (bench runs are short)
        stages = {k: list(v)[warmup:] for k, v in run.stats.stage_ms.items()}
    steady = stamps[warmup:]
    if len(steady) < 2:
        raise UsageError(f"the source gave {len(stamps)} frames: too few to measure "
                         f"after {warmup} warm-up frames")
    return (len(steady) - 1) / (steady[-1] - steady[0]), stages


def run_bench(source: str, model: str = "efficientnet_lite0", imgsz: int | None = None,
              device: str = "auto", frames: int = 150, warmup: int = 10, repeats: int = 3,
              threads: int | None = None, batch: int = 1, workers: int | None = None,
              codecs: tuple[str, ...] = ("h264",),
              draw_workers: tuple[int | None, ...] = (None,),
              sources: tuple[int, ...] = (), tiles: int = 1) -> dict[str, Any]:
    """Measure bare, draw and file rates in one process; return the figures. Each of
    ``draw_workers`` (None: the CLI's default) gets its own draw and file runs, the
    first one's are draw_fps and file_fps. ``tiles`` > 1: the tiled model, and the same
    model untiled measured in the same repeats (bare and draw): ``tiles_cost``."""
    from realtime.model.engine import Localizer
    from realtime.pipeline.render_stage import draw_parallelism
    loc, workers = Localizer.for_pipeline(model, device, threads, workers, imgsz=imgsz,
                                          tiles=tiles)
    plain = Localizer.for_pipeline(model, device, threads, workers, imgsz=imgsz)[0] \
        if tiles > 1 else None
    pools = tuple(dict.fromkeys(draw_parallelism(loc.provider, d) for d in draw_workers))
    threads = loc.threads
    clip = _read_frames(source, frames)
    if len(clip) < warmup + 2:
        raise UsageError(f"{source} has {len(clip)} readable frames; the bench needs at "
                         f"least {warmup + 2}")
    prepared = [loc.prepare(f) for f in clip]
    tensors = [x for x, _ in prepared]
    x, geo = prepared[0]
    plain_tensors = [plain.prepare(f)[0] for f in clip] if plain is not None else []
    bare, draw = [], []
    untiled: dict[str, list[float]] = {"bare_fps": [], "draw_fps": []}
    files: dict[str, list[float]] = {c: [] for c in codecs}
    by_pool: dict[int, dict[str, list[float]]] = {  # the first pool's file runs: file_fps
        d: {"draw": [], "file": files[codecs[0]] if d == pools[0] else []} for d in pools}
    stages: dict[str, list[float]] = {}
    together: dict[int, list[float]] = {n: [] for n in sources}
    with tempfile.TemporaryDirectory(prefix="camloc-bench-") as tmp:
        for r in range(repeats):  # interleaved, so drifts in machine load hit all three
            bare.append(bare_fps(loc, tensors, warmup, batch, workers))
            if plain is not None:  # the same model untiled, in the same repeat
                untiled["bare_fps"].append(bare_fps(plain, plain_tensors, warmup, batch, workers))
                untiled["draw_fps"].append(pipeline_fps(plain, source, len(clip), warmup, None,
                                                        batch, workers, None, pools[0])[0])
            for d in pools:  # the first pool size with every codec, the others the first
                runs = by_pool[d]
                runs["draw"].append(pipeline_fps(loc, source, len(clip), warmup, None, batch,
                                                 workers, None, d)[0])
                for c in codecs if d == pools[0] else codecs[:1]:
                    fps, st = pipeline_fps(loc, source, len(clip), warmup,
                                           Path(tmp) / f"bench{r}-{c}-{d}.mp4", batch, workers,
                                           c, d)
                    (files[c] if d == pools[0] else runs["file"]).append(fps)
                    for k, v in st.items() if c == codecs[0] and d == pools[0] else ():
                        stages.setdefault(k, []).extend(v)
            for n in sources:  # N copies of the clip at once, each with video and JSONL
                folder = Path(tmp) / f"sources{r}-{n}"
                folder.mkdir()
                together[n].append(sources_fps(loc, source, n, len(clip), warmup, folder,
                                               workers, pools[0], codecs[0]))
            draw = by_pool[pools[0]]["draw"]
            file_ = files[codecs[0]]
            log.info("repeat %d/%d: bare %.1f, draw %.1f, file %.1f fps",
                     r + 1, repeats, bare[-1], draw[-1], file_[-1])
    stage_ms = {k: round(float(median(stages[k])), 3) for k in STAGE_KEYS if stages.get(k)}
    result = {
        "bare_fps": round(median(bare), 2),
        "draw_fps": round(median(draw), 2),
        "file_fps": round(median(file_), 2),
        "stages_ms": stage_ms,
        "draw_over_bare": round(median(draw) / median(bare), 3),
        "file_over_bare": round(median(file_) / median(bare), 3),
        "codec": codecs[0],
        "file_fps_by_codec": {c: round(median(v), 2) for c, v in files.items()},
        "provider": loc.provider,
        "device": device_name(loc.provider),
        "in_graph_cams": bool(getattr(loc, "in_graph", False)),
        "model": loc.info.arch,
        "precision": loc.info.precision,
        "input_size": [int(x.shape[2]), int(x.shape[3])],
        "frame_size": [geo.frame_h, geo.frame_w],
        "frames": len(clip),
        "warmup": warmup,
        "repeats": repeats,
        "batch": batch,
        "workers": workers,
        "threads": threads,
        "draw_workers": pools[0],
        "by_draw_workers": {str(d): {"draw_fps": round(median(by_pool[d]["draw"]), 2),
                                     "file_fps": round(median(by_pool[d]["file"]), 2)}
                            for d in pools},
        "sources": sources_table(together) if sources else {},
        "tiles": tiles,
        **({"untiled": {k: round(median(v), 2) for k, v in untiled.items()},
            "tiles_cost": {"bare": round(median(untiled["bare_fps"]) / median(bare), 2),
                           "draw": round(median(untiled["draw_fps"]) / median(draw), 2)}}
           if plain is not None else {}),
        "runs": {"bare_fps": [round(v, 2) for v in bare], "draw_fps": [round(v, 2) for v in draw],
                 "file_fps": [round(v, 2) for v in file_],
                 **{f"file_fps_{c}": [round(v, 2) for v in vs] for c, vs in files.items()}},
    }
    return result


def format_table(r: dict[str, Any]) -> str:
    """A small human table of ``run_bench``'s figures."""
    h, w = r["frame_size"]
    ih, iw = r["input_size"]
    cams = "in-graph CAMs" if r.get("in_graph_cams") else "numpy CAMs"
    lines = [f"camloc bench: {r['model']} ({r['precision']}, {cams}) on {r['provider']} "
             f"({r.get('device', 'unknown')}), frames {w}x{h} "
             f"-> input {iw}x{ih}, {r['frames']} frames ({r['warmup']} warm-up), "
             f"median of {r['repeats']}, batch {r['batch']}, {r['workers']} worker(s) x "
             f"{r['threads'] or 'default'} thread(s), {r.get('draw_workers', 1)} draw "
             "worker(s)",
             f"  {'bare_fps':<10} {r['bare_fps']:>8.1f}   (ONNX Runtime alone)",
             f"  {'draw_fps':<10} {r['draw_fps']:>8.1f}   draw/bare = {r['draw_over_bare']:.2f}",
             f"  {'file_fps':<10} {r['file_fps']:>8.1f}   file/bare = {r['file_over_bare']:.2f}"
             f" ({r['codec']})",
             *(f"  {'file_fps':<10} {v:>8.1f}   with {c}"
               for c, v in r["file_fps_by_codec"].items() if c != r["codec"]),
             *(f"  {'draw_fps':<10} {v['draw_fps']:>8.1f}   file_fps {v['file_fps']:.1f}"
               f"   with {d} draw worker(s)"
               for d, v in r.get("by_draw_workers", {}).items()
               if d != str(r.get("draw_workers"))),
             *(f"  {'sources':<10} {v['fps']:>8.1f}   {n} at once, together: "
               f"{v['over_one']:.2f} x one source's rate"
               for n, v in r.get("sources", {}).items()),
             *(f"  {'tiles':<10} {r['tiles']}x{r['tiles']}: untiled bare "
               f"{r['untiled']['bare_fps']:.1f}, draw {r['untiled']['draw_fps']:.1f} fps; tiles "
               f"cost {r['tiles_cost']['bare']:.2f}x bare, {r['tiles_cost']['draw']:.2f}x draw"
               for _ in [0] if "tiles_cost" in r),
             "  stages (median ms per frame): " + ", ".join(
                 f"{k} {v:.2f}" for k, v in r["stages_ms"].items())]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = Parser("python -m realtime.bench", "Measure the bare model and the whole pipeline "
               "on the same video, in one run.")
    p.add_argument("--source", default=str(DEMO_CLIP), help="video file (default: the demo clip)")
    p.add_model()
    p.add_imgsz()
    p.add_tiles()
    p.add_device()
    p.add_workers()
    p.add_argument("--batch", type=int, default=1, help="frames per inference call")
    p.add_argument("--draw-workers", default=None, metavar="N[,N...]",
                   help="threads drawing consecutive frames, comma-separated to compare in "
                        "one run (the first is draw_fps, file_fps); default: as the CLI chooses")
    p.add_argument("--codec", default="h264",
                   help="video codec(s) of the file run, comma-separated (h264, mp4v, mjpeg, "
                        "h264_nvenc); the first one is file_fps, each one is measured")
    p.add_argument("--sources", default=None, metavar="N[,N...]",
                   help="also run N copies of the clip at once (e.g. 1,2,4,8), each writing "
                        "its video and JSONL: the aggregate rate against one source's")
    p.add_argument("--frames", type=int, default=150, help="frames per measurement")
    p.add_argument("--warmup", type=int, default=10, help="frames excluded at the start")
    p.add_argument("--repeats", type=int, default=3, help="runs; figures are their medians")
    p.add_argument("--json", type=Path, default=None, help="also write the figures here")
    p.add_argument("--events", action="store_true",
                   help="also measure the events output, off vs on")
    p.add_argument("--live", action="store_true", help="latency on a local stream paced like "
                   "a camera instead (python -m realtime.bench --live --help)")
    return p


def _pool_sizes(text: str | None) -> tuple[int | None, ...] | None:
    """--draw-workers "1,2" -> (1, 2); absent -> (None,) (the CLI's default); None if invalid."""
    if text is None:
        return (None,)
    try:
        sizes = tuple(int(v) for v in text.split(","))
    except ValueError:
        return None
    return sizes if min(sizes) >= 1 else None


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if "--live" in argv:  # latency on a paced stream: its own options
        from realtime.commands.bench_live import main as live_main

        return live_main([a for a in argv if a != "--live"], device_name)
    args = _parser().parse(argv, "bench")
    if isinstance(args, int):  # --help, or a usage error said in one line
        return args
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    pools = _pool_sizes(args.draw_workers)
    counts = _pool_sizes(args.sources) if args.sources else ()
    if min(args.frames, args.repeats, args.batch, args.workers or 1, args.threads or 1) < 1 \
            or args.warmup < 0 or pools is None or counts is None:
        print("bench: error: --frames, --repeats, --batch, --workers, --threads and each "
              "--draw-workers and --sources must be >= 1, --warmup >= 0",
              file=sys.stderr)
        return 2
    if not Path(args.source).is_file():
        print(f"bench: error: no such video file: {args.source}", file=sys.stderr)
        return 2
    try:
        result = run_bench(args.source, args.model, args.imgsz, args.device, args.frames,
                           args.warmup, args.repeats, args.threads, args.batch, args.workers,
                           tuple(c for c in args.codec.split(",") if c), pools,
                           tuple(counts), args.tiles)
        if args.events:  # the events output's cost, off vs on in this run
            from realtime.commands.bench_events import events_cost
            from realtime.model.engine import Localizer

            loc, workers = Localizer.for_pipeline(args.model, args.device, args.threads,
                                                  args.workers, imgsz=args.imgsz)
            result["events"] = events_cost(loc, args.source, args.frames, args.warmup,
                                           args.repeats, workers)
    except Exception as exc:  # noqa: BLE001 - user error 2, failed stage or bug 1; one line
        return report_error("bench", exc)
    print(format_table(result))
    if "events" in result:
        from realtime.commands.bench_events import format_events

        print(format_events(result["events"]))
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
