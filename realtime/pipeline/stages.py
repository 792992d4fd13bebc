"""The pipeline's stages, per frame: inference workers taking the next frames of the
sources round-robin, and each source's render stage (CAMs and boxes in that source's
frame order, drawing, its outputs). :class:`Stages` is mixed into
:class:`realtime.pipeline.runner.Pipeline`, which owns the threads, the hand-offs and the
fault policy these methods report to (``_fail``)."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

from realtime.model.draw import RenderOptions
from realtime.outputs.sinks import Processed
from realtime.pipeline.feeds import Feed
from realtime.pipeline.handoff import POLL_S, put_until
from realtime.pipeline.render_stage import draw_item, options_for, write_ready

__all__ = ["Stages"]


class _End:
    """Sentinel at the end of a hand-off."""


class Stages:
    """Inference and render stages (see the module docstring)."""

    # -- inference -----------------------------------------------------------------------
    def _collect(self) -> list[tuple[Feed, int, Any]]:
        """The next frames (at most ``batch``), taking from the sources round-robin."""
        taken: list[tuple[Feed, int, Any]] = []
        n = len(self.feeds)
        for k in range(n):
            f = self.feeds[(self._rr + k) % n]
            with f.room:
                limit = self._in_flight_live if f.live else self._in_flight
                # --max-frames of a live source counts the frames given to inference
                cap = self.max_frames if f.live and self.max_frames is not None else None
                while f.inbox and len(taken) < self.batch and f.in_flight < limit \
                        and (cap is None or f.taken < cap):
                    taken.append((f, f.taken, f.inbox.popleft()))
                    f.taken += 1
                if cap is not None and f.taken >= cap:
                    self._enough(f)
                f.room.notify_all()
            if len(taken) >= self.batch:
                break
        self._rr = (self._rr + 1) % n
        return taken

    @staticmethod
    def _enough(f: Feed) -> None:
        """A live source has given ``max_frames`` frames to inference: it stops (the caller
        holds ``f.room``); frames still waiting are dropped."""
        f.stats.stopped_by = f.stats.stopped_by or "--max-frames"
        if f.source is not None:
            f.source.stop()
        f.inbox.clear()

    def _take(self) -> list[tuple[Feed, int, Any]] | None:
        with self._wake:
            while not self._abort.is_set():
                taken = self._collect()
                if taken:
                    return taken
                if all(f.read_done and not f.inbox for f in self.feeds):
                    return None
                self._wake.wait(POLL_S)
        return None

    def _infer_stage(self) -> None:
        """One inference worker: take frames, prepare, run the model, hand each on."""
        while (taken := self._take()) is not None:
            frames = [frame for _, _, frame in taken]
            loc, n = self.localizer, len(frames)
            t0 = time.perf_counter()
            prepared = [loc.prepare(fr.image) for fr in frames]
            t1 = time.perf_counter()
            outputs: list[Any] = [None] * n
            groups: dict[tuple[int, ...], list[int]] = {}
            for i, (x, _) in enumerate(prepared):  # one call per shape (image folders vary)
                groups.setdefault(x.shape, []).append(i)
            for idx in groups.values():  # a tiled frame is several rows (1 + N*N)
                x = prepared[idx[0]][0] if len(idx) == 1 else np.concatenate(
                    [prepared[i][0] for i in idx])
                outs, rows = loc.forward(x), len(prepared[idx[0]][0])
                for j, i in enumerate(idx):
                    outputs[i] = tuple(o[j] if rows == 1 else o[j * rows:(j + 1) * rows]
                                       for o in outs)
            pre_ms, infer_ms = (t1 - t0) * 1e3 / n, (time.perf_counter() - t1) * 1e3 / n
            for (f, seq, frame), (_, geo), out in zip(taken, prepared, outputs):
                with f.room:
                    f.pending[seq] = (frame, geo, out, pre_ms, infer_ms)
                    f.room.notify_all()

    # -- render, per source --------------------------------------------------------------
    def _in_order(self, f: Feed) -> Iterator[tuple[Any, Any, dict[str, float]]]:
        """This source's frames in order, CAMs and boxes done (smoothing needs the order)."""
        want = 0
        while True:
            with f.room:
                while want not in f.pending:
                    if self._abort.is_set() or (f.read_done and not f.inbox
                                                and want >= f.taken):
                        return
                    f.room.wait(POLL_S)
                frame, geo, out, pre_ms, infer_ms = f.pending.pop(want)
            want += 1
            if f.broken:  # this source's outputs failed: drain only
                self._written(f)
                continue
            t0 = time.perf_counter()
            result = f.localizer.finish(out, geo)
            times = {"decode": frame.decode_ms, "preprocess": pre_ms, "infer": infer_ms,
                     "postprocess": (time.perf_counter() - t0) * 1e3}
            times.update(result.extra.get("times_ms", {}))
            yield frame, result, times

    def _written(self, f: Feed, item: Processed | None = None) -> None:
        """One more frame of ``f`` through the render stage (None: drained, not written)."""
        if item is not None:
            f.meter.tick()
            f.stats.processed += 1
            f.stats.add_times(item.times)
        with f.room:
            f.written += 1
        with self._wake:  # room in flight: the workers may take this source's frames again
            self._wake.notify_all()

    def _out(self, f: Feed, item: Processed) -> bool:
        """Write ``item`` to the source's sinks and the run's, then hand it to the caller."""
        item.fps, item.feed, item.name = f.meter.fps, f.index, f.name
        try:
            write_ready([*f.sinks, *self._render_sinks], item)
        except Exception as exc:  # noqa: BLE001 - this source's outputs failed
            self._fail("render", exc, f)
            self._written(f)
            return not self._abort.is_set()
        self._written(f, item)
        return put_until(self._q_done, item, self._abort)

    def _options(self, f: Feed, result: Any) -> RenderOptions | None:
        return options_for(self.options, result) if f.draws else None

    def _render_stage(self, f: Feed) -> None:
        if self._pool is None:
            for frame, result, times in self._in_order(f):
                if not self._out(f, draw_item(frame, result, times, self._options(f, result))):
                    return
            return
        drawn: queue.Queue[Any] = queue.Queue(maxsize=2 * self.draw_workers)
        writer = threading.Thread(target=self._guard, args=(self._write_stage, f, drawn),
                                  name=f"camloc-write-{f.name}", daemon=True)
        writer.start()
        try:
            for frame, result, times in self._in_order(f):
                future = self._pool.submit(draw_item, frame, result, times,
                                           self._options(f, result))
                if not put_until(drawn, future, self._abort):
                    return
        finally:
            put_until(drawn, _End, self._abort)
            while writer.is_alive():
                writer.join(POLL_S)

    def _write_stage(self, f: Feed, drawn: queue.Queue[Any]) -> None:
        while not self._abort.is_set():
            try:
                future = drawn.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if future is _End:
                return
            try:
                item = future.result()
            except Exception as exc:  # noqa: BLE001 - a drawing failed: this source's fault
                self._fail("render", exc, f)
                self._written(f)
                continue
            if not self._out(f, item):
                return

    def _guard(self, work: Callable[..., None], *args: Any) -> None:
        """Run a stage; any exception fails the run (or, isolated, that source)."""
        f = args[0] if args and isinstance(args[0], Feed) else None
        try:
            work(*args)
        except BaseException as exc:  # noqa: BLE001 - every failure stops the run (or its source)
            self._fail("render" if f is not None else "infer", exc, f)
        finally:
            if f is not None:
                self._close_owned(f)

    def _close_owned(self, f: Feed) -> None:
        """A source's end: close the outputs the run made for it (its video is complete)."""
        for sink in f.owned:
            try:
                sink.close()
            except Exception as exc:  # noqa: BLE001 - e.g. a full disk at the last write
                self._fail("render", exc, f)
        f.owned = []

