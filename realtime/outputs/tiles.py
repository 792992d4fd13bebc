"""Several sources on one screen: a mosaic of tiles for the window and the web view.

With ``--source A B C --show/--serve`` each source's writer hands its newest annotated
image to a :class:`TileSink`, which only stores the reference in a shared
:class:`TileHolder` (no copy, no compositing on the writer's path). The mosaic is
composed only when someone looks: the web view when a viewer asks for a frame, the
window (:class:`MosaicWindow`) at most ~30 times a second from the caller's thread.

The layout is pure: ``cols = ceil(sqrt(n))`` columns, as many rows as needed, every
tile letterboxed (aspect kept, black bars) into one cell size, with the source's name
and frame rate on it. Tiles of sources without a frame yet stay black, named.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Sequence
from typing import Any

import cv2
import numpy as np

from realtime.model.draw import draw_hud
from realtime.outputs.sinks import Sink, record, steer

__all__ = ["CELL", "MosaicWindow", "TileHolder", "TileSink", "cell_size", "compose", "fit_rect",
           "grid"]

CELL = (640, 360)     # (w, h) of a tile when the mosaic is at most MAX_WIDTH wide
MAX_WIDTH = 1920      # the mosaic's width at most: more columns get smaller cells
WINDOW_HZ = 30.0      # the window shows at most this many mosaics a second


def grid(n: int) -> tuple[int, int]:
    """(rows, cols) for ``n`` tiles: ``ceil(sqrt(n))`` columns, rows as needed."""
    if n < 1:
        raise ValueError(f"need at least one tile, got {n}")
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def cell_size(n: int, cell: tuple[int, int] = CELL, max_width: int = MAX_WIDTH
              ) -> tuple[int, int]:
    """(w, h) of one tile: ``cell``, shrunk (same aspect) so that the columns of
    :func:`grid` fit in ``max_width`` pixels."""
    w, h = cell
    cols = grid(n)[1]
    if cols * w <= max_width:
        return w, h
    nw = max_width // cols
    return nw, max(1, round(h * nw / w))


def fit_rect(size: tuple[int, int], cell: tuple[int, int]) -> tuple[int, int, int, int]:
    """(x, y, w, h) of an image of ``size`` (w, h) scaled to fit ``cell`` (w, h), aspect
    kept, centred: the letterbox. Both sides at least one pixel."""
    (iw, ih), (cw, ch) = size, cell
    if iw < 1 or ih < 1:
        raise ValueError(f"image size must be positive, got {size}")
    scale = min(cw / iw, ch / ih)
    w, h = max(1, min(cw, round(iw * scale))), max(1, min(ch, round(ih * scale)))
    return (cw - w) // 2, (ch - h) // 2, w, h


def compose(images: Sequence[np.ndarray | None], labels: Sequence[str] | None = None,
            cell: tuple[int, int] | None = None) -> np.ndarray:
    """A new BGR uint8 mosaic of ``images`` (None: a black tile) in :func:`grid` order,
    each letterboxed into ``cell`` (default :func:`cell_size`) with its label, if any, at
    its top-left. The images are only read."""
    n = len(images)
    rows, cols = grid(n)
    cw, ch = cell or cell_size(n)
    out = np.zeros((rows * ch, cols * cw, 3), np.uint8)
    for i, image in enumerate(images):
        y0, x0 = (i // cols) * ch, (i % cols) * cw
        tile = out[y0:y0 + ch, x0:x0 + cw]
        if image is not None:
            x, y, w, h = fit_rect((image.shape[1], image.shape[0]), (cw, ch))
            interp = cv2.INTER_AREA if w < image.shape[1] else cv2.INTER_LINEAR
            tile[y:y + h, x:x + w] = cv2.resize(image, (w, h), interpolation=interp)
        if labels is not None and labels[i]:
            draw_hud(tile, labels[i])  # a view of ``out``: drawn in place
    return out


class TileHolder:
    """The newest processed frame of each source, by tile index, under a lock.

    ``put`` is the only call on the writers' path: it stores a reference and bumps
    ``seq``, then calls ``on_put`` (the web view's wake-up) if set. Everything else
    (records, the mosaic) is done by whoever asks.
    """

    def __init__(self, names: Sequence[str], cell: tuple[int, int] | None = None) -> None:
        self.names = list(names)
        self.cell = cell or cell_size(len(self.names))
        self.seq = 0  # bumped by every put: the mosaic changed
        self.on_put: Any = None
        self._items: list[Any] = [None] * len(self.names)
        self._lock = threading.Lock()

    def put(self, index: int, item: Any) -> None:
        """Keep ``item`` (a ``realtime.pipeline.runner.Processed`` whose image is not drawn on
        afterwards) as source ``index``'s newest frame."""
        with self._lock:
            self._items[index] = item
            self.seq += 1
        if self.on_put is not None:
            self.on_put()

    def latest(self) -> tuple[int, list[Any]]:
        """(seq, the newest item of every source, None where none came yet)."""
        with self._lock:
            return self.seq, list(self._items)

    def newest_arrival(self) -> float:
        """The arrival (``time.monotonic()``) of the newest frame in the mosaic, 0.0 before
        any: the frame whose coming made the mosaic change."""
        _, items = self.latest()
        return max((it.frame.arrival for it in items if it is not None), default=0.0)

    def mosaic(self) -> np.ndarray:
        """The mosaic of every source's newest image, named, with its frame rate."""
        _, items = self.latest()
        images = [None if it is None else it.image for it in items]
        labels = [n if it is None else f"{n}  {it.fps:.1f} fps"
                  for n, it in zip(self.names, items)]
        return compose(images, labels, self.cell)

    def records(self) -> list[dict[str, Any]]:
        """Every source's newest JSONL record with its ``name`` (frame None before any)."""
        out = []
        for name, it in zip(self.names, self.latest()[1]):
            body = ({"frame": None, "source": None, "time_ms": None, "detections": []}
                    if it is None else record(it.frame, it.result))
            out.append({"name": name, **body, "fps": 0.0 if it is None else round(it.fps, 2)})
        return out


class TileSink(Sink):
    """One source's feed into a :class:`TileHolder`: keeps a reference, nothing more."""

    stage = "tiles"
    needs_image = True

    def __init__(self, holder: TileHolder, index: int | None = None) -> None:
        self.holder, self.index = holder, index  # None: the tile of the item's own source

    def write(self, item: Any) -> None:
        self.holder.put(item.feed if self.index is None else self.index, item)


class MosaicWindow(Sink):
    """The ``--show`` window of several sources: the mosaic, refreshed from the thread
    iterating the pipeline (a sink fed there: :meth:`write` calls :meth:`tick`) when a
    source produced a frame, at most ``hz`` times a second; keys as the single-source
    window (q quit, space pause, h/b/n/p what is drawn, for every source)."""

    stage = "show"
    needs_image = True
    in_caller_thread = True

    def __init__(self, window: Any, holder: TileHolder, topk: int = 1,
                 hz: float = WINDOW_HZ) -> None:
        self.window, self.holder, self.topk = window, holder, topk
        self.period = 1.0 / hz
        self.shown = 0
        self._run: Any = None
        self._seq, self._next = 0, 0.0

    def attach(self, run: Any) -> None:
        """The run the keys steer (``options``, ``stop``, ``stopping``)."""
        self._run = run

    def tick(self) -> None:
        """Show the newest mosaic if due and changed, else just poll the keys when due;
        while paused, keep polling here (the run waits, as with one source)."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.period
        if self.holder.seq != self._seq:
            self._seq = self.holder.seq
            action = self.window.show(self.holder.mosaic())
            self.shown += 1
        else:
            action = self.window.poll(1)
        self._act(action)

    def write(self, item: Any) -> None:
        self.tick()

    def _act(self, action: str | None) -> None:
        assert self._run is not None, "a MosaicWindow steers the run it was attached to"
        steer(self._run, self.window, action, self.topk)

    def close(self) -> None:
        self.window.close()
