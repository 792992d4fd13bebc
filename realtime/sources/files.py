"""Finite sources: video files, single images, image folders and globs.

They deliver **every** frame, in order, through a bounded read-ahead queue
(completeness beats latency); a frame that cannot be decoded in the middle of a
file is skipped, counted (``frames_corrupt``) and logged.
"""

from __future__ import annotations

import logging
import math
import queue
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from realtime.sources.base import DEFAULT_FPS, IMAGE_FPS, IMAGE_SUFFIXES, POLL_S, Frame, Source, SourceError
from realtime.sources.framesize import MIN_SIDE, choose_frame_size, image_sizes, too_small
from realtime.sources.seek import seek_frame

__all__ = ["ImageSource", "VideoFileSource", "check_readable", "images_in"]

log = logging.getLogger(__name__)

_MAX_BAD = 25  # consecutive undecodable frames before a file is taken to have ended


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
                self._queue.put(item, timeout=POLL_S)
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
                item = self._queue.get(timeout=POLL_S)
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
            item.taken = time.monotonic()  # Frame.arrival was stamped when it was decoded
            yield item


def check_readable(path: Path, spec: str) -> None:
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
            check_readable(Path(spec), spec)
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
        if len(self.paths) > 1:  # not the first image's: see realtime/framesize.py
            self.size = choose_frame_size(image_sizes(self.paths))
            return
        first = cv2.imread(str(self.paths[0]), cv2.IMREAD_COLOR)
        if first is None:
            check_readable(self.paths[0], str(self.paths[0]))
            raise SourceError(f"cannot read {self.paths[0]} as an image (corrupt, or a format "
                              "this OpenCV build cannot decode)")
        if too_small(first.shape[1], first.shape[0]):
            raise SourceError(f"{self.paths[0]}: {first.shape[1]}x{first.shape[0]} pixels is "
                              f"too small to localize (sides of at least {MIN_SIDE})")
        self.size = (first.shape[1], first.shape[0])

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
            if too_small(image.shape[1], image.shape[0]):
                self.frames_skipped += 1
                log.warning("skipped %s: %dx%d pixels, too small to localize", path,
                            image.shape[1], image.shape[0])
                continue
            yield Frame(i, image, str(path), 0.0, ms)


def images_in(paths: list[str]) -> list[Path]:
    """The image files among ``paths``, sorted."""
    return sorted(Path(p) for p in paths
                  if Path(p).suffix.lower() in IMAGE_SUFFIXES and Path(p).is_file())
