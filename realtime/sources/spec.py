"""``--source`` strings -> sources: :func:`classify_source` says what a string names,
:func:`open_source` opens it (raising :class:`SourceError`, a one-line user error, when
it cannot)."""

from __future__ import annotations

import glob
from pathlib import Path
from typing import Any

from realtime.sources.base import IMAGE_SUFFIXES, STREAM_SCHEMES, Source, SourceError
from realtime.sources.files import ImageSource, VideoFileSource, check_readable, images_in
from realtime.sources.live import LiveSource

__all__ = ["classify_source", "frames_expected", "open_source"]


def classify_source(spec: str) -> str:
    """``camera``, ``stream``, ``video``, ``image``, ``folder`` or ``glob`` for a --source."""
    s = spec.strip()
    if s.isdigit() or s.startswith("/dev/video"):
        return "camera"
    if s.lower().startswith(STREAM_SCHEMES):
        path = s.split("?", 1)[0].lower()
        return "video" if path.startswith(("http://", "https://")) and Path(path).suffix in (
            ".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v") else "stream"
    p = Path(s)
    if p.is_dir():
        return "folder"
    if not p.exists() and any(c in s for c in "*?["):
        return "glob"
    if p.suffix.lower() in IMAGE_SUFFIXES:
        return "image"
    return "video"


def open_source(spec: str | int, *, stride: int = 1, read_ahead: int = 8,
                **live_options: Any) -> Source:
    """Open what a ``--source`` names; raises SourceError when it cannot be opened.

    ``stride`` applies to files and images; ``live_options`` go to
    :class:`realtime.sources.live.LiveSource` (timeouts, reconnection) for cameras and streams.
    """
    spec = str(spec)
    if not spec.strip():
        raise SourceError("empty --source")
    kind = classify_source(spec)
    if kind in ("camera", "stream"):
        if stride != 1:
            raise SourceError(f"--vid-stride applies to files, not to a live {kind} "
                              "(live sources already keep only the newest frame)")
        target: int | str = int(spec) if spec.strip().isdigit() else spec
        return LiveSource(target, stream=kind == "stream", **live_options)
    if kind == "video":
        return VideoFileSource(spec, stride=stride, read_ahead=read_ahead)
    if kind == "image":
        check_readable(Path(spec), spec)
        return ImageSource(spec, [Path(spec)], stride=stride, read_ahead=read_ahead)
    if kind == "folder":
        files = images_in([str(p) for p in Path(spec).iterdir()])
        return ImageSource(spec, files, stride=stride, read_ahead=read_ahead)
    files = images_in(glob.glob(spec, recursive=True))
    if not files:
        raise SourceError(f"no images match {spec}")
    return ImageSource(spec, files, stride=stride, read_ahead=read_ahead)


def frames_expected(source: Source) -> int | None:
    """How many frames a finite source will deliver, if known (for progress bars)."""
    return None if source.live else source.total
