"""What a run of ``python -m realtime`` prints when it ends, and its exit status: one
format and one rule for one source or many.

Per source: frames read (every frame its reader got), processed (written to every
output), dropped (a live source's frames replaced by newer ones) and corrupt; its rate,
the median milliseconds of each stage, and its files; a line saying why it stopped or
failed. Several sources add a line with the total. Exit status: 0 when every requested
output is complete; 1 when a source failed or was lost, or an output could not be
written (each named on its own line); 2 when no source could be opened at all (the
user's mistake); 128+N after signal N.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

from realtime.errors import CamlocError, first_line
from realtime.outputs.latency import latency_line, rings_of
from realtime.outputs.writes import WriteError, kept

__all__ = ["NoSourceError", "exit_status", "files_of", "summary"]


class NoSourceError(CamlocError, ValueError):
    """None of the sources could be opened (a user error, exit 2)."""


def files_of(sinks: list[Any]) -> tuple[Any, Any]:
    """(the video sink, the JSONL sink) among a source's outputs; None where absent."""
    video = next((s for s in sinks if hasattr(s, "frames")), None)
    jsonl = next((s for s in sinks if hasattr(s, "lines")), None)
    return video, jsonl


def _files(sinks: list[Any]) -> list[str]:
    video, jsonl = files_of(sinks)
    return ([f"  video: {video.path} ({video.frames} frames)"] if video is not None else []) + \
        ([f"  json:  {jsonl.path} ({jsonl.lines} lines)"] if jsonl is not None else [])


def _feed_lines(f: Any, provider: str, sinks: list[Any], shared: list[Any]) -> list[str]:
    s = f.stats
    if f.source is None:
        return [f"camloc: {f.spec}: not opened: "
                f"{first_line(f.error) if f.error is not None else 'the run stopped first'}"]
    lines = [f"camloc: {f.spec}: {s.frames_read} frames read, {s.processed} processed, "
             f"{s.dropped} dropped, {s.corrupt} corrupt skipped"
             f"{f', {s.skipped} too small skipped' if s.skipped else ''}; {s.mean_fps:.1f} fps "
             f"({s.elapsed_s:.1f} s) on {provider}"]
    why = s.ended_because or (first_line(f.error) if f.error is not None else s.stopped_by)
    if why:
        lines.append(f"  {'failed' if f.error is not None else 'stopped'}: {why}")
    med = s.medians()
    if med:
        lines.append("  median ms/frame: " + ", ".join(f"{k} {v:.1f}" for k, v in med.items()))
        slow = max(med, key=med.get)
        if slow in _WHY and med[slow] > 0.5 * sum(med.values()):
            lines.append(f"  slowest: {slow} ({_WHY[slow]})")
    latency = latency_line(rings_of([*sinks, *shared])) if f.live else ""
    if latency:  # a live source: from each frame's arrival to each output
        lines.append(f"  latency: {latency}")
    files = _files(sinks)
    return lines + (files or ["  nothing saved (use --save / --save-json)"])


# what a stage taking most of a frame's time usually means, and what to try
_WHY = {"decode": "decoding the source: a smaller or lighter-coded source, --vid-stride",
        "infer": "the model: a GPU (--device cuda), --imgsz smaller, or an INT8 export",
        "draw": "drawing full-size frames: --no-heatmap, or --draw-workers on a GPU machine",
        "encode": "encoding the video: --codec mjpeg or h264_nvenc, or no --save"}


def summary(run: Any, made: dict[int, list[Any]]) -> str:
    """The summary of ``run`` (a realtime.pipeline.runner.Pipeline); ``made`` maps each
    source's index to the outputs made for it."""
    provider = getattr(run.localizer, "provider", "")
    shared = run.sinks if len(run.feeds) == 1 else []  # several: shared sinks mix sources
    lines = [line for f in run.feeds
             for line in _feed_lines(f, provider, made.get(f.index, []), shared)]
    if len(run.feeds) > 1:
        total = run.stats
        lines.append(f"camloc: {len(run.feeds)} sources, {total.processed} frames in "
                     f"{run.elapsed_s:.1f} s ({total.mean_fps:.1f} fps together) on {provider}")
    return "\n".join(lines)


def _error_line(f: Any, sinks: list[Any]) -> str:
    if isinstance(f.error, WriteError):  # what the files of that source still hold
        held = kept(*files_of(sinks))
        return f"{first_line(f.error)}" + (f"; kept: {held}" if held else "")
    line = first_line(f.error)
    return line if f.spec in line else f"{f.spec}: {line}"


def exit_status(run: Any, made: dict[int, list[Any]]) -> int:
    """The exit status of an ended run; each failed source's error line on stderr."""
    failed = [f for f in run.feeds if f.error is not None]
    if failed and all(f.source is None for f in run.feeds):  # nothing could be opened
        if len(run.feeds) == 1 and isinstance(failed[0].error, CamlocError):
            raise failed[0].error
        if all(isinstance(f.error, CamlocError) for f in failed):
            raise NoSourceError(f"none of the {len(run.feeds)} sources could be opened "
                                f"({failed[0].spec}: {first_line(failed[0].error)})")
    for f in failed:
        print(f"camloc: error: {_error_line(f, made.get(f.index, []))}", file=sys.stderr,
              flush=True)
    if run.stopped_by in ("SIGINT", "SIGTERM"):
        return 128 + signal.Signals[run.stopped_by].value
    return 1 if failed else 0
