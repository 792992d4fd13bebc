"""Frame sources: video files, single images, image folders and globs, cameras, streams.

Every source is a context manager that owns one reader thread:

- files and images deliver **every** frame, in order, through a bounded
  read-ahead queue (completeness beats latency); a frame that cannot be decoded
  in the middle of a file is skipped, counted (``frames_corrupt``) and logged;
- cameras and streams (``realtime.sources.live``) keep only the newest frame
  (latency beats completeness) and count what they drop.

Iterating a source yields :class:`Frame` objects; ``stop()`` ends the reading
(what was already read is still delivered) and ``close()`` (or leaving the
``with`` block) stops, joins the thread and releases the capture. No call here
blocks for more than a fraction of a second without checking the stop event.

``open_source(spec)`` turns a ``--source`` string into the right source and
raises :class:`SourceError` (one line, a user error) when it cannot be opened.
"""

from realtime.sources.base import (
    DEFAULT_FPS,
    IMAGE_FPS,
    IMAGE_SUFFIXES,
    STREAM_SCHEMES,
    Frame,
    Source,
    SourceError,
)
from realtime.sources.files import ImageSource, VideoFileSource
from realtime.sources.live import LiveSource
from realtime.sources.spec import classify_source, frames_expected, open_source

__all__ = ["DEFAULT_FPS", "IMAGE_FPS", "IMAGE_SUFFIXES", "STREAM_SCHEMES", "Frame",
           "ImageSource", "LiveSource", "Source", "SourceError", "VideoFileSource",
           "classify_source", "frames_expected", "open_source"]
