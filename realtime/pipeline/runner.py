"""The pipeline: reader, inference and render/write threads joined by bounded queues.

::

    source thread --Frame--> infer worker(s) --(batch, outputs)--> render thread --Processed--> you
    (decode)                 (preprocess, infer)                   (in frame order: CAMs+boxes,
                                                                    draw, sinks: video, JSONL)

With several inference workers (the CPU default: one ``session.run`` per core),
consecutive batches are inferred at once and put back in frame order before
the CAMs, so temporal smoothing and the outputs see frames in order.

With ``draw_workers`` > 1 (the default when the model runs on a GPU), the render
thread only finishes frames in order and hands each to a pool that draws
consecutive frames at once; a writer thread takes the drawings in submission
order and feeds the sinks::

    render thread --future--> writer thread --Processed--> you
    (CAMs+boxes in order,     (in frame order: each drawing,
     draw on the pool)         sinks: video, JSONL)

Each stage reads like a sentence (take a frame, localize it, hand it on); the
plumbing around it guarantees that

- queues are bounded and no ``put``/``get`` blocks for more than a tick
  without checking whether the run was stopped or aborted;
- ``stop()`` (Ctrl-C, SIGTERM, q in the window, ``--max-frames``) stops
  *reading*: what is in flight is still drawn and written, so the video and the
  JSONL always hold the same frames;
- an exception in any stage aborts all of them and is raised once, from the
  iteration in the caller's thread, after every thread has been joined;
- per-frame stage timings (milliseconds) travel with each frame, for the
  summary and the benchmark.

Outputs are :class:`realtime.outputs.sinks.Sink` objects, fed in frame order: from the
render thread, or (``in_caller_thread``, a window) from the caller's. The caller
iterates the pipeline in its own (main) thread, which is where a window must
live, and gets each frame once every sink has taken it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from itertools import islice
from typing import Any, Protocol, Self

import cv2
import numpy as np

from realtime.errors import CamlocError, PipelineError, StageError
from realtime.model.draw import RenderOptions
from realtime.outputs.sinks import Sink, record
from realtime.pipeline.handoff import put_until
from realtime.pipeline.render_stage import Processed, draw_item, feed, options_for, write_ready
from realtime.pipeline.runstats import FpsMeter, RunStats
from realtime.sources import Frame, Source

__all__ = ["STAGES", "FpsMeter", "Pipeline", "PipelineError", "Processed", "RenderOptions",
           "RunStats", "record"]  # RenderOptions: realtime.model.draw; record: realtime.outputs.sinks;
# Processed: realtime.pipeline.render_stage

log = logging.getLogger(__name__)

# per-frame timings collected (ms); "postprocess" is CAMs + boxes (one engine call), which
# the engine may split further in ``result.extra["times_ms"]`` (e.g. "cam", "boxes")
STAGES = ("decode", "preprocess", "infer", "postprocess", "draw", "encode", "json", "show")
_POLL_S = 0.1


class _Localizer(Protocol):  # what the pipeline needs of realtime.model.engine.Localizer
    provider: str

    def prepare(self, frame: np.ndarray) -> tuple[np.ndarray, Any]: ...
    def forward(self, x: np.ndarray) -> tuple[np.ndarray, ...]: ...
    def finish(self, outputs: tuple[np.ndarray, ...], geo: Any) -> Any: ...


class _End:
    """Sentinel at the end of a queue."""


class Pipeline:
    """Run ``localizer`` on every frame of ``source`` in threads; iterate for the results.

    ``sinks`` get every processed frame in order (``video`` and ``jsonl`` are
    added to them, in that order, for existing callers); the annotated image is
    drawn when ``draw`` is True or a sink needs it. ``batch`` > 1 sends that
    many frames per inference (files: throughput). ``opencv_threads`` sizes
    OpenCV's own thread pool while the run lasts (FFmpeg's codec threads follow
    it): every stage already has its own thread, and on a small CPU nested
    pools only steal cores from the model (None: leave it). ``workers`` > 1
    runs that many inference threads on consecutive batches (each ``session.run``
    on its own core: on a small CPU this beats splitting every layer across
    cores, see docs/PERFORMANCE.md); CAMs, boxes, smoothing and output stay in
    frame order. ``draw_workers`` > 1 draws that many consecutive frames at once on a
    pool (``render.draw_parallelism`` picks it per device), between CAMs in order and
    sinks in order; 1 draws in the render thread. Use as a context manager::

        with Pipeline(source, loc, sinks=[video_sink]) as run:
            for item in run:
                ...
    """

    def __init__(self, source: Source, localizer: _Localizer, *, sinks: Iterable[Sink] = (),
                 video: Sink | None = None, jsonl: Sink | None = None, draw: bool = True,
                 options: RenderOptions | None = None, max_frames: int | None = None,
                 batch: int = 1, queue_size: int = 4, opencv_threads: int | None = 1,
                 workers: int = 1, draw_workers: int = 1) -> None:
        if min(batch, queue_size, workers, draw_workers) < 1 or (max_frames is not None
                                                                 and max_frames < 1):
            raise ValueError("batch, queue_size, workers, draw_workers and max_frames must be "
                             ">= 1")
        if getattr(source, "live", False):  # issue 27: a live frame must not wait behind
            queue_size = 1                  # queued ones (in flight: workers + 2 at most)
        self.source, self.localizer = source, localizer
        self.sinks = [*sinks, *(s for s in (video, jsonl) if s is not None)]
        self._render_sinks = [s for s in self.sinks if not s.in_caller_thread]
        self._caller_sinks = [s for s in self.sinks if s.in_caller_thread]
        self.draw = draw or any(s.needs_image for s in self.sinks)
        self.options = options or RenderOptions()
        self.max_frames, self.batch, self.workers = max_frames, batch, workers
        self.draw_workers = draw_workers if self.draw else 1  # nothing to draw: no pool
        self.opencv_threads = opencv_threads
        self._saved_cv_threads: int | None = None
        self.stats = RunStats(source=source.name, provider=localizer.provider)
        self.meter = FpsMeter()
        self._q_results: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._q_done: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        # drawings in submission order; bounded, so at most 2 * draw_workers + 2 frames
        # are being drawn or waiting for the writer
        self._q_drawn: queue.Queue[Any] = queue.Queue(maxsize=2 * self.draw_workers)
        self._abort = threading.Event()
        self._error: tuple[str, BaseException] | None = None
        self._threads: list[threading.Thread] = []
        self._infer_threads: list[threading.Thread] = []
        self._read_lock = threading.Lock()  # workers take batches from the source in turn
        self._frames: Iterator[Frame] = iter(())
        self._next_seq = 0
        # a worker takes a slot per batch; the render stage frees it once the batch is
        # consumed in order, so reordering holds at most queue_size + workers batches
        self._slots = threading.BoundedSemaphore(queue_size + workers)
        self._started = 0.0
        self._finished = False
        for s in self.sinks:
            s.attach(self)

    # -- control -------------------------------------------------------------------------
    def stop(self, reason: str = "stopped") -> None:
        """Stop reading; frames in flight are still processed and written."""
        if self.stats.stopped_by is None:
            self.stats.stopped_by = reason
        self.source.stop()

    def abort(self) -> None:
        """Stop every stage at its next frame boundary (written frames stay consistent)."""
        self._abort.set()
        self.source.stop()

    @property
    def stopping(self) -> bool:
        return self.source.stopped or self._abort.is_set()

    # -- the stages ----------------------------------------------------------------------
    def _take_batch(self) -> tuple[int, list[Frame]] | None:
        """The next batch of frames and its sequence number; None at the end or on abort."""
        while not self._slots.acquire(timeout=_POLL_S):
            if self._abort.is_set():
                return None
        with self._read_lock:
            batch = list(islice(self._frames, self.batch))
            seq = self._next_seq
            self._next_seq += 1 if batch else 0
        if not batch:
            self._slots.release()
            if self.max_frames is not None and not self.source.stopped:
                self.stop("--max-frames")
            return None
        return seq, batch

    def _infer_stage(self) -> None:
        """One inference worker: take a batch, prepare it, run the model, hand it on."""
        while (taken := self._take_batch()) is not None:
            seq, batch = taken
            if not self._put(self._q_results, (seq, batch, *self._infer(batch))):
                return
            if self._abort.is_set():
                return

    def _infer(self, batch: list[Frame]) -> tuple[list[Any], list[tuple[Any, Any]], float, float]:
        """prepare and infer (one call per batch of equal shapes): (geometries,
        per-frame outputs of ``forward``, preprocess ms, infer ms) per frame."""
        loc, n = self.localizer, len(batch)
        t0 = time.perf_counter()
        prepared = [loc.prepare(f.image) for f in batch]
        t1 = time.perf_counter()
        if len({x.shape for x, _ in prepared}) == 1:
            x = prepared[0][0] if n == 1 else np.concatenate([x for x, _ in prepared])
            outs = loc.forward(x)
            outputs = [tuple(o[i] for o in outs) for i in range(n)]
        else:  # frames of different sizes (an image folder): one by one
            outputs = [tuple(o[0] for o in loc.forward(x)) for x, _ in prepared]
        t2 = time.perf_counter()
        return [g for _, g in prepared], outputs, (t1 - t0) * 1e3 / n, (t2 - t1) * 1e3 / n

    def _in_order(self) -> Iterator[tuple[Frame, Any, dict[str, float]]]:
        """Batches from the workers put back in frame order, postprocessed (CAMs, boxes,
        smoothing need the order), one frame at a time."""
        pending: dict[int, tuple[Any, ...]] = {}
        want = ended = 0
        while True:
            while want in pending:
                batch, geos, outputs, pre_ms, infer_ms = pending.pop(want)
                want += 1
                self._slots.release()
                for frame, geo, out in zip(batch, geos, outputs):
                    t0 = time.perf_counter()
                    result = self.localizer.finish(out, geo)
                    times = {"decode": frame.decode_ms, "preprocess": pre_ms, "infer": infer_ms,
                             "postprocess": (time.perf_counter() - t0) * 1e3}
                    times.update(result.extra.get("times_ms", {}))
                    yield frame, result, times
            item = self._get(self._q_results, self._infer_threads)
            if item is _End:
                ended += 1
                if ended >= len(self._infer_threads) or self._abort.is_set():
                    return
                continue
            pending[item[0]] = item[1:]

    def _options(self, result: Any) -> RenderOptions | None:
        """Options to draw this frame with (read now, in frame order), None: no drawing."""
        return options_for(self.options, result) if self.draw else None

    def _render_stage(self) -> None:
        """draw_workers == 1: CAMs, drawing and sinks, one frame after the other."""
        for frame, result, times in self._in_order():
            item = draw_item(frame, result, times, self._options(result))
            write_ready(self._render_sinks, item)  # in order: video and JSONL hold the same frames
            if not self._put(self._q_done, item):
                return

    def _submit_stage(self) -> None:
        """draw_workers > 1: CAMs in order here, each frame's drawing on the pool, its
        future to the writer in order. Leaving the pool waits for the drawings in flight
        (milliseconds each), so no pool thread outlives the run."""
        with ThreadPoolExecutor(self.draw_workers, thread_name_prefix="camloc-draw") as pool:
            for frame, result, times in self._in_order():
                future = pool.submit(draw_item, frame, result, times, self._options(result))
                if not self._put(self._q_drawn, future):
                    return

    def _write_stage(self) -> None:
        """draw_workers > 1: each drawing, in frame order, to the sinks (a draw error is
        raised here, once, and aborts the run)."""
        while (future := self._get(self._q_drawn, self._threads[-2:-1])) is not _End:
            item = future.result()
            write_ready(self._render_sinks, item)
            if not self._put(self._q_done, item):
                return

    # -- plumbing ------------------------------------------------------------------------
    def _put(self, q: queue.Queue[Any], item: Any) -> bool:
        """Put, waiting for room while the run is not aborted; False when aborted."""
        return put_until(q, item, self._abort)

    def _get(self, q: queue.Queue[Any], upstream: list[threading.Thread]) -> Any:
        """Next item, or _End once aborted or when every ``upstream`` thread died with
        ``q`` empty."""
        while not self._abort.is_set():
            try:
                return q.get(timeout=_POLL_S)
            except queue.Empty:
                if not any(t.is_alive() for t in upstream) and q.empty():
                    return _End
        return _End

    def _stage(self, name: str, work: Any, out: queue.Queue[Any]) -> None:
        try:
            work()
        except BaseException as exc:  # every failure must stop the run
            if self._error is None:
                self._error = (name, exc)
            log.debug("%s stage failed", name, exc_info=True)
            self.abort()
        finally:
            self._put(out, _End)

    def _thread(self, name: str, work: Any, out: queue.Queue[Any],
                stage: str | None = None) -> threading.Thread:
        """A render-side thread running ``work`` as stage ``stage`` (default ``name``)."""
        return threading.Thread(target=self._stage, args=(stage or name, work, out),
                                name=f"camloc-{name}", daemon=True)

    def start(self) -> Self:
        if not self._threads:
            if self.opencv_threads is not None:  # restored in close()
                self._saved_cv_threads = cv2.getNumThreads()
                cv2.setNumThreads(self.opencv_threads)
            self._started = time.monotonic()
            self.source.start()
            frames: Iterable[Frame] = self.source
            if self.max_frames is not None:
                frames = islice(frames, self.max_frames)
            self._frames = iter(frames)
            self._infer_threads = [
                threading.Thread(target=self._stage, args=("infer", self._infer_stage,
                                                           self._q_results),
                                 name=f"camloc-infer-{i}", daemon=True)
                for i in range(self.workers)]
            if self.draw_workers == 1:
                render = [self._thread("render", self._render_stage, self._q_done)]
            else:  # the writer last: the caller waits on it
                render = [self._thread("render", self._submit_stage, self._q_drawn),
                          self._thread("write", self._write_stage, self._q_done, "render")]
            self._threads = [*self._infer_threads, *render]
            for t in self._threads:
                t.start()
        return self

    def __iter__(self) -> Iterator[Processed]:
        self.start()
        while (item := self._get(self._q_done, self._threads[-1:])) is not _End:
            self.meter.tick()
            item.fps = self.meter.fps
            feed(self._caller_sinks, item)
            self.stats.processed += 1
            self.stats.add_times(item.times)
            yield item
        self.close()

    def close(self) -> None:
        """Join every thread (aborting them if still running), fill in the stats and
        raise the first stage error, once."""
        if self._finished:
            return
        self._finished = True
        if any(t.is_alive() for t in self._threads) and not self.source.stopped:
            self.abort()
        for t in self._threads:
            while t.is_alive():
                t.join(_POLL_S)
        if self._saved_cv_threads is not None:
            cv2.setNumThreads(self._saved_cv_threads)
            self._saved_cv_threads = None
        s, src = self.stats, self.source
        s.elapsed_s = time.monotonic() - self._started if self._started else 0.0
        s.mean_fps = self.meter.mean_fps
        s.frames_read, s.dropped, s.corrupt = src.frames_read, src.frames_dropped, \
            src.frames_corrupt
        s.ended_because = src.ended_because
        s.skipped = src.frames_skipped
        if self._error is not None:
            stage, exc = self._error
            if isinstance(exc, (CamlocError, StageError)):  # already one line for the user
                raise exc
            raise PipelineError(stage, exc) from exc

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
