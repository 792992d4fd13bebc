"""Output failures a long run meets: a full disk, a write error, a closed stdout.

A full disk used to pass unnoticed: OpenCV's writer swallows FFmpeg's write
errors, so a run ended with status 0 and a summary of "300 frames" while the .mp4
had no index ("moov atom not found"), and the JSONL ended in half a line. Here,
for any writer with a ``path`` (OpenCV, PyAV, JSONL alike):

- a write that raises ``OSError`` stops the run with :class:`WriteError` (status 1,
  one line naming the file and the cause);
- :func:`check_space` stops the run while the file system still has a reserve
  (``reserve_bytes``: room for a container's index and the encoder's last buffer),
  so the video can be finished and stays playable; writers that swallow errors are
  caught this way;
- :func:`frames_in` counts the frames a finished video really holds, so a summary
  or an error line never reports frames that are not in the file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from realtime.errors import StageError

try:
    import resource
except ImportError:  # Windows: no file size limits
    resource = None  # type: ignore[assignment]

__all__ = ["RESERVE_BYTES", "WriteError", "check_space", "check_video", "explain", "frames_in", "kept",
           "reserve_bytes", "room", "silence_stdout", "write_or_fail"]

# kept free for an output (on its file system, or under its file size limit): an MPEG-4
# index (about 8 bytes a frame, counted in reserve_bytes), FFmpeg's last 32 KiB buffer and
# the muxer's trailer fit easily
RESERVE_BYTES = 1 << 20
_PER_FRAME_BYTES = 32


class WriteError(StageError):
    """Writing an output failed (full disk, I/O error); the message names the file.
    A failed stage, not a user error: exit status 1 (realtime.errors)."""


def reserve_bytes(frames: int) -> int:
    """Bytes to keep free so that a video of ``frames`` frames can still be finished."""
    return RESERVE_BYTES + _PER_FRAME_BYTES * frames


def room(path: Path) -> tuple[int, int]:
    """(bytes ``path`` may still grow by, errno of the limit): the free space of its file
    system, or the file size limit (``ulimit -f``) when that is closer."""
    free, why = shutil.disk_usage(path.parent).free, errno.ENOSPC
    if resource is not None:
        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
        if limit != resource.RLIM_INFINITY:
            left = limit - (path.stat().st_size if path.exists() else 0)
            free, why = (left, errno.EFBIG) if left < free else (free, why)
    return free, why


def check_space(sink: Any) -> None:
    """Raise WriteError when ``sink.path`` has less than the reserve left to grow
    (checked before every frame: a statvfs call, microseconds)."""
    path = getattr(sink, "path", None)
    if path is None:
        return
    written = getattr(sink, "frames", getattr(sink, "lines", 0))
    free, why = room(Path(path))
    if free < reserve_bytes(written):
        raise WriteError(f"writing {path} failed: {os.strerror(why)} (only "
                          f"{max(free, 0) / 2**20:.1f} MiB left; stopped while the file can "
                          "still be finished)")


def write_or_fail(sink: Any, item: Any) -> None:
    """``sink.write(item)``; an OSError becomes WriteError naming the file."""
    try:
        sink.write(item)
    except OSError as exc:
        name = getattr(sink, "path", None) or exc.filename or type(sink).__name__
        raise WriteError(f"writing {name} failed: {exc.strerror or exc}") from exc


def frames_in(path: str | os.PathLike[str], expected: int | None = None) -> int | None:
    """Frames a finished video file holds; None when it cannot be opened (no index: not
    playable). The container's count is trusted when it equals ``expected``; otherwise
    (some containers only estimate it) the frames are counted one by one. PyAV counts the
    packets where it is installed: OpenCV's FFmpeg backend opens one capture at a time, so
    its count would wait behind a stream being reopened (up to its 10 s timeout)."""
    if not Path(path).is_file() or Path(path).stat().st_size == 0:
        return None
    try:
        import av
    except ImportError:
        av = None
    if av is not None:
        try:
            with av.open(str(path)) as container:
                stream = container.streams.video[0]
                return sum(1 for packet in container.demux(stream) if packet.size)
        except (av.FFmpegError, IndexError, OSError):
            return None
    import cv2

    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return None
        count = cap.get(cv2.CAP_PROP_FRAME_COUNT)
        if count == expected:
            return int(count)
        n = 0
        while cap.grab():
            n += 1
        return n
    finally:
        cap.release()


def check_video(video: Any) -> None:
    """After a video sink was closed: raise WriteError unless the file holds every frame
    the sink wrote (OpenCV's writer fails silently when its last write fails)."""
    if video is None or not getattr(video, "frames", 0):
        return
    held = frames_in(video.path, video.frames)
    if held != video.frames:
        what = "is not playable" if held is None else f"holds {held} of {video.frames} frames"
        raise WriteError(f"{video.path} {what} (full disk or I/O error while writing it)")


def kept(video: Any, jsonl: Any) -> str:
    kept = []
    if video is not None:
        held = frames_in(video.path, video.frames) if video.frames else 0
        kept.append(f"{video.path} is not playable" if held is None
                    else f"{video.path} holds {held} frames")
    if jsonl is not None:
        kept.append(f"{jsonl.path} {jsonl.lines} whole lines")
    return ", ".join(kept)


def explain(exc: BaseException | None, video: Any, jsonl: Any) -> None:
    """An ExitStack exit callback registered before the sinks (so it runs after they are
    closed): an WriteError leaving the run is raised again with what the files hold."""
    if isinstance(exc, WriteError) and (video is not None or jsonl is not None):
        raise WriteError(f"{exc}; kept: {kept(video, jsonl)}") from exc


def silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not raise again
    after a reader closed the pipe (``| head``)."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
