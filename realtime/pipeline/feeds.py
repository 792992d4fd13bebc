"""One source of a pipeline run (a *feed*): its reader thread, its frames waiting for
inference, its own smoothing state, outputs, statistics and fault.

The reader opens the source (a camera or stream that cannot be opened yet is retried,
see :class:`Retry`; a file that cannot be opened fails at once), makes the feed's own
outputs once the source's rate and size are known, then hands frames to the inference
workers through a small inbox: every frame of a file, in order (the reader waits for
room); for a live source only the newest (an older frame still waiting is replaced and
counted as dropped), so latency stays bounded when the pipeline is slower than the
source.
"""

from __future__ import annotations

import copy
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from realtime.errors import StageError, first_line
from realtime.pipeline.handoff import POLL_S
from realtime.pipeline.runstats import FpsMeter, RunStats
from realtime.sources import Frame, Source, SourceError, classify_source, open_source
from realtime.sources.base import open_or_abandon

__all__ = ["DEFAULT_RETRY", "Feed", "LostSource", "Retry", "own_localizer", "read_feed"]

log = logging.getLogger(__name__)


@dataclass
class Retry:
    """How a camera or stream that cannot be opened, or drops out, is retried: every
    ``interval_s`` for as long as the run lasts (a box's camera may come back after an
    hour), or until it has been gone ``give_up_after_s`` (``--give-up-after``)."""

    interval_s: float = 1.0
    give_up_after_s: float | None = None


DEFAULT_RETRY = Retry()


@dataclass
class Feed:
    """One source of a run. ``spec`` is what to open (or ``source`` an open Source)."""

    index: int
    name: str
    spec: str
    localizer: Any                 # a view of the run's Localizer with its own smoothing
    source: Source | None = None
    sinks: list[Any] = field(default_factory=list)   # this feed's own outputs
    owned: list[Any] = field(default_factory=list)   # made by the run's factory: closed by it
    stats: RunStats = field(default_factory=RunStats)
    meter: FpsMeter = field(default_factory=FpsMeter)
    error: BaseException | None = None   # why this feed failed (None: it did not)
    live: bool = False
    inbox: deque[Frame] = field(default_factory=deque)
    pending: dict[int, Any] = field(default_factory=dict)  # inferred, by sequence number
    broken: bool = False           # its outputs failed: the rest of its frames are drained
    own_source: bool = False       # opened by the run (from ``spec``): closed by it
    draws: bool = False            # its frames are drawn (asked for, or a sink needs pixels)
    read_done: bool = False        # the reader has put its last frame
    taken: int = 0                 # frames handed to inference (= the next sequence number)
    written: int = 0               # frames through the render stage
    lock: threading.Lock = field(default_factory=threading.Lock)
    room: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.room = threading.Condition(self.lock)
        if self.source is not None:
            self.live = self.source.live
        elif self.spec:
            self.live = classify_source(self.spec) in ("camera", "stream")

    @property
    def in_flight(self) -> int:
        return self.taken - self.written

    @property
    def finished(self) -> bool:
        """Read to the end (or failed) and every frame taken is through the render stage."""
        return self.read_done and not self.inbox and self.written >= self.taken

    @property
    def processed(self) -> int:
        return self.stats.processed


def own_localizer(loc: Any) -> Any:
    """A view of ``loc`` sharing its session, with a smoothing state of its own."""
    mine = copy.copy(loc)
    smoother = getattr(loc, "smoother", None)
    if smoother is not None:
        mine.smoother = type(smoother)(smoother.alpha)
    return mine


def open_with_retry(feed: Feed, stride: int, retry: Retry, live_options: dict[str, Any],
                    stopped: threading.Event) -> Source | None:
    """Open the feed's source. Cameras and streams are retried every ``retry.interval_s``
    until they open, the run stops, or ``give_up_after_s`` passes (then the feed's error is
    set). Each attempt runs in a helper thread, so a server that never answers cannot delay
    a stop; a source opened after the run stopped is closed by that helper."""
    first, attempt = time.monotonic(), 0
    options = {"retry_s": retry.interval_s, "give_up_after_s": retry.give_up_after_s,
               **live_options} if feed.live else {}
    while not stopped.is_set():
        try:
            source = _open_or_stop(feed.spec, stride, options, stopped)
        except SourceError as exc:
            gone = time.monotonic() - first
            if not feed.live or (retry.give_up_after_s is not None
                                 and gone >= retry.give_up_after_s):
                if attempt:
                    feed.stats.ended_because = f"{feed.spec}: {first_line(exc)} (gave up " \
                                               f"after {gone:.1f} s, {attempt} retries)"
                    raise LostSource(feed.stats.ended_because) from None
                raise
            attempt += 1
            if attempt == 1 or attempt % 60 == 0:  # not a line a second for hours
                log.warning("%s: %s; retrying every %.1f s (attempt %d, gone %.0f s)",
                            feed.name, first_line(exc), retry.interval_s, attempt, gone)
            stopped.wait(retry.interval_s)
            continue
        return source
    return None


class LostSource(StageError):
    """A live source gone for ``--give-up-after``: a failed stage (exit 1), not a user error."""


def _open_or_stop(spec: str, stride: int, options: dict[str, Any],
                  stopped: threading.Event) -> Source | None:
    """``open_source``, given up when the run stops (see open_or_abandon)."""
    return open_or_abandon(lambda: open_source(spec, stride=stride, **options), stopped,
                           lambda source: source.close(), spec)


def read_feed(feed: Feed, *, stride: int, retry: Retry, live_options: dict[str, Any],
              max_frames: int | None, stopped: threading.Event, aborted: threading.Event,
              make_sinks: Callable[[Feed], list[Any]] | None, room: int,
              wake: Callable[[], None]) -> None:
    """The reader thread's work: open, make the feed's outputs, then put frames in its inbox
    (files: every frame, waiting while ``room`` frames wait; live: the newest only)."""
    try:
        if feed.source is None:
            feed.source = open_with_retry(feed, stride, retry, live_options, stopped)
            if feed.source is None:
                return
            feed.own_source = True
        source = feed.source
        feed.live = source.live
        if stopped.is_set():
            source.stop()
        if make_sinks is not None:
            feed.owned = list(make_sinks(feed))
            feed.sinks = [*feed.owned, *feed.sinks]
        n = 0
        for frame in source:
            with feed.room:
                if feed.live:
                    while feed.inbox:  # newest only: an older frame waiting goes
                        feed.inbox.popleft()
                        source.frames_dropped += 1
                else:
                    while len(feed.inbox) >= room and not aborted.is_set():
                        feed.room.wait(POLL_S)
                if aborted.is_set():
                    return
                feed.inbox.append(frame)
            wake()
            n += 1  # a file's frames all go on; a live source's are counted where taken
            if max_frames is not None and not feed.live and n >= max_frames:
                feed.stats.stopped_by = feed.stats.stopped_by or "--max-frames"
                source.stop()
                break
        if getattr(source, "lost", False):
            feed.stats.ended_because = source.ended_because
            raise LostSource(source.ended_because or f"{feed.spec} lost")
    except BaseException as exc:  # a failing source ends its feed; the run decides the rest
        feed.error = exc
        log.debug("%s: reader failed", feed.name, exc_info=True)
    finally:
        with feed.room:
            feed.read_done = True
        wake()
