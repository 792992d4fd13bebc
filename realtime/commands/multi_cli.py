"""``python -m realtime --source A B C``: the command-line side of several sources in one
process (realtime.pipeline.multi runs them): output folders, the sinks per source (the
single-source CLI's: ``--codec``, H.264 by default, and JSONL), the summary with a
line per source, the exit status (0 all complete, 1 a source failed or was lost, 2
a user error such as none of the sources opening). ``--show`` and ``--serve`` show
every source as a tile of one mosaic (realtime.outputs.tiles).
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from realtime.errors import CamlocError, UsageError
from realtime.model.draw import RenderOptions
from realtime.outputs.events.options import check_event_args, event_sinks
from realtime.pipeline.multi import Feed, MultiRun, Retry

__all__ = ["NoSourceError", "run_cli", "summary"]

log = logging.getLogger(__name__)


def summary(run: MultiRun) -> str:
    """A line per source, then the total."""
    lines = []
    for f in run.feeds:
        s = f.source
        if s is None:
            lines.append(f"camloc: {f.spec}: not opened: {f.error}")
            continue
        head = (f"camloc: {f.spec}: {s.frames_read} frames read, {f.processed} processed, "
                f"{s.frames_dropped} dropped, {s.frames_corrupt} corrupt skipped; "
                f"{f.meter.mean_fps:.1f} fps")
        outs = [f"{sink.path} ({getattr(sink, 'frames', getattr(sink, 'lines', 0))})"
                for sink in f.sinks if hasattr(sink, "path")]
        lines.append(head + (f" -> {', '.join(outs)}" if outs else ""))
        if f.error:
            lines.append(f"  lost: {f.error}")
    lines += [f"  stopped: {run.stopped_by}"] if run.stopped_by else []
    total = sum(f.processed for f in run.feeds)
    rate = total / run.elapsed_s if run.elapsed_s > 0 else 0.0
    lines.append(f"camloc: {len(run.feeds)} sources, {total} frames in {run.elapsed_s:.1f} s "
                 f"({rate:.1f} fps together) on {getattr(run.localizer, 'provider', '')}")
    return "\n".join(lines)


class NoSourceError(CamlocError, ValueError):
    """None of the sources could be opened."""


def _folders(args: Any) -> tuple[Path | None, Path | None]:
    """(video folder, JSONL folder): --save/--save-json as folders, else a fresh run folder."""
    from realtime.commands.parser import fresh_folder

    if args.save or args.save_json or args.show or args.serve:
        out = []
        for flag, value in (("--save", args.save), ("--save-json", args.save_json)):
            if value and not (value.endswith(("/", "\\")) or Path(value).is_dir()):
                raise UsageError(f"{flag} {value}: with several sources, give a folder (one "
                                 "file per source goes in it)")
            out.append(Path(value) if value else None)
        return out[0], out[1]
    folder = fresh_folder(Path(args.runs_dir), "multi")
    return folder, folder


def run_cli(args: Any, specs: Sequence[str]) -> int:
    """``python -m realtime`` with several sources: run, print the summary, exit status.
    Outputs are the single-source CLI's sinks (``--codec``: H.264 by default), one set per
    source."""
    import signal

    from realtime.commands.parser import stop_on_signals
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.tiles import MosaicWindow, TileHolder
    from realtime.sources.names import unique_names

    names = unique_names(specs)
    window = _window(args, len(specs))
    args.show = window is not None
    video_dir, json_dir = _folders(args)
    suffix = ".avi" if args.codec == "mjpeg" else ".mp4"
    if video_dir is not None:  # a bad --codec or a missing encoder: one line now, exit 2
        open_video_sink(video_dir / f"{names[0]}{suffix}", 25.0, args.codec).close()
    options = RenderOptions(heatmap=not args.no_heatmap, boxes=not args.no_boxes)
    check_event_args(args)  # events (docs/EVENTS.md): a bad flag is one line, now
    holder = TileHolder(names) if args.show or args.serve else None
    with contextlib.ExitStack() as stack:
        web = None
        if args.serve:
            from realtime.outputs.serve import open_web_view

            web = stack.enter_context(open_web_view(args.serve, args.token, options, args.topk,
                                                    tiles=holder))
            print(f"camloc: serving the live view on {', '.join(web.urls)}", flush=True)
        shown = stack.enter_context(contextlib.closing(MosaicWindow(
            window, holder, args.topk))) if window is not None else None
        run = _run(args, specs, names, options, video_dir, json_dir, holder, shown, web)
        if shown is not None:
            shown.attach(run)
        if web is not None:
            web.attach(run)
        with stop_on_signals(run):
            run.run()
    print(summary(run), flush=True)
    failed = [f for f in run.feeds if f.error is not None]
    if failed and all(f.source is None for f in run.feeds):
        raise NoSourceError(f"none of the {len(specs)} sources could be opened "
                            f"({failed[0].spec}: {failed[0].error})")
    for f in failed:
        print(f"camloc: error: {f.spec}: {f.error}", file=sys.stderr)
    if run.stopped_by in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[run.stopped_by].value
    return 1 if failed else 0


def _window(args: Any, n: int) -> Any:
    """The --show window where one can be opened; else None, said in one line."""
    if not args.show:
        return None
    from realtime.outputs.sinks import Window, gui_available

    ok, why = gui_available()
    if not ok:
        log.warning("--show skipped: %s", why)
        return None
    return Window(f"camloc - {n} sources")


def _run(args: Any, specs: Sequence[str], names: list[str], options: RenderOptions,
         video_dir: Path | None, json_dir: Path | None, holder: Any, shown: Any,
         web: Any = None) -> MultiRun:
    """The MultiRun with the CLI's sinks per source (and a tile each for --show/--serve)."""
    from realtime.model.engine import Localizer
    from realtime.outputs.recorder import open_video_sink
    from realtime.outputs.sinks import JsonlSink
    from realtime.outputs.tiles import TileSink

    suffix = ".avi" if args.codec == "mjpeg" else ".mp4"
    loc, _ = Localizer.for_pipeline(args.model, args.device, args.threads, 1, imgsz=args.imgsz,
                                    topk=args.topk, threshold=args.threshold, smooth=args.smooth)

    def sinks(feed: Feed) -> list[Any]:
        assert feed.source is not None
        fps = feed.source.fps / feed.source.stride  # every N-th frame: 1/N the rate
        out: list[Any] = []
        if video_dir is not None:
            out.append(open_video_sink(video_dir / f"{feed.name}{suffix}", fps, args.codec))
        if json_dir is not None:
            out.append(JsonlSink(json_dir / f"{feed.name}.jsonl"))
        if holder is not None:  # after the files: shown once written
            out.append(TileSink(holder, names.index(feed.name)))
        out += event_sinks(args, feed.name, fps, None, web)  # events (docs/EVENTS.md)
        return out

    return MultiRun(specs, names, loc, sinks, stride=args.vid_stride,
                    max_frames=args.max_frames, retry=Retry(give_up_after_s=args.give_up_after),
                    batch=loc.provider != "CPUExecutionProvider", options=options,
                    tick=None if shown is None else shown.tick)
