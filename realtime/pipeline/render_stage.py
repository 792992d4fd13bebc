"""The render stage's per-frame work, and how many threads draw.

Drawing (heatmap and boxes on the full-size frame) is the only render work that
does not need frame order: CAMs, smoothing and boxes (``Localizer.finish``) need
the frames in order before it, the sinks (one encoder, one JSONL file) need them
in order after it. :func:`draw_item` is that independent piece, so the pipeline
can run it on one thread (the render thread itself) or on a small pool of
``draw_workers`` threads for consecutive frames (realtime/pipeline.py wires
both). :func:`draw_parallelism` chooses the pool's size from the provider the
session was granted, as ``providers.parallelism`` chooses the inference workers.
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from typing import Any

from realtime.model.draw import RenderOptions, draw_result
from realtime.model.providers import PROVIDER_OF
from realtime.outputs.sinks import Processed, Sink
from realtime.outputs.writes import check_space, write_or_fail
from realtime.sources import Frame

__all__ = ["Processed", "draw_item", "draw_parallelism", "feed", "options_for", "write_ready"]


def options_for(options: RenderOptions, result: Any) -> RenderOptions:
    """``options`` for this result: a class index the result does not have (a window key
    asked for the 3rd class of a frame with 2) falls back to the best class."""
    if options.index is not None and options.index >= len(result.class_ids):
        return replace(options, index=None)
    return options


def draw_item(frame: Frame, result: Any, times: dict[str, float],
              options: RenderOptions | None) -> Processed:
    """The frame as the sinks take it: drawn in place on ``frame.image`` with ``options``
    (None: not drawn), the draw time added to ``times``. Independent per frame, so
    consecutive frames may be drawn on different threads."""
    image = None
    if options is not None:
        t0 = time.perf_counter()
        image = draw_result(frame.image, result, options)
        times["draw"] = (time.perf_counter() - t0) * 1e3
    return Processed(frame, result, image, times)


def feed(sinks: list[Sink], item: Processed) -> None:
    """Give ``item`` to each sink in turn, timing each under its ``stage`` key, and
    record in the sink's latency ring how long after its arrival it had the frame."""
    for sink in sinks:
        t0 = time.perf_counter()
        write_or_fail(sink, item)  # an OSError (full disk, I/O) becomes WriteError
        item.times[sink.stage] = (time.perf_counter() - t0) * 1e3
        if not sink.own_latency:  # the web view records its own, when it sends
            item.latency[sink.stage] = sink.latency.since(item.frame.arrival)


def write_ready(sinks: list[Sink], item: Processed) -> None:
    """Feed ``item`` to ``sinks`` once each has room: a file system near full raises
    WriteError before any sink takes the frame, so video and JSONL hold the same frames."""
    for sink in sinks:
        check_space(sink)
    feed(sinks, item)


def draw_parallelism(provider: str, draw_workers: int | None = None,
                     cores: int | None = None) -> int:
    """Threads drawing consecutive frames for a pipeline whose model runs on ``provider``
    (what the session granted). On the CPU, 1: the cores already run the inference
    workers, and a pool would only add a thread hop per frame (docs/PERFORMANCE.md).
    With the model on a GPU the cores are free and drawing 1080p on one of them caps
    the pipeline, so min(4, cores // 4), at least 1. An explicit ``draw_workers`` is kept."""
    if draw_workers is not None:
        return draw_workers
    if provider == PROVIDER_OF["cpu"]:
        return 1
    return max(1, min(4, (cores or os.cpu_count() or 1) // 4))
