"""Where results go: an annotated video file, a JSON Lines file, a window.

Every output is a :class:`Sink`: the pipeline calls ``write(item)`` with each
processed frame, in frame order, from its render thread (or, for a sink that must
live there such as a window, from the thread iterating the pipeline); the caller
closes it. Each sink is its own small object (a writer never touches the window,
the window never writes files) and a context manager. The JSONL record of a frame
is built here, next to its writer (:func:`record`, :func:`detections`). Output paths are checked
when a sink is made, before any frame is read, so an unwritable ``--save``
fails at once with a one-line :class:`SinkError`.

The window is opened only where one can be: :func:`gui_available` says why not
otherwise (no display, or an OpenCV build without GUI such as
``opencv-python-headless``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import cv2
import numpy as np

from realtime.errors import CamlocError
from realtime.model.draw import draw_hud, hud_text
from realtime.outputs.latency import LatencyRing

if TYPE_CHECKING:
    from realtime.sources import Frame

__all__ = ["KEYS", "VIDEO_FOURCC", "JsonlSink", "Sink", "SinkError", "VideoSink", "Window",
           "WindowSink", "Processed", "check_output_path", "gui_available", "json_default",
           "record", "steer"]

log = logging.getLogger(__name__)

# container suffix -> codec OpenCV's bundled FFmpeg can write without extra libraries
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}

# key code -> action, for the window (q or Esc quit; space pause; h, b, n, p toggles)
KEYS = {ord("q"): "quit", 27: "quit", ord(" "): "pause", ord("h"): "heatmap",
        ord("b"): "boxes", ord("n"): "next", ord("p"): "prev"}


@dataclass
class Processed:
    """One frame after the pipeline: its result, the annotated image, stage timings,
    (for sinks in the caller's thread) the output rate so far, which source of the run it
    came from, and ``latency``: ms from the frame's arrival to each output that has it
    (keyed by the sink's ``stage``)."""

    frame: Frame
    result: Any
    image: np.ndarray | None
    times: dict[str, float]
    fps: float = 0.0
    feed: int = 0       # which source of the run (0 for a one-source run)
    name: str = ""      # that source's output name (realtime.sources.names)
    latency: dict[str, float] = field(default_factory=dict)


class SinkError(CamlocError, ValueError):
    """An output that cannot be written (bad path, folder, permission, extension)."""


class Sink:
    """An output of the pipeline, fed one processed frame at a time, in frame order.

    Subclasses set ``stage`` (the key of its time in the per-frame timings),
    ``needs_image`` (the pipeline draws the annotated image only if a sink needs it)
    and ``in_caller_thread`` (called from the thread that iterates the pipeline, where a
    window must live, rather than from the render thread), and implement ``write``.
    ``latency`` is the sink's :class:`~realtime.outputs.latency.LatencyRing`: the pipeline
    records in it, once ``write`` returns, how long after its arrival the sink had each
    frame; a sink that delivers later on its own (``own_latency``, the web view's send)
    records there itself.
    """

    stage = "sink"
    needs_image = False
    in_caller_thread = False
    own_latency = False

    @property
    def latency(self) -> LatencyRing:
        """Arrival-to-output latencies of this sink (made on first use)."""
        ring = self.__dict__.get("_latency")
        if ring is None:  # setdefault: two threads asking at once get the same ring
            ring = self.__dict__.setdefault("_latency", LatencyRing())
        return ring

    def attach(self, run: Any) -> None:
        """Called once by the pipeline the sink is given to (a window steers the run)."""

    def write(self, item: Processed) -> None:
        """Take one processed frame (``item.image`` is drawn when ``needs_image``)."""
        raise NotImplementedError

    def close(self) -> None:
        """Finish the output; safe to call twice. The caller closes, not the pipeline."""

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_output_path(path: str | os.PathLike[str], flag: str,
                      suffixes: tuple[str, ...] | None = None) -> Path:
    """Make sure ``path`` can be written (creating its folder); raise SinkError if not.

    ``flag`` names the option in messages (``--save``). Nothing is left behind:
    a file created to prove the path writable is removed again.
    """
    p = Path(path).expanduser()
    if str(path).endswith(("/", os.sep)) or p.is_dir():
        raise SinkError(f"{flag} {path}: is a folder; give a file name")
    if suffixes is not None and p.suffix.lower() not in suffixes:
        raise SinkError(f"{flag} {path}: unsupported extension {p.suffix or '(none)'!r}; "
                        f"use {', '.join(suffixes)}")
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SinkError(f"{flag} {path}: cannot create folder {p.parent}: "
                        f"{exc.strerror or exc}") from None
    existed = p.exists()
    try:
        with open(p, "ab"):
            pass
    except OSError as exc:
        raise SinkError(f"{flag} {path}: cannot write: {exc.strerror or exc}") from None
    if not existed:
        p.unlink(missing_ok=True)
    return p


def _letterbox(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Fit ``image`` into (width, height) keeping its aspect ratio, black borders."""
    w, h = size
    ih, iw = image.shape[:2]
    s = min(w / iw, h / ih)
    nw, nh = max(1, round(iw * s)), max(1, round(ih * s))
    out = np.zeros((h, w, 3), np.uint8)
    x0, y0 = (w - nw) // 2, (h - nh) // 2
    out[y0:y0 + nh, x0:x0 + nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_AREA)
    return out


class VideoSink(Sink):
    """Annotated frames into a video file (mp4v in .mp4, or ``fourcc``) through OpenCV, at
    ``size`` (width, height) or, when None, the first frame's size (H.264 and crash-safe
    files: realtime.outputs.recorder).

    The writer opens on the first frame; frames of another size (an image folder)
    are letterboxed into it. MPEG-4 needs even sizes: an odd last row or column is
    cropped. ``frames`` counts what was written.
    """

    stage = "encode"
    needs_image = True

    def __init__(self, path: str | os.PathLike[str], fps: float, flag: str = "--save",
                 fourcc: str | None = None, size: tuple[int, int] | None = None) -> None:
        self.path = check_output_path(path, flag, tuple(VIDEO_FOURCC))
        if not fps > 0:
            raise ValueError(f"fps must be positive, got {fps!r}")
        self.fps = float(fps)
        self.fourcc = fourcc or VIDEO_FOURCC[self.path.suffix.lower()]
        self.size: tuple[int, int] | None = None
        self._want = size
        self.frames = 0
        self._writer: cv2.VideoWriter | None = None

    def write(self, item: Processed) -> None:
        """Append the annotated image of one processed frame."""
        self.write_image(item.image)

    def write_image(self, image: np.ndarray) -> None:
        """Append one BGR uint8 frame."""
        if self._writer is None:
            w, h = self._want or (image.shape[1], image.shape[0])
            self.size = (w - w % 2, h - h % 2) if self.fourcc == "mp4v" else (w, h)
            self._writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc),
                                           self.fps, self.size)
            if not self._writer.isOpened():
                self._writer = None
                raise SinkError(f"cannot open a {self.fourcc} video writer for {self.path}")
        w, h = self.size
        if image.shape[:2] != (h, w):
            if image.shape[0] - h in (0, 1) and image.shape[1] - w in (0, 1):
                image = image[:h, :w]  # the odd row/column MPEG-4 cannot hold
            else:
                image = _letterbox(image, self.size)
        self._writer.write(image)
        self.frames += 1

    def close(self) -> None:
        """Finish the file (it is playable from here on)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            log.debug("wrote %d frames to %s", self.frames, self.path)


def json_default(value: Any) -> Any:
    """numpy scalars and arrays in records -> plain JSON values."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def record(frame: Frame, result: Any) -> dict[str, Any]:
    """The JSONL object of one processed frame (schema in the README)."""
    return {"frame": frame.index, "source": frame.source, "time_ms": round(frame.time_ms, 3),
            "detections": result.detections()}


class JsonlSink(Sink):
    """One JSON object per line, each written whole with one unbuffered write: a killed
    run leaves whole lines, and a write that fails (full disk) is cut back to the last
    whole line before the OSError goes on, so the file always parses."""

    stage = "json"

    def __init__(self, path: str | os.PathLike[str], flag: str = "--save-json") -> None:
        self.path = check_output_path(path, flag)
        self.lines = 0
        self._file = open(self.path, "wb", buffering=0)  # noqa: SIM115 (closed in close())
        self._end = 0  # bytes of whole lines written

    def write(self, item: Processed) -> None:
        """Append the record of one processed frame."""
        self.write_record(record(item.frame, item.result))

    def write_record(self, rec: dict[str, Any]) -> None:
        """Append one JSON object as a line."""
        data = (json.dumps(rec, default=json_default) + "\n").encode("utf-8")
        try:
            view = memoryview(data)
            while view:  # a short write (a nearly full disk) writes the rest, or raises
                view = view[self._file.write(view):]
        except OSError:
            with contextlib.suppress(OSError):
                self._file.truncate(self._end)
                self._file.seek(self._end)
            raise
        self._end += len(data)
        self.lines += 1

    def close(self) -> None:
        if not self._file.closed:
            self._file.close()


def _gui_backend() -> str:
    """The GUI line of OpenCV's build information ('NONE' for headless builds)."""
    m = re.search(r"^\s*GUI:\s*(\S+)", cv2.getBuildInformation(), re.MULTILINE)
    return m.group(1) if m else "NONE"


def gui_available() -> tuple[bool, str]:
    """(True, "") when a window can be opened; otherwise (False, why and what to do)."""
    if _gui_backend().upper() == "NONE":
        return False, ("this OpenCV has no GUI (opencv-python-headless?); "
                       "for --show: pip uninstall opencv-python-headless && "
                       "pip install opencv-python")
    if sys.platform.startswith(("linux", "freebsd", "openbsd")) and not (
            os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False, "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    return True, ""


class Window:
    """A resizable OpenCV window; ``show`` returns the action of a key pressed, if any.

    Keys: q or Esc quit, space pause, h heatmap, b boxes, n/p next/previous class.
    Closing the window counts as quit. Must be used from the main thread.
    """

    def __init__(self, title: str = "camloc") -> None:
        ok, why = gui_available()
        if not ok:
            raise SinkError(f"--show: {why}")
        self.title = title
        self._open = False

    def show(self, image: np.ndarray, wait_ms: int = 1) -> str | None:
        """Display ``image`` and poll the keyboard for ``wait_ms``."""
        if not self._open:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
            cv2.resizeWindow(self.title, image.shape[1], image.shape[0])
            self._open = True
        cv2.imshow(self.title, image)
        return self.poll(wait_ms)

    def poll(self, wait_ms: int = 30) -> str | None:
        """Wait up to ``wait_ms`` for a key; the action, "quit" if the window was closed."""
        key = cv2.waitKey(max(1, wait_ms))
        if self._open and cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1:
            return "quit"
        return KEYS.get(key & 0xFF) if key >= 0 else None

    def close(self) -> None:
        if self._open:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
            self._open = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def steer(run: Any, window: Window, action: str | None, topk: int) -> None:
    """Act on a window key for ``run``: q quits (stops reading), space pauses here while
    the keys still work, h/b/n/p change ``run.options`` (``topk``: classes to cycle)."""
    paused = False
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


class WindowSink(Sink):
    """The live window as a sink: each frame with a HUD line (rate, provider, best class);
    its keys steer the run (q quits, space pauses while keys still work, h/b/n/p change
    what is drawn). Runs in the thread that iterates the pipeline."""

    stage = "show"
    needs_image = True
    in_caller_thread = True

    def __init__(self, window: Window) -> None:
        self.window = window
        self._run: Any = None

    def attach(self, run: Any) -> None:
        self._run = run

    def write(self, item: Processed) -> None:
        run = self._run
        assert run is not None, "a WindowSink is fed by the pipeline it was given to"
        # on a copy: the same image goes to the video and the web view
        image = draw_hud(item.image.copy(), hud_text(item.result, item.fps,
                                                     self.latency.percentiles(0.5)))
        steer(run, self.window, self.window.show(image), len(item.result.class_ids))

    def close(self) -> None:
        self.window.close()
