"""The pipeline: one for one source or many. Readers, inference workers and a render
stage per source, joined by bounded hand-offs; iterate it for the processed frames.

::

    reader per source --Frame--> inference workers --outputs--> render stage per source --> you
    (decode; live: newest      (take the next frames of     (in that source's frame order:
     frame only, drops counted)  the sources round-robin,     CAMs+boxes, draw, its sinks:
                                 one session.run per batch)   video, JSONL, web, events)

With ``draw_workers`` > 1 each source's render stage finishes frames in order and
hands the drawing to a shared pool; a writer per source feeds its sinks in order.

Guarantees, for one source or many:

- hand-offs are bounded and no wait lasts more than a tick without checking whether
  the run was stopped or aborted; a file's frames wait (none lost), a live source's
  older frame is replaced by the newest (dropped, counted);
- ``stop()`` (Ctrl-C, SIGTERM, q, ``--max-frames``) stops *reading*: frames in flight
  are still drawn and written, so each source's video and JSONL hold the same frames;
- faults: with one source any failure ends the run and is raised once from the
  iteration, after every thread has been joined; with several (``isolate``), a source
  that fails (cannot be opened, is lost, its output fails) ends alone, its error kept
  in ``feed.error``, and the others go on. A failure of inference ends every source;
- per-frame stage timings travel with each frame into each source's statistics.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Protocol, Self

import cv2
import numpy as np

from realtime.errors import CamlocError, PipelineError, StageError, first_line
from realtime.model.draw import RenderOptions
from realtime.outputs.sinks import Processed, Sink
from realtime.pipeline.feeds import (
    DEFAULT_RETRY,
    Feed,
    LostSource,
    Retry,
    own_localizer,
    read_feed,
)
from realtime.pipeline.handoff import POLL_S
from realtime.pipeline.render_stage import feed
from realtime.pipeline.runstats import FpsMeter, RunStats, combine
from realtime.pipeline.stages import Stages
from realtime.sources import Source
from realtime.sources.names import unique_names

__all__ = ["STAGES", "Pipeline", "PipelineError", "Processed", "RenderOptions", "Retry",
           "RunStats"]

log = logging.getLogger(__name__)

# per-frame timings collected (ms); "postprocess" is CAMs + boxes (one engine call)
STAGES = ("decode", "preprocess", "infer", "postprocess", "draw", "encode", "json", "show")


class _Localizer(Protocol):  # what the pipeline needs of realtime.model.engine.Localizer
    provider: str

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Any]: ...
    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]: ...
    def finish(self, outputs: tuple[np.ndarray, ...], geo: Any) -> Any: ...


class _End:
    """Sentinel at the end of a hand-off."""


class Pipeline(Stages):
    """Run ``localizer`` on every frame of ``sources`` (one Source or spec, or a list) in
    threads; iterate for the processed frames of all of them (each source's in order).

    ``sinks`` are fed every frame of every source (``video``/``jsonl`` appended, for
    one-source callers); ``sinks_for(feed)`` makes a source's own outputs once it is open
    (its rate and size known): the run closes those when the source ends. ``batch``
    frames at most per inference call, from one source or several; ``workers``
    inference threads; ``draw_workers`` > 1 draws consecutive frames on a pool. Specs
    are opened by each source's reader (cameras and streams retried per ``retry``);
    ``isolate`` (default: several sources) lets a failing source end alone. Use as a
    context manager::

        with Pipeline(["a.mp4", "b.mp4"], loc, sinks_for=make) as run:
            for item in run:
                ...
    """

    def __init__(self, sources: Source | str | Sequence[Source | str], localizer: _Localizer,
                 *, sinks: Iterable[Sink] = (), sinks_for: Callable[[Feed], list[Sink]] | None
                 = None, names: Sequence[str] | None = None, video: Sink | None = None,
                 jsonl: Sink | None = None, draw: bool = True,
                 options: RenderOptions | None = None, max_frames: int | None = None,
                 batch: int = 1, queue_size: int = 4, opencv_threads: int | None = 1,
                 workers: int = 1, draw_workers: int = 1, stride: int = 1,
                 retry: Retry | None = None, live_options: dict[str, Any] | None = None,
                 isolate: bool | None = None) -> None:
        if min(batch, queue_size, workers, draw_workers) < 1 or (max_frames is not None
                                                                 and max_frames < 1):
            raise ValueError("batch, queue_size, workers, draw_workers and max_frames must be "
                             ">= 1")
        items = [sources] if isinstance(sources, (str, Source)) else list(sources)
        if not items:
            raise ValueError("no sources")
        specs = [s if isinstance(s, str) else s.name for s in items]
        names = list(names) if names is not None else unique_names(specs)
        self.localizer = localizer
        self.sinks = [*sinks, *(s for s in (video, jsonl) if s is not None)]
        self.sinks_for = sinks_for
        self.draw = draw or any(s.needs_image for s in self.sinks) or sinks_for is not None
        self.options = options or RenderOptions()
        self.max_frames, self.batch, self.workers = max_frames, batch, workers
        self.draw_workers = draw_workers
        self.stride, self.retry, self.live_options = stride, retry or DEFAULT_RETRY, \
            dict(live_options or {})
        self.isolate = len(items) > 1 if isolate is None else isolate
        self.opencv_threads = opencv_threads
        self._saved_cv_threads: int | None = None
        provider = getattr(localizer, "provider", "")
        self.feeds = [Feed(i, n, spec, localizer if len(items) == 1 else own_localizer(localizer),
                           source=None if isinstance(s, str) else s,
                           stats=RunStats(source=spec, provider=provider))
                      for i, (s, spec, n) in enumerate(zip(items, specs, names))]
        self.meter = FpsMeter()  # all sources together
        self._room = max(queue_size, 2 * batch)  # frames waiting per file source
        self._in_flight = (queue_size + workers) * batch  # taken, not yet written, per source
        # a live source: a frame never waits behind queued ones (latency over completeness)
        self._in_flight_live = workers * batch + 1
        self._q_done: queue.Queue[Any] = queue.Queue(maxsize=queue_size * len(items) + 4)
        self._wake = threading.Condition()
        self._stopped, self._abort = threading.Event(), threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._readers: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._render: list[threading.Thread] = []
        self._pool: ThreadPoolExecutor | None = None
        self._rr = 0
        self._started = 0.0
        self.elapsed_s = 0.0
        self.stopped_by: str | None = None
        self._finished = False
        for f in self.feeds:  # a source's own sinks may add to it once they are made
            f.draws = draw or any(s.needs_image for s in self.sinks)
        self._render_sinks = [s for s in self.sinks if not s.in_caller_thread]
        self._caller_sinks = [s for s in self.sinks if s.in_caller_thread]
        for s in self.sinks:
            s.attach(self)

    # -- what callers read ---------------------------------------------------------------
    @property
    def source(self) -> Source | None:
        """The source of a one-source run (None while it is not open)."""
        return self.feeds[0].source

    @property
    def outputs(self) -> list[Sink]:
        """Every sink of the run: the shared ones and each source's own."""
        return [*self.sinks, *(s for f in self.feeds for s in f.sinks)]

    @property
    def stats(self) -> RunStats:
        """The run's statistics: the source's own for one source, the sum for several."""
        if len(self.feeds) == 1:
            return self.feeds[0].stats
        return combine([f.stats for f in self.feeds], self.elapsed_s, self.stopped_by)

    # -- control -------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Stop reading every source; frames in flight are still processed and written."""
        self.stopped_by = self.stopped_by or reason
        for f in self.feeds:
            f.stats.stopped_by = f.stats.stopped_by or reason
        self._stopped.set()
        for f in self.feeds:
            if f.source is not None:
                f.source.stop()

    def abort(self) -> None:
        """Stop every stage at its next frame boundary (written frames stay consistent)."""
        self._abort.set()
        self.stop("aborted")
        self._notify()

    @property
    def stopping(self) -> bool:
        return self._stopped.is_set() or self._abort.is_set()

    def _notify(self) -> None:
        with self._wake:
            self._wake.notify_all()
        for f in self.feeds:
            with f.room:
                f.room.notify_all()

    def _fail(self, stage: str, exc: BaseException, f: Feed | None = None) -> None:
        """A stage failed: with ``isolate`` and a source's own stage, that source ends
        alone; otherwise the whole run aborts and raises it once."""
        if f is not None and self.isolate:
            if not isinstance(exc, (CamlocError, StageError)):  # named as a bug, with its stage
                exc = PipelineError(stage, exc)
            f.error = f.error or exc
            f.broken = True
            (log.error if len(self.feeds) > 1 else log.debug)("%s: %s", f.name, first_line(exc))
            if f.source is not None:
                f.source.stop()
            with f.room:
                f.inbox.clear()
                f.room.notify_all()
            return
        if self._error is None:
            self._error = (stage, exc)
        log.debug("%s stage failed", stage, exc_info=True)
        self.abort()

    # -- the run -------------------------------------------------------------------------
    def _read(self, f: Feed) -> None:
        read_feed(f, stride=self.stride, retry=self.retry, live_options=self.live_options,
                  max_frames=self.max_frames, stopped=self._stopped, aborted=self._abort,
                  make_sinks=self._make_sinks, room=self._room, wake=self._notify_workers)
        if f.error is None:
            return
        if isinstance(f.error, LostSource):  # said by the source; what it read is written
            return
        if self.isolate:  # it ends alone; the frames it read are still written
            log.error("%s: %s", f.name, first_line(f.error))
        elif self._error is None:  # raised once the frames in flight are written
            self._error = ("read", f.error)

    def _make_sinks(self, f: Feed) -> list[Sink]:
        if self.sinks_for is None:
            return []
        made = list(self.sinks_for(f))
        for s in made:
            s.attach(self)
        f.draws = f.draws or any(s.needs_image for s in made)
        return made

    def _notify_workers(self) -> None:
        with self._wake:
            self._wake.notify_all()

    def start(self) -> Self:
        if self._started:
            return self
        if self.opencv_threads is not None:  # restored in close()
            self._saved_cv_threads = cv2.getNumThreads()
            cv2.setNumThreads(self.opencv_threads)
        self._started = time.monotonic()
        if self.draw and self.draw_workers > 1:
            self._pool = ThreadPoolExecutor(self.draw_workers, thread_name_prefix="camloc-draw")

        def thread(name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
            t = threading.Thread(target=target, args=args, name=f"camloc-{name}", daemon=True)
            t.start()
            return t

        self._readers = [thread(f"read-{f.name}", self._read, f) for f in self.feeds]
        self._workers = [thread(f"infer-{i}", self._guard, self._infer_stage)
                         for i in range(self.workers)]
        self._render = [thread(f"render-{f.name}", self._guard, self._render_stage, f)
                        for f in self.feeds]
        return self

    def __iter__(self) -> Iterator[Processed]:
        self.start()
        while True:
            try:
                item = self._q_done.get(timeout=POLL_S)
            except queue.Empty:
                if self._abort.is_set() or (not any(t.is_alive() for t in self._render)
                                            and self._q_done.empty()):
                    break
                continue
            self.meter.tick()
            feed(self._caller_sinks, item)
            yield item
        self.close()

    def close(self) -> None:
        """Join every thread (aborting them if still running), fill in the statistics and
        raise the first failure, once (with ``isolate``, failures stay in ``feed.error``)."""
        if self._finished:
            return
        self._finished = True
        if any(t.is_alive() for t in self._render) and not self._stopped.is_set():
            self.abort()
        for t in (*self._workers, *self._render, *self._readers):
            while t.is_alive():  # frames nobody takes any more still reach the render sinks
                self._notify()
                self._discard_done()
                t.join(POLL_S)
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        if self._saved_cv_threads is not None:
            cv2.setNumThreads(self._saved_cv_threads)
            self._saved_cv_threads = None
        self.elapsed_s = time.monotonic() - self._started if self._started else 0.0
        for f in self.feeds:
            self._close_owned(f)
            if f.own_source and f.source is not None:  # opened by its reader: ours to close
                f.source.close()
            f.stats.fill(f.source, self.elapsed_s, f.meter)
        if self._error is not None:
            stage, exc = self._error
            if isinstance(exc, (CamlocError, StageError)):  # already one line for the user
                raise exc
            raise PipelineError(stage, exc) from exc

    def _discard_done(self) -> None:
        while True:
            try:
                self._q_done.get_nowait()
            except queue.Empty:
                return

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.abort()
            try:
                self.close()
            except Exception:  # the exception already on its way matters more
                log.debug("pipeline error while handling another", exc_info=True)
        else:
            self.close()
