"""Several sources in one process: ``python -m realtime --source A B C`` or a ``.streams`` list.

Each source has its own reader (every frame of a file in order, the newest frame
of a live source), its own smoothing state and its own outputs (``NAME.mp4``,
``NAME.jsonl``). One inference loop takes the next frame of every source that has
one and runs frames of equal shape in one ``session.run``; CAMs, boxes, drawing and
writing stay per source, in its frame order, on a writer thread per source.

Faults stay local: a camera or stream that cannot be opened, or drops out, is
retried with backoff while the others run, and reported (a missing file at once).
The run ends when every source has ended; Ctrl-C ends every source's reading and
the frames already read are still written, so each output is consistent.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from realtime.errors import first_line
from realtime.model.cam import CamSmoother
from realtime.model.draw import RenderOptions
from realtime.pipeline.handoff import put_until
from realtime.pipeline.render_stage import draw_item, options_for, write_ready
from realtime.pipeline.runstats import FpsMeter
from realtime.sources import Frame, Source, SourceError, classify_source, open_source

__all__ = ["DEFAULT_RETRY", "LIST_SUFFIXES", "Feed", "MultiRun", "Retry", "expand_sources",
           "read_source_list"]

log = logging.getLogger(__name__)

LIST_SUFFIXES = (".streams", ".txt")
_POLL_S = 0.1


class _End:
    """Sentinel: a feed has no more frames."""


def read_source_list(path: str | Path) -> list[str]:
    """The sources in a text file: one per line; blank lines and ``#`` comments skipped."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SourceError(f"cannot read source list {path}: {exc.strerror or exc}") from None
    return [s for s in (line.strip() for line in text.splitlines()) if s and not s.startswith("#")]


def expand_sources(values: Sequence[str]) -> list[str]:
    """``--source`` values with every ``.streams``/``.txt`` file replaced by its lines."""
    specs: list[str] = []
    for value in values:
        is_list = value.lower().endswith(LIST_SUFFIXES) and Path(value).is_file()
        listed = read_source_list(value) if is_list else [value]
        if not listed:
            raise SourceError(f"no sources listed in {value}")
        specs += listed
    return specs


@dataclass
class Retry:
    """How a camera or stream that cannot be opened, or drops out, is retried: every
    ``interval_s`` for as long as the run lasts (a box's camera may come back after an
    hour), or until it has been gone ``give_up_after_s`` (``--give-up-after``, for
    scripts). The same policy as a single live source (realtime.sources.live)."""

    interval_s: float = 1.0
    give_up_after_s: float | None = None


DEFAULT_RETRY = Retry()


@dataclass
class Feed:
    """One source of a multi-source run: its reader, localizer copy, sinks and tallies."""

    spec: str
    name: str
    localizer: Any
    sinks: list[Any] = field(default_factory=list)  # realtime.outputs.sinks.Sink, fed in order
    source: Source | None = None
    error: str | None = None      # why it failed or was lost (for the summary)
    processed: int = 0
    meter: FpsMeter = field(default_factory=FpsMeter)
    inbox: queue.Queue[Any] = field(default_factory=lambda: queue.Queue(maxsize=4))
    outbox: queue.Queue[Any] = field(default_factory=lambda: queue.Queue(maxsize=4))
    done: bool = False            # its last frame went through inference
    live: bool = False            # a camera or stream (newest frame; retried)


def _own_localizer(loc: Any) -> Any:
    """A view of ``loc`` sharing its session but with a smoothing state of its own."""
    mine = copy.copy(loc)
    mine.smoother = CamSmoother(loc.smoother.alpha)
    return mine


class MultiRun:
    """Run one Localizer over several sources; see the module docstring.

    ``sinks(feed)`` is called once a feed's source is open and returns its list of
    :class:`realtime.outputs.sinks.Sink` (the CLI's: the video sink, then the JSONL sink), each
    fed every processed frame of that source in order; ``options`` say what is drawn
    for sinks that need the image. ``batch`` False runs one frame per call: the CLI's
    choice on the CPU, where batching did not pay (docs/SCALING.md). ``tick`` is called
    from the caller's thread after every round of the inference loop (the ``--show``
    window: realtime.outputs.tiles.MosaicWindow); it must return quickly.
    """

    def __init__(self, specs: Sequence[str], names: Sequence[str], localizer: Any, sinks: Any,
                 *, stride: int = 1, max_frames: int | None = None, retry: Retry | None = None,
                 batch: bool = True, live_options: dict[str, Any] | None = None,
                 options: RenderOptions | None = None, tick: Any = None) -> None:
        self.localizer, self.sinks, self.stride, self.tick = localizer, sinks, stride, tick
        self.options = options or RenderOptions()
        self.max_frames, self.retry, self.batch = max_frames, retry or DEFAULT_RETRY, batch
        r = self.retry
        self.live_options = {"retry_s": r.interval_s, "give_up_after_s": r.give_up_after_s,
                             **(live_options or {})}
        self.feeds = [Feed(s, n, _own_localizer(localizer), live=classify_source(s) in (
            "camera", "stream")) for s, n in zip(specs, names)]
        self._stop, self._abort = threading.Event(), threading.Event()
        self._threads: list[threading.Thread] = []
        self.started = self.elapsed_s = 0.0
        self.stopped_by: str | None = None

    # -- control ----------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Stop reading every source; frames already read are still written."""
        self.stopped_by = self.stopped_by or reason
        self._stop.set()
        for f in self.feeds:
            if f.source is not None:
                f.source.stop()

    def abort(self) -> None:  # stop at once: frames in flight are dropped
        self._abort.set()
        self.stop("aborted")

    stopping = property(lambda self: self._stop.is_set())

    # -- per feed threads --------------------------------------------------------------------
    def _open(self, feed: Feed) -> Source | None:
        """Open the feed's source; cameras and streams are retried (see :class:`Retry`)."""
        r, first, attempt = self.retry, time.monotonic(), 0
        while not self._stop.is_set():
            try:
                return open_source(feed.spec, stride=self.stride, **(
                    self.live_options if feed.live else {}))
            except SourceError as exc:
                gone = time.monotonic() - first
                if not feed.live or (r.give_up_after_s is not None and gone >= r.give_up_after_s):
                    feed.error = first_line(exc) + (
                        f" (gave up after {gone:.1f} s, {attempt} retries)" if attempt else "")
                    log.error("%s: %s", feed.name, feed.error)
                    return None
                attempt += 1
                if attempt == 1 or attempt % 60 == 0:  # not a line a second for hours
                    log.warning("%s: %s; retrying in %.1f s (attempt %d, gone %.0f s)",
                                feed.name, first_line(exc), r.interval_s, attempt, gone)
                if self._stop.wait(r.interval_s):
                    return None
        return None

    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Put, waiting for room while the run is not aborted; False when aborted."""
        return put_until(q, item, self._abort)

    def _read(self, feed: Feed) -> None:
        """Reader thread of one feed: open, then hand frames to the inference loop."""
        try:
            feed.source = self._open(feed)
            if feed.source is None:
                return
            if self._stop.is_set():
                feed.source.stop()
            feed.sinks = list(self.sinks(feed))
            n = 0
            for frame in feed.source:
                while feed.live and not feed.inbox.empty():  # newest only: older ones go
                    with contextlib.suppress(queue.Empty):
                        feed.inbox.get_nowait()
                        feed.source.frames_dropped += 1
                if not self._put(feed.inbox, frame):
                    return
                n += 1
                if self.max_frames is not None and n >= self.max_frames:
                    feed.source.stop()
                    break
            lost = getattr(feed.source, "ended_because", None)
            if lost and not self._stop.is_set():
                feed.error = lost
        except Exception as exc:  # noqa: BLE001 - a failing source ends alone, reported
            feed.error = first_line(exc)
            log.error("%s: %s", feed.name, feed.error)
        finally:
            self._put(feed.inbox, _End)

    def _write(self, feed: Feed) -> None:
        """Writer thread of one feed: draw (if a sink needs the image), then each sink in
        order (video and JSONL: both or neither per frame)."""
        failed = False
        while True:
            try:
                item = feed.outbox.get(timeout=_POLL_S)
            except queue.Empty:
                if self._abort.is_set():
                    return
                continue
            if item is _End:
                return
            if failed:
                continue  # keep draining so that inference never waits on this feed
            frame, result = item
            try:  # the single-source render stage's pieces: same drawing, space check, errors
                options = options_for(self.options, result) if any(
                    s.needs_image for s in feed.sinks) else None
                processed = draw_item(frame, result, {}, options)
                processed.fps = feed.meter.fps
                write_ready(feed.sinks, processed)
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk: this feed stops
                feed.error, failed = f"writing failed: {first_line(exc)}", True
                log.error("%s: %s", feed.name, feed.error)
                if feed.source is not None:
                    feed.source.stop()
                continue
            feed.processed += 1
            feed.meter.tick()

    # -- the inference loop -------------------------------------------------------------------
    def _round(self, active: list[Feed]) -> list[tuple[Feed, Frame]]:
        """The next frame of each feed that has one (at most one each: order per feed)."""
        taken = []
        for feed in active:
            try:
                item = feed.inbox.get_nowait()
            except queue.Empty:
                continue
            if item is not _End:
                taken.append((feed, item))
                continue
            feed.done = True
            self._put(feed.outbox, _End)
        return taken

    def _infer(self, taken: list[tuple[Feed, Frame]]) -> None:
        """Prepare every frame, one ``session.run`` per group of equal shapes, then
        postprocess each with its feed's localizer and hand it to its writer."""
        loc = self.localizer
        prepared = [loc.prepare(frame.image) for _, frame in taken]
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, (x, _) in enumerate(prepared):
            groups.setdefault(x.shape if self.batch else (i,), []).append(i)
        outputs: list[Any] = [None] * len(taken)
        for idx in groups.values():
            x = prepared[idx[0]][0] if len(idx) == 1 else np.concatenate(
                [prepared[i][0] for i in idx])
            outs = loc.forward(x)  # in-graph CAMs where the model has them
            for j, i in enumerate(idx):
                outputs[i] = tuple(o[j] for o in outs)
        for (feed, frame), (_, geo), out in zip(taken, prepared, outputs):
            result = feed.localizer.finish(out, geo)
            self._put(feed.outbox, (frame, result))

    def run(self) -> MultiRun:
        """Run until every source has ended (or the run is stopped); always joins."""
        self.started = time.monotonic()
        for feed in self.feeds:
            for target, kind in ((self._read, "read"), (self._write, "write")):
                t = threading.Thread(target=target, args=(feed,), daemon=True,
                                     name=f"camloc-{kind}-{feed.name}")
                self._threads.append(t)
                t.start()
        try:
            active = list(self.feeds)
            while active and not self._abort.is_set():
                taken = self._round(active)
                active = [f for f in active if not f.done]
                if taken:
                    self._infer(taken)
                else:
                    time.sleep(0.005)
                if self.tick is not None:
                    self.tick()
        except BaseException:
            self.abort()
            raise
        finally:
            self.close()
        return self

    def close(self) -> None:
        """Stop and join every thread; close every source and sink."""
        if any(not f.done for f in self.feeds):
            self.abort()
        for t in self._threads:
            while t.is_alive():
                t.join(_POLL_S)
        for feed in self.feeds:
            if feed.source is not None:
                feed.source.close()
            for sink in feed.sinks:
                sink.close()
        self.elapsed_s = time.monotonic() - self.started
