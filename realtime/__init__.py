"""camloc's torch-free runtime: ``from realtime import Localizer``; ``realtime.stream(...)``
yields every processed frame of one or many sources (realtime/pipeline/stream.py).

Exports are lazy so that ``import realtime`` (e.g. for the CLI's ``--help``)
does not load onnxruntime or OpenCV.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CamlocError", "Localizer", "Result", "stream"]


def __getattr__(name: str) -> Any:
    if name in ("Localizer", "Result"):
        from realtime.model import engine
        return getattr(engine, name)
    if name == "stream":
        from realtime.pipeline.stream import stream

        return stream
    if name == "CamlocError":
        from realtime.errors import CamlocError

        return CamlocError
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
