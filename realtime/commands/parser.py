"""What camloc's CLIs share: argument types, the one parser class (errors are
:class:`~realtime.errors.UsageError`; the shared flags declared once), logging set-up and
tear-down, fresh run folders and graceful stops on SIGINT/SIGTERM.

``python -m realtime`` (cli.py), ``python -m realtime.bench``, ``python -m
realtime.batch`` use these, so flags mean the same, messages look the same
(``camloc: ...``) and every error ends in :func:`realtime.errors.report_error`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from realtime.errors import UsageError

__all__ = ["Parser", "fraction", "fresh_folder", "int_at_least", "logging_state",
           "restore_logging", "setup_logging", "stop_on_signals"]

log = logging.getLogger(__name__)

LoggingState = tuple[list[logging.Handler], bool, int]


MAX_IMGSZ = 4096  # covers a 4K frame (3840); --imgsz 100000 asked for 22.5 GB (RELIABILITY.md)
MAX_TILES = 4     # realtime.model.tiling.MAX_TILES (not imported here: the parser stays cheap)
TILE_BLUR = 1.75  # realtime.model.tiling.BLUR (tests/test_small_objects.py checks they agree)


class Parser(argparse.ArgumentParser):
    """The one argument parser of camloc's five commands (``python -m realtime``,
    ``realtime.batch``, ``realtime.bench``, ``realtime.evaluate``, ``export``): errors raise
    :class:`UsageError` (one line, exit 2) instead of printing usage, defaults are shown,
    and the flags they share are declared once, here, with the same bounds and help."""

    def __init__(self, prog: str, description: str, **kw: Any) -> None:
        kw.setdefault("formatter_class", _Formatter)
        super().__init__(prog=prog, description=description, **kw)

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)

    def parse(self, argv: Any, prog: str) -> argparse.Namespace | int:
        """The parsed arguments, or the exit status to return at once: 0 after ``--help``,
        2 with one line ``prog: error: ...`` for a usage error."""
        try:
            return self.parse_args(argv)
        except SystemExit as exc:  # --help
            return int(exc.code or 0)
        except UsageError as exc:
            from realtime.errors import report_error

            return report_error(prog, exc)

    # -- the shared flags ------------------------------------------------------------------
    def add_model(self, default: str | None = "efficientnet_lite0") -> None:
        self.add_argument("--model", default=default, required=default is None, metavar="M",
                          help="zoo name or .onnx path" + ("" if default is None else
                                                           " (default: %(default)s)"))

    def add_device(self) -> None:
        self.add_argument("--device", default="auto", metavar="D",
                          help="auto, cpu, cuda[:N], tensorrt[:N], openvino, coreml, directml "
                               "(default: %(default)s)")

    def add_imgsz(self) -> None:
        self.add_argument("--imgsz", type=int_at_least(32, MAX_IMGSZ), default=None,
                          metavar="N",
                          help="network input's longer side in pixels, a multiple of the "
                               "model's stride (default: the shorter side 8/7 of the model's "
                               "native size, 448x256 for a 16:9 frame with Lite0; "
                               "docs/LOCALIZATION.md)")

    def add_tiles(self) -> None:
        self.add_argument("--tiles", type=int_at_least(1, MAX_TILES), default=1, metavar="N",
                          help="also run the model on an N x N grid of overlapping tiles, in "
                               "one batch with the frame, and merge their CAMs: finds smaller "
                               "objects, costs about N*N+1 times the model's work; 1 = off "
                               "(default: %(default)s; docs/TRAINING.md, \"Tiles\")")

    def add_tile_blur(self) -> None:
        self.add_argument("--tile-blur", type=number_at_least(0.0), default=None,
                          metavar="CELLS",
                          help="with --tiles: the merged map's blur taken off its boxes' sides "
                               "below threshold 0.5, in the map's cells; 0 = off, for a model "
                               f"with sharp maps (default: the model's stored one, else {TILE_BLUR}; "
                               "models trained by export --train store 0; docs/TRAINING.md, "
                               "\"Small objects' boxes\")")

    def add_topk(self) -> None:
        self.add_argument("--topk", type=int_at_least(1), default=1, metavar="K",
                          help="classes localized per frame (default: %(default)s)")

    def add_threshold(self) -> None:
        self.add_argument("--threshold", type=fraction, default=None, metavar="T",
                          help="box threshold, a fraction of each CAM's maximum (default: the "
                               "model's stored camloc.threshold, else 0.3; "
                               "docs/LOCALIZATION.md)")

    def add_smooth(self) -> None:
        self.add_argument("--smooth", type=fraction, default=0.0, metavar="S",
                          help="temporal smoothing of CAMs across frames, 0 = off "
                               "(default: %(default)s)")

    def add_workers(self) -> None:
        """--workers and --threads: how the model runs (the CLI's choice when not given)."""
        self.add_argument("--threads", type=int_at_least(1), default=None, metavar="N",
                          help="ONNX Runtime intra-op threads per inference (default: on the "
                               "CPU, cores / workers)")
        self.add_argument("--workers", type=int_at_least(1), default=None, metavar="N",
                          help="inference threads working on consecutive frames (default: on "
                               "the CPU, one per core up to 4; on a GPU, 2)")

    def add_codec(self, choices: tuple[str, ...] = ("h264", "h264_nvenc", "mp4v", "mjpeg")
                  ) -> None:
        self.add_argument("--codec", default=None, choices=choices, metavar="C",
                          help=f"video codec: {', '.join(choices)} (default: h264 in fragmented "
                               "MP4, playable in browsers and after a crash; mjpeg for .avi)")

    def add_logging(self, quiet: bool = False) -> None:
        if quiet:
            self.add_argument("-q", "--quiet", action="store_true", help="print only errors")
        self.add_argument("-v", "--verbose", action="count", default=0,
                          help="more logging (-vv: debug, with tracebacks)")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and epilogs as written; the help column a little wider."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=30)


def int_at_least(low: int, high: int | None = None) -> Any:
    """An argparse type: an integer ``>= low`` (and ``<= high`` when given)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            bound = f"must be >= {low}" if high is None else f"must be in [{low}, {high}]"
            raise argparse.ArgumentTypeError(f"{bound}, got {value}")
        return value
    parse.__name__ = f"int>={low}"
    return parse


def number_at_least(low: float) -> Any:
    """An argparse type: a finite number ``>= low``."""
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not low <= value < float("inf"):
            raise argparse.ArgumentTypeError(f"must be a number >= {low:g}, got {text}")
        return value
    parse.__name__ = f"number>={low:g}"
    return parse


def fraction(text: str) -> float:
    """An argparse type: a number in [0, 1)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0.0 <= value < 1.0:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {value}")
    return value


def fresh_folder(root: Path, name: str) -> Path:
    """root/name, or root/name2, name3... : the first that does not exist yet."""
    for n in range(1, 100000):
        folder = root / (name if n == 1 else f"{name}{n}")
        if not folder.exists():
            return folder
    raise UsageError(f"too many runs in {root}; clean it up")


@contextlib.contextmanager
def stop_on_signals(run: Any) -> Iterator[None]:
    """SIGINT/SIGTERM: first one stops reading and drains (``run.stop(name)``); a second
    one aborts (``run.abort()``). ``run`` also has a ``stopping`` flag."""
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


def logging_state() -> LoggingState:
    """The ``realtime`` logger's handlers, propagation and level, for :func:`restore_logging`."""
    root = logging.getLogger("realtime")
    return list(root.handlers), root.propagate, root.level


def restore_logging(state: LoggingState) -> None:
    """Leave logging as it was (main() may be called in-process, e.g. by tests)."""
    root = logging.getLogger("realtime")
    root.handlers[:], root.propagate, root.level = state[0], state[1], state[2]


def setup_logging(verbose: int) -> None:
    """``camloc: ...`` lines on stderr: warnings, ``-v`` info, ``-vv`` debug."""
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
