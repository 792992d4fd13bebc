"""``python -m realtime``: localize objects with CAMs in a video, camera, stream or images.

With no arguments it runs the main job: the bundled demo clip through the
default model, the annotated video and the per-frame JSONL written to a new
folder under ``runs/``, and a summary printed. User errors (a missing source, an
unwritable output, a corrupt model, conflicting flags) print one line on
stderr and exit with status 2; Ctrl-C or SIGTERM stop reading, finish the
frames in flight, close every output and exit with 130 or 143.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.commands.parser import (
    Parser,
    fraction,
    fresh_folder,
    int_at_least,
    logging_state,
    restore_logging,
    setup_logging,
    stop_on_signals,
)
from realtime.errors import StageError, UsageError, report_error
from realtime.outputs.writes import silence_stdout  # stdlib only: the parser stays cheap

__all__ = ["DEMO_CLIP", "UsageError", "build_parser", "main"]

log = logging.getLogger("realtime.cli")

MAX_IMGSZ = 4096  # covers a 4K frame (3840); --imgsz 100000 asked for 22.5 GB (RELIABILITY.md)
DEMO_CLIP = Path(__file__).resolve().parent.parent / "assets" / "demo.mp4"
_EPILOG = """\
examples:
  python -m realtime                                  # demo clip -> runs/demo/
  python -m realtime --source 0 --show                # webcam, live window
  python -m realtime --source video.mp4 --save out.mp4 --save-json out.jsonl
  python -m realtime --source rtsp://host/stream --show --topk 3
  python -m realtime --source "photos/*.jpg" --save-json photos.jsonl
  python -m realtime --source a.mp4 b.mp4 rtsp://cam/1 --save out/ --save-json out/
  python -m realtime --source 0 --serve 8080          # headless box: watch in a browser

window keys: q/Esc quit, space pause, h heatmap, b boxes, n/p next/previous class
"""


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (cheap: imports nothing heavy)."""
    p = Parser(prog="python -m realtime", description=__doc__.split("\n\n")[0],
               epilog=_EPILOG, formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(
                   prog, max_help_position=30))
    a = p.add_argument
    a("--source", nargs="+", default=None, metavar="SRC",
      help="camera index (0) or device path, video file, image, folder, glob, or "
           "rtsp/http(s) URL (default: the bundled demo clip); several, or a .streams/.txt "
           "list, run together with one output each (realtime/multi.py)")
    a("--model", default="efficientnet_lite0", metavar="M",
      help="zoo name or .onnx path (default: %(default)s)")
    a("--device", default="auto", metavar="D",
      help="auto, cpu, cuda[:N], tensorrt[:N], openvino, coreml, directml (default: %(default)s)")
    a("--imgsz", type=int_at_least(32, MAX_IMGSZ), default=None, metavar="N",
      help="network input's longer side in pixels, a multiple of the model's stride "
           "(default: the shorter side 8/7 of the model's native size, 448x256 for a "
           "16:9 frame with Lite0; docs/LOCALIZATION.md)")
    a("--topk", type=int_at_least(1), default=1, metavar="K",
      help="classes localized per frame (default: %(default)s)")
    a("--threshold", type=fraction, default=None, metavar="T",
      help="box threshold, a fraction of each CAM's maximum (default: 0.3, chosen in "
           "docs/LOCALIZATION.md)")
    a("--smooth", type=fraction, default=0.0, metavar="S",
      help="temporal smoothing of CAMs across frames, 0 = off (default: %(default)s)")
    a("--show", action="store_true", help="show a live window (skipped without a display)")
    a("--save", default=None, metavar="PATH",
      help="write the annotated video here (.mp4, .mov, .mkv; .avi: MJPEG)")
    a("--codec", default=None, choices=("h264", "h264_nvenc", "mp4v", "mjpeg"), metavar="C",
      help="video codec of --save: h264, h264_nvenc, mp4v, mjpeg (default: h264 in "
           "fragmented MP4, playable in browsers and after a crash; mjpeg for .avi)")
    a("--save-json", default=None, metavar="PATH",
      help="write one JSON object per processed frame here (JSON Lines)")
    a("--serve", default=None, metavar="[HOST:]PORT",
      help="serve a live page (video, detections, controls) and /metrics on 127.0.0.1 "
           "unless a host is given (0.0.0.0: every interface)")
    a("--token", default=os.environ.get("CAMLOC_TOKEN") or None, metavar="T",
      help="require this token for the --serve page, stream and API (default: "
           "$CAMLOC_TOKEN; the variable keeps it out of the process list)")
    a("--runs-dir", default="runs", metavar="DIR",
      help="without --save, --save-json or --show, outputs go to a new folder in here "
           "(default: %(default)s)")
    a("--max-frames", type=int_at_least(1), default=None, metavar="N",
      help="stop after N frames (default: all)")
    a("--vid-stride", type=int_at_least(1), default=1, metavar="N",
      help="process every N-th frame of a video file (default: %(default)s)")
    a("--give-up-after", type=int_at_least(0), default=None, metavar="S", help="cameras, streams: "
      "exit 1 after S s without frames (default: reopen every 1 s while the run lasts)")
    a("--no-heatmap", action="store_true", help="draw boxes only")
    a("--no-boxes", action="store_true", help="draw the heatmap only")
    a("--batch", type=int_at_least(1), default=1, metavar="N",
      help="frames per inference call, files only (default: %(default)s)")
    a("--threads", type=int_at_least(1), default=None, metavar="N",
      help="ONNX Runtime intra-op threads per inference (default: on the CPU, "
           "cores / workers)")
    a("--workers", type=int_at_least(1), default=None, metavar="N",
      help="inference threads working on consecutive frames (default: on the CPU, one "
           "per core up to 4; on a GPU, 2)")
    a("--draw-workers", type=int_at_least(1), default=None, metavar="N",
      help="threads drawing consecutive frames between the in-order CAMs and the in-order "
           "outputs (default: 1 on the CPU; with the model on a GPU, cores / 4 up to 4)")
    a("-v", "--verbose", action="count", default=0,
      help="more logging (-vv: debug, with tracebacks)")
    return p


@dataclass
class _Outputs:
    video: Path | None
    jsonl: Path | None
    folder: Path | None  # a fresh folder under --runs-dir, when outputs were chosen for us


def _run_name(source: str) -> str:
    if source == str(DEMO_CLIP):
        return "demo"
    s = source.rstrip("/\\")
    if s.isdigit():
        return f"camera{s}"
    if "://" in s:
        return "stream"
    stem = Path(s).stem
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in stem).strip("._") or "run"


def _plan_outputs(args: argparse.Namespace) -> _Outputs:
    """Decide and check every output path before any frame is read."""
    from realtime.outputs.guard import input_files, refuse_overwrites
    from realtime.outputs.recorder import video_suffixes
    from realtime.outputs.sinks import check_output_path

    refuse_overwrites(input_files(args.source, args.model),  # before anything is opened
                      {"--save": args.save, "--save-json": args.save_json})
    if args.save and args.save_json and Path(args.save).resolve() == Path(
            args.save_json).resolve():
        raise UsageError("--save and --save-json point to the same file")
    if args.save or args.save_json or args.show or args.serve:
        video = check_output_path(args.save, "--save", video_suffixes(args.codec)) if args.save \
            else None
        jsonl = check_output_path(args.save_json, "--save-json") if args.save_json else None
        return _Outputs(video, jsonl, None)
    name = _run_name(args.source)
    folder = fresh_folder(Path(args.runs_dir), name)
    base = folder
    while not base.exists():  # created only once the run starts: nothing left on errors
        base = base.parent
    if not base.is_dir() or not os.access(base, os.W_OK | os.X_OK):
        raise UsageError(f"--runs-dir {args.runs_dir}: cannot create {folder} "
                         f"({base} is not a writable folder)")
    return _Outputs(folder / f"{name}.mp4", folder / f"{name}.jsonl", folder)


def _window_or_why(args: argparse.Namespace) -> tuple[Any, str]:
    """(Window, "") for --show where one can be opened, else (None, why not)."""
    if not args.show:
        return None, ""
    from realtime.outputs.sinks import Window, gui_available

    ok, why = gui_available()
    return (Window(f"camloc - {args.source}"), "") if ok else (None, why)


def _progress(items: Iterable[Any], total: int | None, live: bool) -> Iterable[Any]:
    """A tqdm bar with frames per second for files (on a terminal); plain items otherwise."""
    if live:
        return items
    try:
        from tqdm import tqdm
    except ImportError:
        if sys.stderr.isatty():
            log.warning("no progress bar: tqdm is not installed (pip install tqdm)")
        return items
    return tqdm(items, total=total, unit="frame", dynamic_ncols=True, disable=None, leave=False)


def _summary(stats: Any, video: Any, jsonl: Any, latency: str = "") -> str:
    s = stats
    head = (f"camloc: {s.source}: {s.frames_read} frames read, {s.processed} processed, "
            f"{s.dropped} dropped, {s.corrupt} corrupt skipped"
            f"{f', {s.skipped} too small skipped' if s.skipped else ''}; {s.mean_fps:.1f} fps "
            f"({s.elapsed_s:.1f} s) on {s.provider}")
    lines = [head]
    if s.stopped_by or s.ended_because:
        lines.append(f"  stopped: {s.ended_because or s.stopped_by}")
    med = s.medians()
    if med:
        lines.append("  median ms/frame: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    if latency:  # issue 27: from each frame's arrival to each output
        lines.append(f"  latency: {latency}")
    if video is not None:
        lines.append(f"  video: {video.path} ({video.frames} frames)")
    if jsonl is not None:
        lines.append(f"  json:  {jsonl.path} ({jsonl.lines} lines)")
    if video is None and jsonl is None:
        lines.append("  nothing saved (use --save / --save-json)")
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    """Check outputs, open the source, load the model, run, summarize."""
    from realtime.model.draw import RenderOptions
    from realtime.model.engine import Localizer
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.sinks import JsonlSink, WindowSink
    from realtime.outputs.writes import check_video, explain
    from realtime.pipeline.render_stage import draw_parallelism
    from realtime.pipeline.runner import Pipeline
    from realtime.sources import ImageSource, classify_source, frames_expected, open_source

    if args.source is not None:  # several sources: one process, outputs per source
        from realtime.commands.multi_cli import run_cli
        from realtime.pipeline.multi import expand_sources

        specs = expand_sources(args.source)
        if len(specs) > 1:
            return run_cli(args, specs)
        args.source = specs[0]
    if args.source is None:
        if not DEMO_CLIP.is_file():
            raise UsageError(f"the demo clip {DEMO_CLIP} is missing; make it with "
                             "python tools/make_demo_clip.py, or pass --source")
        args.source = str(DEMO_CLIP)
    if args.batch > 1 and classify_source(args.source) in ("camera", "stream"):
        raise UsageError("--batch applies to files; live sources run one frame at a time")
    if args.no_heatmap and args.no_boxes and args.save:
        log.warning("--no-heatmap and --no-boxes: the saved video will have no overlay")
    window, no_window = _window_or_why(args)
    args.show = window is not None
    outputs = _plan_outputs(args)
    options = RenderOptions(heatmap=not args.no_heatmap, boxes=not args.no_boxes)
    video = jsonl = None
    with contextlib.ExitStack() as stack:  # runs explain() last: after the sinks are closed
        stack.push(lambda _t, exc, _tb: explain(exc, video, jsonl))
        web = None
        if args.serve:
            from realtime.outputs.serve import open_web_view

            web = stack.enter_context(open_web_view(args.serve, args.token, options, args.topk))
            print(f"camloc: serving the live view on {', '.join(web.urls)}", flush=True)
        source = open_source(args.source, stride=args.vid_stride,
                             give_up_after_s=args.give_up_after)  # live sources only
        stack.callback(source.close)  # its reader starts with the pipeline
        loc, workers = Localizer.for_pipeline(
            args.model, args.device, args.threads, args.workers, imgsz=args.imgsz,
            topk=args.topk, threshold=args.threshold, smooth=args.smooth)
        draw_workers = draw_parallelism(loc.provider, args.draw_workers)  # same granted provider
        if no_window:  # said only now: a bad source or model is the one line to see
            log.warning("--show skipped: %s%s", no_window, "; saving under "
                        f"{outputs.folder} instead" if outputs.folder else "")
        sinks: list[Any] = []  # fed in this order: video then JSONL, both or neither per frame
        if outputs.video is not None:
            video = stack.enter_context(open_video_sink(  # every N-th frame: 1/N the rate
                outputs.video, source.fps / source.stride, args.codec,
                size=source.size if isinstance(source, ImageSource) else None))
            sinks.append(video)
        if outputs.jsonl is not None:
            jsonl = stack.enter_context(JsonlSink(outputs.jsonl))
            sinks.append(jsonl)
        if window is not None:
            sinks.append(stack.enter_context(WindowSink(window)))
        if web is not None:
            sinks.append(web)
        run = stack.enter_context(Pipeline(source, loc, sinks=sinks, draw=False, options=options,
                                           max_frames=args.max_frames, batch=args.batch,
                                           workers=workers, draw_workers=draw_workers))
        total = frames_expected(source)
        if total is not None and args.max_frames is not None:
            total = min(total, args.max_frames)
        with stop_on_signals(run):
            for _item in _progress(run, total, source.live):
                pass  # the sinks did the work; the bar counts the frames
    check_video(video)  # the summary never reports frames that are not in the file
    from realtime.outputs.latency import latency_line, rings_of  # issue 27

    print(_summary(run.stats, video, jsonl, latency_line(rings_of(run.sinks))), flush=True)
    if getattr(source, "lost", False):  # gone for --give-up-after: a failure, not an end
        return report_error("camloc", StageError(source.ended_because))
    stopped = run.stats.stopped_by
    return 128 + signal.Signals[stopped].value if stopped in ("SIGINT", "SIGTERM") else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure or bug, 2 user error, 128+N
    signal); see :mod:`realtime.errors`."""
    verbose = 0
    saved = logging_state()
    try:
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        setup_logging(verbose)
        return _run(args)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except KeyboardInterrupt:
        print("camloc: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # stdout closed (| head), files complete: quiet, 141 as for SIGPIPE
        silence_stdout()
        return 128 + signal.SIGPIPE.value
    except Exception as exc:  # noqa: BLE001 - user error 2, failed stage or bug 1; one line
        return report_error("camloc", exc, verbose)
    finally:
        restore_logging(saved)
