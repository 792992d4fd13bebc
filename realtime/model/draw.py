"""Drawing a result: heatmap overlay, boxes with labels, a HUD line, and
:func:`draw_result`, which draws a whole :class:`realtime.model.engine.Result` as the
:class:`RenderOptions` say (the pipeline's render stage, ``Result.draw``).

Every function takes the frame first, draws on it IN PLACE and returns it (the
caller copies first if it needs the original). The heatmap is coloured at low
resolution and only the final upsample and blend touch full-size pixels: at
1280x720 the overlay costs about as much as one frame copy plus one blend.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

__all__ = ["PALETTE", "RenderOptions", "check_canvas", "colorize", "draw_boxes", "draw_heatmap",
           "draw_hud", "draw_result", "hud_text", "line_thickness"]

# BGR colours for boxes of the 1st, 2nd, ... class (colour-blind-friendly order).
PALETTE = ((0, 255, 0), (255, 160, 0), (0, 200, 255), (255, 0, 255), (0, 0, 255),
           (255, 255, 0))


def check_canvas(frame: np.ndarray) -> np.ndarray:
    """Raise unless ``frame`` is an HxWx3 uint8 array that can be drawn on in place."""
    if not isinstance(frame, np.ndarray):
        raise TypeError(f"frame must be a numpy array, got {type(frame).__name__}")
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] != 3:
        raise ValueError(f"can only draw on an HxWx3 uint8 frame, got {frame.dtype} "
                         f"{frame.shape}")
    if not frame.flags.writeable:
        raise ValueError("frame is read-only; pass frame.copy() to draw on a copy")
    return frame


def line_thickness(frame: np.ndarray) -> int:
    """Box line width that reads well at the frame's size (2 px at 720p)."""
    return max(1, round(min(frame.shape[:2]) / 360))


def colorize(cam: np.ndarray, colormap: int = cv2.COLORMAP_JET, upsample: int = 8
             ) -> np.ndarray:
    """A [h, w] map in [0, 1] -> small BGR uint8 image, ``upsample`` times larger.

    The map is interpolated before the colormap (so colours follow the values,
    not a blend of neighbouring colours) but still at low resolution.
    """
    cam = np.asarray(cam, np.float32)
    if upsample > 1:
        cam = cv2.resize(cam, (cam.shape[1] * upsample, cam.shape[0] * upsample),
                         interpolation=cv2.INTER_LINEAR)
    gray = cv2.convertScaleAbs(cam, alpha=255.0)  # clips to 0..255 and rounds
    return cv2.applyColorMap(gray, colormap)


def draw_heatmap(frame: np.ndarray, cam: np.ndarray, alpha: float = 0.4,
                 colormap: int = cv2.COLORMAP_JET, upsample: int = 8) -> np.ndarray:
    """Blend the coloured CAM over the whole frame, in place: ``(1-alpha)*frame + alpha*heat``."""
    check_canvas(frame)
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    h, w = frame.shape[:2]
    heat = cv2.resize(colorize(cam, colormap, upsample), (w, h), interpolation=cv2.INTER_LINEAR)
    cv2.addWeighted(frame, 1.0 - alpha, heat, alpha, 0.0, dst=frame)
    return frame


def _label(frame: np.ndarray, text: str, x: int, y: int, color: tuple[int, int, int],
           scale: float, thickness: int) -> None:
    """Text on a filled box whose bottom-left corner is (x, y), kept inside the frame."""
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    _h, w = frame.shape[:2]
    x = min(max(x, 0), max(w - tw - 2, 0))
    top = y - th - base - 2
    if top < 0:  # no room above the box: put the label just inside it
        top, y = 0, th + base + 2
    cv2.rectangle(frame, (x, top), (x + tw + 2, y), color, cv2.FILLED)
    ink = (0, 0, 0) if sum(color) > 350 else (255, 255, 255)
    cv2.putText(frame, text, (x + 1, y - base - 1), cv2.FONT_HERSHEY_SIMPLEX, scale, ink,
                thickness, cv2.LINE_AA)


def draw_boxes(frame: np.ndarray, boxes: Sequence[Sequence[int]],
               labels: Sequence[str] | None = None,
               colors: Sequence[tuple[int, int, int]] | None = None,
               thickness: int | None = None) -> np.ndarray:
    """Rectangles [x1, y1, x2, y2] (frame pixels, x2/y2 exclusive) with optional labels,
    in place. ``colors`` gives one BGR colour per box (default: first PALETTE colour)."""
    check_canvas(frame)
    t = line_thickness(frame) if thickness is None else thickness
    scale = max(0.4, min(frame.shape[:2]) / 1200)
    for i, box in enumerate(boxes):
        x1, y1, x2, y2 = (int(v) for v in box)
        if x2 <= x1 or y2 <= y1:
            continue
        color = tuple(colors[i]) if colors is not None else PALETTE[0]
        cv2.rectangle(frame, (x1, y1), (x2 - 1, y2 - 1), color, t)
        if labels is not None and labels[i]:
            _label(frame, labels[i], x1, y1, color, scale, max(1, t // 2))
    return frame


def draw_hud(frame: np.ndarray, text: str) -> np.ndarray:
    """One line of text (fps, latency, provider...) at the top-left, in place."""
    check_canvas(frame)
    scale = max(0.4, min(frame.shape[:2]) / 1200)
    t = max(1, line_thickness(frame) // 2)
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, t)
    pad = 4
    cv2.rectangle(frame, (0, 0), (tw + 2 * pad, th + base + 2 * pad), (0, 0, 0), cv2.FILLED)
    cv2.putText(frame, text, (pad, th + pad), cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255),
                t, cv2.LINE_AA)
    return frame


@dataclass
class RenderOptions:
    """What :func:`draw_result` draws; a window's keys change it while a run lasts."""

    heatmap: bool = True
    boxes: bool = True
    index: int | None = None  # which of the top-k classes (None: best heatmap, all boxes)
    alpha: float = 0.4        # heatmap opacity

    def apply(self, action: str, topk: int) -> None:
        """Apply a window action: heatmap, boxes, next, prev (others are ignored)."""
        if action == "heatmap":
            self.heatmap = not self.heatmap
        elif action == "boxes":
            self.boxes = not self.boxes
        elif action in ("next", "prev"):
            cycle: list[int | None] = [None, *range(topk)]
            step = 1 if action == "next" else -1
            self.index = cycle[(cycle.index(self.index) + step) % len(cycle)]


def draw_result(frame: np.ndarray, result: Any, options: RenderOptions | None = None,
                hud: str | None = None) -> np.ndarray:
    """Draw ``result`` (a Result for this frame) on ``frame`` in place and return it: the
    heatmap of class ``options.index`` (default the best), boxes of every class (or only
    of that one), labels, and an optional HUD line. An empty result (a background frame
    of a model with a background class) has nothing to draw but the HUD, whatever the
    index."""
    o = options or RenderOptions()
    k = len(result.class_ids)
    if k and o.index is not None and not 0 <= o.index < k:
        raise ValueError(f"index must be between 0 and {k - 1}, got {o.index}")
    if frame.shape[:2] != tuple(result.frame_shape):
        raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]} but the result is for "
                         f"{result.frame_shape[1]}x{result.frame_shape[0]}")
    if o.heatmap and k:
        draw_heatmap(frame, result.cams[o.index or 0], alpha=o.alpha)
    if o.boxes and k:
        ranks = range(k) if o.index is None else [o.index]
        all_boxes, texts, colors = [], [], []
        for r in ranks:
            for j, box in enumerate(result.boxes[r]):
                all_boxes.append(box)
                texts.append(f"{result.labels[r]} {result.scores[r]:.2f}" if j == 0 else "")
                colors.append(PALETTE[r % len(PALETTE)])
        # best last, so its label ends up on top where labels overlap
        draw_boxes(frame, all_boxes[::-1], texts[::-1], colors[::-1])
    if hud:
        draw_hud(frame, hud)
    return frame


def hud_text(result: Any, fps: float, latency: dict[str, float] | None = None) -> str:
    """The live window's HUD line: rate, latency (``latency``: the rolling "p50" and "p99"
    in ms, from the frame's arrival to the screen), provider, best class and its score."""
    label = f" | {result.labels[0]} {result.scores[0]:.2f}" if len(result.labels) else ""
    lat = f" | {latency['p50']:.0f}/{latency['p99']:.0f} ms p50/p99" if latency else ""
    return f"{fps:.1f} fps{lat} | {result.provider}{label}"
