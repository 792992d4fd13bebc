"""What camloc's runtime CLIs share: argument types, a parser whose errors are
:class:`~realtime.errors.UsageError`, logging set-up and tear-down, fresh run folders
and graceful stops on SIGINT/SIGTERM.

``python -m realtime`` (cli.py, with several sources multi.py) and ``python -m
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


class Parser(argparse.ArgumentParser):
    """An argument parser whose errors raise :class:`UsageError` (one line, exit 2)
    instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


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
