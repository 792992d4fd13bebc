"""``realtime.stream``: the pipeline from Python, one processed frame at a time.

::

    import realtime

    with realtime.stream(["front.mp4", "rtsp://cam/1"], model="efficientnet_lite0",
                         draw=True) as frames:
        for item in frames:
            print(item.name, item.frame.index, item.result.labels, item.result.boxes)
            # item.image: the annotated frame (draw=True); item.times: ms per stage

It is the CLI's pipeline (the same readers, inference workers, render stage, order and
fault isolation): each source's frames come in that source's order, sources interleave;
a file gives every frame, a camera or stream its newest; among several sources one that
fails ends alone (``errors`` says why). Leaving the ``with`` block, or breaking out of a
plain ``for`` loop over it, stops reading and joins every thread.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, Self

from realtime.model.draw import RenderOptions
from realtime.model.engine import Localizer
from realtime.outputs.sinks import Processed, Sink
from realtime.pipeline import feeds
from realtime.pipeline.render_stage import draw_parallelism
from realtime.pipeline.runner import Pipeline

__all__ = ["Stream", "stream"]


class Stream:
    """An iterable, closable run of :class:`realtime.pipeline.runner.Pipeline`."""

    def __init__(self, run: Pipeline) -> None:
        self.run = run

    @property
    def errors(self) -> dict[str, BaseException]:
        """Sources that failed (output name -> why); empty when none did."""
        return {f.name: f.error for f in self.run.feeds if f.error is not None}

    @property
    def stats(self) -> Any:
        """The run's statistics (realtime.pipeline.runstats.RunStats), per source in
        ``run.feeds[i].stats``."""
        return self.run.stats

    def stop(self) -> None:
        """Stop reading; the frames in flight still come out of the iteration."""
        self.run.stop("stream.stop()")

    def __iter__(self) -> Iterator[Processed]:
        # not kept: a loop that breaks drops the last reference, which closes the run
        try:
            yield from self.run
        finally:  # also when the caller breaks out of the loop: stop and join
            self.close()

    def close(self) -> None:
        """Stop and join everything (safe to call twice)."""
        if self.run.stopping is False:
            self.run.stop("closed")
        self.run.close()

    def __enter__(self) -> Self:
        self.run.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is not None:
            self.run.abort()
        self.close()


def stream(sources: str | Sequence[str] | Any, model: str | Any = "efficientnet_lite0", *,
           device: str = "auto", imgsz: int | None = None, topk: int = 1,
           threshold: float | None = None, smooth: float = 0.0, draw: bool = False,
           options: RenderOptions | None = None, sinks: Iterable[Sink] = (),
           sinks_for: Callable[[Any], list[Sink]] | None = None, max_frames: int | None = None,
           batch: int = 1, workers: int | None = None, draw_workers: int | None = None,
           stride: int = 1, give_up_after: float | None = None, tiles: int = 1) -> Stream:
    """Run ``model`` (a zoo name, a .onnx path or a :class:`Localizer`) on ``sources``
    (camera indices, files, image folders, globs, stream URLs; one or a list) and yield
    every processed frame as a :class:`realtime.outputs.sinks.Processed`: ``name`` and
    ``feed`` (which source), ``frame`` (index, time, image), ``result``
    (classes, scores, CAMs, boxes), ``image`` (annotated in place on the frame's image, when
    ``draw``), ``times``.
    ``sinks`` (e.g. a VideoSink) get every frame of every source; ``sinks_for(feed)``
    makes a source's own outputs once it is open. Other options are the CLI's (``tiles``:
    ``--tiles``, with the default merge and blur; a :class:`Localizer` for the others)."""
    if isinstance(model, Localizer):
        loc, n_workers = model, workers or 1
    else:
        loc, n_workers = Localizer.for_pipeline(model, device, None, workers, imgsz=imgsz,
                                                topk=topk, threshold=threshold, smooth=smooth,
                                                tiles=tiles)
    specs = [sources] if isinstance(sources, (str, int)) else list(sources)
    specs = [str(s) if isinstance(s, int) else s for s in specs]
    run = Pipeline(specs, loc, sinks=sinks, sinks_for=sinks_for, draw=draw, options=options,
                   max_frames=max_frames, batch=batch, workers=n_workers,
                   draw_workers=draw_parallelism(loc.provider, draw_workers), stride=stride,
                   retry=dataclasses.replace(feeds.DEFAULT_RETRY, give_up_after_s=give_up_after))
    return Stream(run)
