"""Frame sources: video files, single images, image folders and globs, cameras, streams.

Every source is a context manager that owns one reader thread:

- files and images deliver **every** frame, in order, through a bounded
  read-ahead queue (completeness beats latency); a frame that cannot be decoded
  in the middle of a file is skipped, counted (``frames_corrupt``) and logged;
- cameras and streams (``realtime.live``) keep only the newest frame
  (latency beats completeness) and count what they drop.

Iterating a source yields :class:`Frame` objects; ``stop()`` ends the reading
(what was already read is still delivered) and ``close()`` (or leaving the
``with`` block) stops, joins the thread and releases the capture. No call here
blocks for more than a fraction of a second without checking the stop event.

``open_source(spec)`` turns a ``--source`` string into the right source and
raises :class:`SourceError` (one line, a user error) when it cannot be opened.
"""

from __future__ import annotations

import glob
import logging
import math
import queue
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Self

import cv2
import numpy as np

from .errors import CamlocError
from .seek import seek_frame

__all__ = ["DEFAULT_FPS", "IMAGE_FPS", "IMAGE_SUFFIXES", "STREAM_SCHEMES", "Frame",
           "ImageSource", "Source", "SourceError", "VideoFileSource", "classify_source",
           "frames_expected", "open_source"]

log = logging.getLogger(__name__)

DEFAULT_FPS = 30.0  # when a container reports no usable frame rate
IMAGE_FPS = 1.0     # frame rate given to a video made from still images
IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp",
                            ".pbm", ".pgm", ".ppm", ".pnm", ".jp2", ".exr", ".hdr"})
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://",
                  "srt://")
_POLL_S = 0.1  # how long any wait lasts before it checks the stop event again
_MAX_BAD = 25  # consecutive undecodable frames before a file is taken to have ended


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
    """

    index: int
    image: np.ndarray
    source: str
    time_ms: float = 0.0
    decode_ms: float = 0.0


class Source:
    """Base class: a context manager around one reader thread that yields Frames."""

    live = False

    def __init__(self, name: str) -> None:
        self.name = name
        self.fps = DEFAULT_FPS
        self.size: tuple[int, int] | None = None  # (width, height) when known
        self.total: int | None = None  # frames this source will deliver, when known
        self.frames_read = 0      # frames handed to the consumer
        self.frames_dropped = 0   # live sources: frames replaced by newer ones before use
        self.frames_corrupt = 0   # frames that could not be decoded and were skipped
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


class _End:
    """Sentinel: the reader has nothing more."""


@dataclass
class _Failure:
    """An exception raised in the reader thread, carried to the consumer."""

    exc: BaseException


class _ReadAhead(Source):
    """A source whose thread runs ``_produce()`` into a bounded queue, every frame in order."""

    def __init__(self, name: str, read_ahead: int = 8) -> None:
        super().__init__(name)
        if read_ahead < 1:
            raise ValueError(f"read_ahead must be >= 1, got {read_ahead}")
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=read_ahead)

    def _produce(self) -> Iterator[Frame]:
        raise NotImplementedError

    def _put(self, item: object) -> bool:
        """Put unless the source is stopped while the queue stays full."""
        while True:
            try:
                self._queue.put(item, timeout=_POLL_S)
                return True
            except queue.Full:
                if self._stop.is_set():
                    return False

    def _run(self) -> None:
        try:
            for frame in self._produce():
                if not self._put(frame):
                    return
        except Exception as exc:  # noqa: BLE001 (reaches the consumer, which raises it)
            self._put(_Failure(exc))
        finally:
            self._put(_End)

    def __iter__(self) -> Iterator[Frame]:
        self.start()
        while True:
            try:
                item = self._queue.get(timeout=_POLL_S)
            except queue.Empty:
                assert self._thread is not None
                if not self._thread.is_alive() and self._queue.empty():
                    return  # the reader gave up putting its sentinel (stopped, queue full)
                continue
            if item is _End:
                return
            if isinstance(item, _Failure):
                raise SourceError(f"reading {self.name} failed: {item.exc}") from item.exc
            self.frames_read += 1
            yield item


def _check_readable(path: Path, spec: str) -> None:
    """Raise SourceError when ``path`` does not exist or cannot be opened for reading."""
    if not path.exists():
        raise SourceError(f"source not found: {spec}")
    try:
        with open(path, "rb") as f:
            f.read(1)
    except OSError as exc:
        raise SourceError(f"cannot read {spec}: {exc.strerror or exc}") from None


class VideoFileSource(_ReadAhead):
    """Every frame of a video file (or a file URL), in order; ``stride`` keeps every N-th.

    ``start``/``end`` limit it to frames ``start <= index < end`` (a segment of a
    long video, for ``realtime.batch``); frame numbers stay those of the file.
    Opening reads the first frame, so a file that is not a video fails here,
    before any thread starts. The frame rate is the container's, or
    ``DEFAULT_FPS`` when it reports none or nonsense.
    """

    def __init__(self, spec: str, stride: int = 1, read_ahead: int = 8, *, start: int = 0,
                 end: int | None = None) -> None:
        super().__init__(spec, read_ahead)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if start < 0 or (end is not None and end <= start):
            raise ValueError(f"need 0 <= start < end, got start={start}, end={end}")
        if start % stride:
            raise ValueError(f"start must be a multiple of stride, got {start} and {stride}")
        self.stride, self.start_frame, self.end_frame = stride, start, end
        if "://" not in spec:
            _check_readable(Path(spec), spec)
        self._cap = cv2.VideoCapture(spec)
        if not self._cap.isOpened():
            self._cap.release()
            raise SourceError(f"cannot open {spec} as a video (not a video file, or a format "
                              "this OpenCV build cannot decode)")
        fps = self._cap.get(cv2.CAP_PROP_FPS)
        if math.isfinite(fps) and 1.0 <= fps <= 1000.0:
            self.fps = float(fps)
        else:
            log.info("%s reports %s frames per second; using %g", spec, fps, DEFAULT_FPS)
        count = self._cap.get(cv2.CAP_PROP_FRAME_COUNT)
        self.frames_in_file = int(count) if math.isfinite(count) and 0 < count < 1e9 else None
        last = min((x for x in (self.frames_in_file, end) if x is not None), default=None)
        if last is not None:
            self.total = max(0, -(-last // stride) - -(-start // stride))
        t0 = time.perf_counter()
        tries, image = 0, None  # the first decodable frame, kept for _produce
        if start:  # placed by timestamps: OpenCV's own frame counter is not trusted
            image, tries = seek_frame(self._cap, self.fps, start, _MAX_BAD)
        while image is None:
            if tries >= _MAX_BAD:
                self._cap.release()
                raise SourceError(f"cannot decode any frame of {spec} (not a video, or corrupt)")
            ok, image = self._cap.read()
            image, tries = (image if ok else None), tries + 1
        self._first: tuple[np.ndarray, float, int] | None = (
            image, (time.perf_counter() - t0) * 1e3, tries)
        self.size = (image.shape[1], image.shape[0])

    def _produce(self) -> Iterator[Frame]:
        assert self._first is not None, "a VideoFileSource is read once"
        image, ms, tries = self._first
        self._first = None
        index = self.start_frame + tries - 1  # frames before the first decodable one were
        self.frames_corrupt += tries - 1      # corrupt
        bad = 0                      # consecutive failures: corrupt frames, or the end
        while not self._stop.is_set() and (self.end_frame is None or index < self.end_frame):
            if image is None:
                t0 = time.perf_counter()
                if index % self.stride == 0:
                    ok, image = self._cap.read()
                    ok = ok and image is not None
                else:
                    ok = self._cap.grab()
                ms = (time.perf_counter() - t0) * 1e3
                if not ok:
                    bad += 1
                    index += 1
                    if bad < _MAX_BAD and (self.frames_in_file is None
                                           or index < self.frames_in_file):
                        continue
                    break
            if bad:
                self.frames_corrupt += bad
                log.warning("%s: skipped %d undecodable frame(s) before frame %d",
                            self.name, bad, index)
                bad = 0
            if image is not None:
                yield Frame(index, image, self.name, index * 1e3 / self.fps, ms)
            image = None
            index += 1
        if bad and self.end_frame is not None and index >= self.end_frame:
            self.frames_corrupt += bad  # the segment ends here, the file goes on
        elif bad and self.frames_in_file is not None and index - bad < self.frames_in_file:
            log.warning("%s: no frame could be decoded after frame %d (the file says %d "
                        "frames); treating it as the end", self.name, index - bad - 1,
                        self.frames_in_file)

    def _release(self) -> None:
        self._cap.release()


class ImageSource(_ReadAhead):
    """Still images from a list of paths, in that order; unreadable ones are skipped."""

    live = False

    def __init__(self, name: str, paths: list[Path], stride: int = 1, read_ahead: int = 8
                 ) -> None:
        super().__init__(name, read_ahead)
        if stride < 1:
            raise ValueError(f"stride must be >= 1, got {stride}")
        if not paths:
            raise SourceError(f"no images in {name} (looked for "
                              f"{', '.join(sorted(s[1:] for s in IMAGE_SUFFIXES))})")
        self.paths = paths[::stride]
        self.fps = IMAGE_FPS
        self.total = len(self.paths)
        first = cv2.imread(str(self.paths[0]), cv2.IMREAD_COLOR)
        if first is not None:
            self.size = (first.shape[1], first.shape[0])
        elif len(self.paths) == 1:
            _check_readable(self.paths[0], str(self.paths[0]))
            raise SourceError(f"cannot read {self.paths[0]} as an image (corrupt, or a format "
                              "this OpenCV build cannot decode)")

    def _produce(self) -> Iterator[Frame]:
        for i, path in enumerate(self.paths):
            if self._stop.is_set():
                return
            t0 = time.perf_counter()
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            ms = (time.perf_counter() - t0) * 1e3
            if image is None:
                self.frames_corrupt += 1
                log.warning("skipped %s: not a readable image", path)
                continue
            yield Frame(i, image, str(path), 0.0, ms)


def _images_in(paths: list[str]) -> list[Path]:
    return sorted(Path(p) for p in paths
                  if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())


def classify_source(spec: str) -> str:
    """``camera``, ``stream``, ``video``, ``image``, ``folder`` or ``glob`` for a --source."""
    s = spec.strip()
    if s.isdigit() or s.startswith("/dev/video"):
        return "camera"
    if s.lower().startswith(STREAM_SCHEMES):
        path = s.split("?", 1)[0].lower()
        return "video" if path.startswith(("http://", "https://")) and Path(path).suffix in (
            ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v") else "stream"
    p = Path(s)
    if p.is_dir():
        return "folder"
    if not p.exists() and any(c in s for c in "*?["):
        return "glob"
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def open_source(spec: str | int, *, stride: int = 1, read_ahead: int = 8,
                **live_options: Any) -> Source:
    """Open what a ``--source`` names; raises SourceError when it cannot be opened.

    ``stride`` applies to files and images; ``live_options`` go to
    :class:`realtime.live.LiveSource` (timeouts, reconnection) for cameras and streams.
    """
    spec = str(spec)
    if not spec.strip():
        raise SourceError("empty --source")
    kind = classify_source(spec)
    if kind in ("camera", "stream"):
        if stride != 1:
            raise SourceError(f"--vid-stride applies to files, not to a live {kind} "
                              "(live sources already keep only the newest frame)")
        from .live import LiveSource  # here: live imports this module

        target: int | str = int(spec) if spec.strip().isdigit() else spec
        return LiveSource(target, stream=kind == "stream", **live_options)
    if kind == "video":
        return VideoFileSource(spec, stride=stride, read_ahead=read_ahead)
    if kind == "image":
        _check_readable(Path(spec), spec)
        return ImageSource(spec, [Path(spec)], stride=stride, read_ahead=read_ahead)
    if kind == "folder":
        files = _images_in([str(p) for p in Path(spec).iterdir()])
        return ImageSource(spec, files, stride=stride, read_ahead=read_ahead)
    files = _images_in(glob.glob(spec, recursive=True))
    if not files:
        raise SourceError(f"no images match {spec}")
    return ImageSource(spec, files, stride=stride, read_ahead=read_ahead)


def frames_expected(source: Source) -> int | None:
    """How many frames a finite source will deliver, if known (for progress bars)."""
    return None if source.live else source.total

