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
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from realtime.commands.parser import (
    Parser,
    int_at_least,
    logging_state,
    restore_logging,
    setup_logging,
    stop_on_signals,
)
from realtime.errors import UsageError, report_error
from realtime.outputs.events.options import add_event_arguments, check_event_args, event_sinks
from realtime.outputs.writes import silence_stdout  # stdlib only: the parser stays cheap

__all__ = ["DEMO_CLIP", "UsageError", "build_parser", "main"]

log = logging.getLogger("realtime.cli")

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
    p = Parser("python -m realtime", __doc__.split("\n\n")[0], epilog=_EPILOG)
    a = p.add_argument
    a("--source", nargs="+", default=None, metavar="SRC",
      help="camera index (0) or device path, video file, image, folder, glob, or "
           "rtsp/http(s) URL (default: the bundled demo clip); several, or a .streams/.txt "
           "list, run together with one output each")
    p.add_model()
    p.add_device()
    p.add_imgsz()
    p.add_tiles()
    p.add_tile_blur()
    p.add_topk()
    p.add_threshold()
    p.add_smooth()
    a("--show", action="store_true", help="show a live window (skipped without a display)")
    a("--save", default=None, metavar="PATH",
      help="write the annotated video here (.mp4, .mov, .mkv; .avi: MJPEG); a folder (DIR/) "
           "holds one video per source, named after it")
    p.add_codec()
    a("--save-json", default=None, metavar="PATH",
      help="write one JSON object per processed frame here (JSON Lines); a folder (DIR/) "
           "holds one file per source")
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
      help="stop each source after N frames (default: all)")
    a("--vid-stride", type=int_at_least(1), default=1, metavar="N",
      help="process every N-th frame of a video file (default: %(default)s)")
    a("--give-up-after", type=int_at_least(0), default=None, metavar="S", help="cameras, streams: "
      "end that source (exit 1) after S s without frames (default: reopen every 1 s while the "
      "run lasts)")
    a("--no-heatmap", action="store_true", help="draw boxes only")
    a("--no-boxes", action="store_true", help="draw the heatmap only")
    a("--batch", type=int_at_least(1), default=1, metavar="N",
      help="frames per inference call, from one source or several (default: %(default)s; "
           "with several sources on a GPU, one frame of each)")
    p.add_workers()
    a("--draw-workers", type=int_at_least(1), default=None, metavar="N",
      help="threads drawing consecutive frames between the in-order CAMs and the in-order "
           "outputs (default: 1 on the CPU; with the model on a GPU, cores / 4 up to 4)")
    p.add_logging()
    add_event_arguments(p)  # --events, --mqtt, --webhook, ... (docs/EVENTS.md)
    return p


def _run_name(source: str) -> str:
    from realtime.sources.names import source_name

    return "demo" if source == str(DEMO_CLIP) else source_name(source)


def _window_or_why(args: argparse.Namespace, n: int) -> tuple[Any, str]:
    """(Window, "") for --show where one can be opened, else (None, why not)."""
    if not args.show:
        return None, ""
    from realtime.outputs.sinks import Window, gui_available

    ok, why = gui_available()
    title = f"camloc - {args.source[0]}" if n == 1 else f"camloc - {n} sources"
    return (Window(title), "") if ok else (None, why)


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


def _specs(args: argparse.Namespace) -> list[str]:
    """The sources to run: --source values (lists expanded) or the bundled demo clip."""
    from realtime.sources.lists import expand_sources

    if args.source is not None:
        return expand_sources(args.source)
    if not DEMO_CLIP.is_file():
        raise UsageError(f"the demo clip {DEMO_CLIP} is missing; make it with "
                         "python tools/make_demo_clip.py, or pass --source")
    return [str(DEMO_CLIP)]


def _preopen(specs: list[str], stride: int) -> list[Any]:
    """Files, images and folders opened now (a missing file: one line before the model
    loads); cameras and streams are opened, and retried, by the pipeline's readers. With
    several sources a file that does not open is left to its reader, which reports it
    while the others run."""
    from realtime.sources import SourceError, classify_source, open_source

    out: list[Any] = []
    for spec in specs:
        if classify_source(spec) in ("camera", "stream"):
            out.append(spec)
            continue
        try:
            out.append(open_source(spec, stride=stride))
        except SourceError:
            if len(specs) == 1:
                raise
            out.append(spec)
    return out


def _run(args: argparse.Namespace) -> int:
    """Check outputs, open the sources, load the model, run, summarize."""
    from realtime.commands.plan import plan_outputs
    from realtime.commands.summary import exit_status, files_of, summary
    from realtime.commands.viewers import open_viewers
    from realtime.model.draw import RenderOptions
    from realtime.model.engine import Localizer
    from realtime.outputs.writes import check_video, explain
    from realtime.pipeline import feeds
    from realtime.pipeline.render_stage import draw_parallelism
    from realtime.pipeline.runner import Pipeline
    from realtime.sources import classify_source

    specs = _specs(args)
    args.source = specs
    live = [classify_source(s) in ("camera", "stream") for s in specs]
    if args.batch > 1 and all(live):
        raise UsageError("--batch applies to files; live sources run one frame at a time")
    kinds = [classify_source(s) for s, is_live in zip(specs, live) if is_live]
    if args.vid_stride != 1 and kinds:
        raise UsageError(f"--vid-stride applies to files, not to a live {kinds[0]} (live "
                         "sources already keep only the newest frame)")
    if args.no_heatmap and args.no_boxes and args.save:
        log.warning("--no-heatmap and --no-boxes: the saved video will have no overlay")
    window, no_window = _window_or_why(args, len(specs))
    args.show = window is not None
    plan = plan_outputs(args, specs, _run_name(specs[0]))
    check_event_args(args)  # events: a bad flag is one line before anything opens
    options = RenderOptions(heatmap=not args.no_heatmap, boxes=not args.no_boxes)
    with contextlib.ExitStack() as stack:  # runs explain() last: after the sinks are closed
        made: dict[int, list[Any]] = {}
        stack.push(lambda _t, exc, _tb: explain(exc, *_kept(made)))
        shared, web = open_viewers(args, stack, options, window, plan.names)
        sources = _preopen(specs, args.vid_stride)
        for s in sources:
            if not isinstance(s, str):
                stack.callback(s.close)
        loc, workers = Localizer.for_pipeline(
            args.model, args.device, args.threads, args.workers, imgsz=args.imgsz,
            topk=args.topk, threshold=args.threshold, smooth=args.smooth, tiles=args.tiles,
            tile_blur=args.tile_blur)
        draw_workers = draw_parallelism(loc.provider, args.draw_workers)  # same granted provider
        if no_window:  # said only now: a bad source or model is the one line to see
            log.warning("--show skipped: %s%s", no_window, "; saving under "
                        f"{plan.folder} instead" if plan.folder else "")
        run = stack.enter_context(Pipeline(
            sources, loc, names=plan.names, sinks=shared, sinks_for=_sinks_for(args, plan, made, web),
            draw=False, options=options, max_frames=args.max_frames,
            batch=_batch(args, loc, len(specs)), workers=workers, draw_workers=draw_workers,
            stride=args.vid_stride,
            retry=dataclasses.replace(feeds.DEFAULT_RETRY, give_up_after_s=args.give_up_after)))
        if web is not None:
            web.attach(run)
        log.info("%d source%s on %s: %d inference worker%s, batch %d, %d draw worker%s",
                 len(specs), "s" * (len(specs) > 1), loc.provider, workers,
                 "s" * (workers > 1), run.batch, run.draw_workers, "s" * (run.draw_workers > 1))
        total = _total(sources, args.max_frames)
        with stop_on_signals(run):
            for _item in _progress(run, total, any(live)):
                pass  # the sinks did the work; the bar counts the frames
    for sinks in made.values():  # the summary never reports frames that are not in the file
        check_video(files_of(sinks)[0])
    print(summary(run, made), flush=True)
    return exit_status(run, made)


def _sinks_for(args: argparse.Namespace, plan: Any, made: dict[int, list[Any]],
               web: Any) -> Any:
    """The factory of each source's own outputs (video then JSONL: both or neither per
    frame; then its events), called once its source is open (its frame rate known)."""
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.sinks import JsonlSink
    from realtime.sources import ImageSource

    def make(feed: Any) -> list[Any]:
        src, i, out = feed.source, feed.index, []
        made[i] = out
        if plan.videos[i] is not None:  # every N-th frame: 1/N the rate
            out.append(open_video_sink(plan.videos[i], src.fps / src.stride, args.codec,
                                       size=src.size if isinstance(src, ImageSource) else None))
        if plan.jsonls[i] is not None:
            out.append(JsonlSink(plan.jsonls[i]))
        events = event_sinks(args, feed.name, src.fps / src.stride, src.size, web)
        return [*out, *events]  # events (docs/EVENTS.md)

    return make


def _kept(made: dict[int, list[Any]]) -> tuple[Any, Any]:
    """The one source's video and JSONL sinks (what a full disk's message names)."""
    from realtime.commands.summary import files_of

    return files_of(next(iter(made.values()))) if len(made) == 1 else (None, None)


def _batch(args: argparse.Namespace, loc: Any, n: int) -> int:
    """Frames per inference call: --batch; with several sources on a GPU, one frame of
    each source in one call (on the CPU batching does not pay: docs/SCALING.md)."""
    if args.batch > 1 or n == 1 or loc.provider == "CPUExecutionProvider":
        return args.batch
    return min(n, 32)


def _total(sources: list[Any], max_frames: int | None) -> int | None:
    from realtime.sources import frames_expected

    totals = [None if isinstance(s, str) else frames_expected(s) for s in sources]
    if any(t is None for t in totals):
        return None
    per = [min(t, max_frames) if max_frames is not None else t for t in totals]
    return sum(per)


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
