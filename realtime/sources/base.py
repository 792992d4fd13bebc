"""What every frame source is: a context manager that owns one reader thread and
yields :class:`Frame` objects, with the counters and attributes the pipeline and the
summary read (``fps``, ``stride``, ``total``, ``frames_*``, ``ended_because``).

``stop()`` ends the reading (what was already read is still delivered) and ``close()``
(or leaving the ``with`` block) stops, joins the thread and releases the capture. No call
blocks for more than a fraction of a second without checking the stop event.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Self, TypeVar

import numpy as np

from realtime.errors import CamlocError

__all__ = ["DEFAULT_FPS", "IMAGE_FPS", "IMAGE_SUFFIXES", "STREAM_SCHEMES", "Frame", "Source",
           "SourceError", "open_or_abandon"]

T = TypeVar("T")

DEFAULT_FPS = 30.0  # when a container reports no usable frame rate
IMAGE_FPS = 1.0     # frame rate given to a video made from still images
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp",
                            ".pbm", ".pgm", ".ppm", ".pnm", ".jp2", ".exr", ".hdr"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                  "srt://")
POLL_S = 0.1  # how long any wait lasts before it checks the stop event again


class SourceError(CamlocError, ValueError):
    """A source that cannot be opened or read (missing, unreadable, not a video...)."""


@dataclass
class Frame:
    """One frame and where it came from.

    ``index`` is the frame's number in its source (frame number in a video, so
    ``--vid-stride 2`` gives 0, 2, 4...; position in an image list; frame id of
    a live source), ``source`` the file, stream or image path it came from,
    ``time_ms`` its time in the source (video position; time since the start
    for live sources; 0 for still images), ``decode_ms`` the time spent reading it.

    ``arrival`` is the ``time.monotonic()`` at which the reader had the frame (a live
    source: when the capture returned it; a file: when it was decoded; by default, when
    the Frame is made): every output's latency is measured from it. ``taken`` is when
    the pipeline took it from the source (0 until then): ``taken - arrival`` is the
    time it waited in the reader.
    """

    index: int
    image: np.ndarray
    source: str
    time_ms: float = 0.0
    decode_ms: float = 0.0
    arrival: float = field(default_factory=time.monotonic)
    taken: float = 0.0


class Source:
    """Base class: a context manager around one reader thread that yields Frames."""

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps = DEFAULT_FPS
        self.size: tuple[int, int] | None = None  # (width, height) when known
        self.total: int | None = None  # frames this source will deliver, when known
        self.frames_read = 0      # frames the reader got (live: handed out or dropped)
        self.frames_dropped = 0   # live sources: frames replaced by newer ones before use
        self.frames_corrupt = 0   # frames that could not be decoded and were skipped
        self.frames_skipped = 0   # images too small to localize, skipped
        self.stride = 1           # every stride-th frame of the source's timeline is delivered,
        #                           so outputs run at fps / stride
        self.ended_because: str | None = None  # why the reader stopped early (lost device)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def start(self) -> Self:
        """Start the reader thread (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=f"camloc-read-{self.name}",
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop reading; frames already read are still delivered, then iteration ends."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop, join the reader thread and release what the source holds."""
        self.stop()
        if self._thread is not None:
            self._thread.join()
        self._release()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def _release(self) -> None:
        """Free the capture; called once the reader thread has ended."""


def open_or_abandon(opener: Callable[[], T | None], stop: threading.Event,
                    release: Callable[[T], None], name: str) -> T | None:
    """``opener()`` in a helper thread, waited for while ``stop`` is not set: a backend that
    blocks on a silent server (up to its open timeout) never delays a stop. Once stopped,
    None; what the abandoned helper opens afterwards is released by it. The opener's
    exception is raised here."""
    lock = threading.Lock()
    box: dict[str, Any] = {"abandoned": False, "value": None, "error": None}
    finished = threading.Event()

    def work() -> None:
        try:
            value = opener()
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            box["error"], value = exc, None
        with lock:
            if box["abandoned"] and value is not None:
                release(value)
            else:
                box["value"] = value
        finished.set()

    threading.Thread(target=work, name=f"camloc-open-{name}", daemon=True).start()
    while not finished.wait(POLL_S):
        if stop.is_set():
            with lock:
                box["abandoned"] = True
                value = box["value"]
            if value is not None:
                release(value)
            return None
    if box["error"] is not None:
        raise box["error"]
    return box["value"]
