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
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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

window keys: q/Esc quit, space pause, h heatmap, b boxes, n/p next/previous class
"""


class UsageError(ValueError):
    """Malformed or conflicting command-line flags."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _int_at_least(low: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low}, got {value}")
        return value
    parse.__name__ = f"int>={low}"
    return parse


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (cheap: imports nothing heavy)."""
    p = _Parser(prog="python -m realtime", description=__doc__.split("\n\n")[0],
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
    a("--imgsz", type=_int_at_least(32), default=None, metavar="N",
      help="network input's longer side in pixels, a multiple of the model's stride "
           "(default: the shorter side 8/7 of the model's native size, 448x256 for a "
           "16:9 frame with Lite0; docs/LOCALIZATION.md)")
    a("--topk", type=_int_at_least(1), default=1, metavar="K",
      help="classes localized per frame (default: %(default)s)")
    a("--threshold", type=_fraction, default=None, metavar="T",
      help="box threshold, a fraction of each CAM's maximum (default: 0.3, chosen in "
           "docs/LOCALIZATION.md)")
    a("--smooth", type=_fraction, default=0.0, metavar="S",
      help="temporal smoothing of CAMs across frames, 0 = off (default: %(default)s)")
    a("--show", action="store_true", help="show a live window (skipped without a display)")
    a("--save", default=None, metavar="PATH",
      help="write the annotated video here (.mp4, .mkv, .mov: mp4v; .avi: MJPG)")
    a("--save-json", default=None, metavar="PATH",
      help="write one JSON object per processed frame here (JSON Lines)")
    a("--runs-dir", default="runs", metavar="DIR",
      help="without --save, --save-json or --show, outputs go to a new folder in here "
           "(default: %(default)s)")
    a("--max-frames", type=_int_at_least(1), default=None, metavar="N",
      help="stop after N frames (default: all)")
    a("--vid-stride", type=_int_at_least(1), default=1, metavar="N",
      help="process every N-th frame of a video file (default: %(default)s)")
    a("--no-heatmap", action="store_true", help="draw boxes only")
    a("--no-boxes", action="store_true", help="draw the heatmap only")
    a("--batch", type=_int_at_least(1), default=1, metavar="N",
      help="frames per inference call, files only (default: %(default)s)")
    a("--threads", type=_int_at_least(1), default=None, metavar="N",
      help="ONNX Runtime intra-op threads per inference (default: on the CPU, "
           "cores / workers)")
    a("--workers", type=_int_at_least(1), default=None, metavar="N",
      help="inference threads working on consecutive frames (default: on the CPU, one "
           "per core up to 4; on a GPU, 2)")
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


def _fresh_folder(root: Path, name: str) -> Path:
    """root/name, or root/name2, name3... : the first that does not exist yet."""
    for n in range(1, 100000):
        folder = root / (name if n == 1 else f"{name}{n}")
        if not folder.exists():
            return folder
    raise UsageError(f"too many runs in {root}; clean it up")


def _plan_outputs(args: argparse.Namespace) -> _Outputs:
    """Decide and check every output path before any frame is read."""
    from .sinks import VIDEO_FOURCC, check_output_path

    if args.save and args.save_json and Path(args.save).resolve() == Path(
            args.save_json).resolve():
        raise UsageError("--save and --save-json point to the same file")
    if args.save or args.save_json or args.show:
        video = check_output_path(args.save, "--save", tuple(VIDEO_FOURCC)) if args.save \
            else None
        jsonl = check_output_path(args.save_json, "--save-json") if args.save_json else None
        return _Outputs(video, jsonl, None)
    name = _run_name(args.source)
    folder = _fresh_folder(Path(args.runs_dir), name)
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
    from .sinks import Window, gui_available

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


@contextlib.contextmanager
def _stop_on_signals(run: Any) -> Iterator[None]:
    """SIGINT/SIGTERM: first one stops reading and drains; a second one aborts."""
    def handler(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if run.stopping:
            log.warning("%s again: aborting (frames written so far stay consistent)", name)
            run.abort()
        else:
            log.warning("%s: stopping; finishing the frames in flight (again to abort)", name)
            run.stop(name)

    old = {}
    with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _interact(window: Any, item: Any, run: Any, topk: int) -> None:
    """Show one frame with a HUD and act on keys (pause waits here, keys still work)."""
    from .draw import draw_hud

    label = f" | {item.result.labels[0]} {item.result.scores[0]:.2f}" if len(
        item.result.labels) else ""
    image = draw_hud(item.image, f"{run.meter.fps:.1f} fps | {run.stats.provider}{label}")
    action, paused = window.show(image), False
    while True:
        if action == "quit":
            run.stop("q")
            return
        if action == "pause":
            paused = not paused
        elif action is not None:
            run.options.apply(action, topk)
        if not paused or run.stopping:
            return
        action = window.poll(30)


def _summary(stats: Any, video: Any, jsonl: Any) -> str:
    s = stats
    head = (f"camloc: {s.source}: {s.frames_read} frames read, {s.processed} processed, "
            f"{s.dropped} dropped, {s.corrupt} corrupt skipped; {s.mean_fps:.1f} fps "
            f"({s.elapsed_s:.1f} s) on {s.provider}")
    lines = [head]
    if s.stopped_by or s.ended_because:
        lines.append(f"  stopped: {s.ended_because or s.stopped_by}")
    med = s.medians()
    if med:
        lines.append("  median ms/frame: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
    if video is not None:
        lines.append(f"  video: {video.path} ({video.frames} frames)")
    if jsonl is not None:
        lines.append(f"  json:  {jsonl.path} ({jsonl.lines} lines)")
    if video is None and jsonl is None:
        lines.append("  nothing saved (use --save / --save-json)")
    return "\n".join(lines)


def _logging_state() -> tuple[list[logging.Handler], bool, int]:
    root = logging.getLogger("realtime")
    return list(root.handlers), root.propagate, root.level


def _restore_logging(state: tuple[list[logging.Handler], bool, int]) -> None:
    """Leave logging as it was (main() may be called in-process, e.g. by tests)."""
    root = logging.getLogger("realtime")
    root.handlers[:], root.propagate, root.level = state[0], state[1], state[2]


def _setup_logging(verbose: int) -> None:
    class _Fmt(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            text = super().format(record)
            return text if text.startswith("camloc:") else f"camloc: {text}"

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Fmt("%(message)s"))
    root = logging.getLogger("realtime")
    root.handlers[:] = [handler]
    root.propagate = False
    root.setLevel(logging.WARNING if verbose == 0 else logging.INFO if verbose == 1
                  else logging.DEBUG)
    if verbose < 2:  # our messages say what went wrong; OpenCV's and FFmpeg's add noise
        os.environ.setdefault("OPENCV_LOG_LEVEL", "SILENT")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        if "cv2" in sys.modules:
            sys.modules["cv2"].utils.logging.setLogLevel(0)


def _run(args: argparse.Namespace) -> int:
    """Check outputs, open the source, load the model, run, summarize."""
    from .engine import Localizer
    from .pipeline import Pipeline, RenderOptions
    from .providers import parallelism
    from .sinks import JsonlSink, VideoSink
    from .sources import classify_source, frames_expected, open_source

    if args.source is not None:  # several sources: one process, outputs per source
        from .multi import expand_sources, run_cli

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
    with contextlib.ExitStack() as stack:
        source = open_source(args.source, stride=args.vid_stride)
        stack.callback(source.close)  # its reader starts with the pipeline
        workers, threads = parallelism(args.device, args.threads, args.workers)
        loc = Localizer(args.model, device=args.device, imgsz=args.imgsz, topk=args.topk,
                        threshold=args.threshold, smooth=args.smooth, threads=threads)
        if no_window:  # said only now: a bad source or model is the one line to see
            log.warning("--show skipped: %s%s", no_window, "; saving under "
                        f"{outputs.folder} instead" if outputs.folder else "")
        video = jsonl = None
        if outputs.video is not None:
            video = stack.enter_context(VideoSink(  # every N-th frame: 1/N the rate
                outputs.video, source.fps / getattr(source, "stride", 1)))
        if outputs.jsonl is not None:
            jsonl = stack.enter_context(JsonlSink(outputs.jsonl))
        if window is not None:
            stack.enter_context(window)
        options = RenderOptions(heatmap=not args.no_heatmap, boxes=not args.no_boxes)
        run = stack.enter_context(Pipeline(source, loc, video=video, jsonl=jsonl,
                                           draw=window is not None, options=options,
                                           max_frames=args.max_frames, batch=args.batch,
                                           workers=workers))
        total = frames_expected(source)
        if total is not None and args.max_frames is not None:
            total = min(total, args.max_frames)
        with _stop_on_signals(run):
            for item in _progress(run, total, source.live):
                if window is not None:
                    _interact(window, item, run, args.topk)
    print(_summary(run.stats, video, jsonl), flush=True)
    stopped = run.stats.stopped_by
    return 128 + signal.Signals[stopped].value if stopped in ("SIGINT", "SIGTERM") else 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status (0 ok, 1 failure, 2 user error, 128+N signal)."""
    from .errors import CamlocError, first_line

    verbose = 0
    saved = _logging_state()
    try:
        args = build_parser().parse_args(argv)
        verbose = args.verbose
        _setup_logging(verbose)
        return _run(args)
    except SystemExit as exc:  # --help, --version
        return int(exc.code or 0)
    except (UsageError, CamlocError, ValueError) as exc:
        if verbose >= 2:
            log.exception("user error")
        print(f"camloc: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("camloc: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a stage failed (PipelineError) or a bug: one line, no traceback
        if verbose >= 2:
            log.exception("failed")
        text = first_line(exc)
        prefix = "" if type(exc).__name__ == "PipelineError" else f"{type(exc).__name__}: "
        print(f"camloc: error: {prefix}{text}", file=sys.stderr)
        return 1
    finally:
        _restore_logging(saved)
