"""camloc's torch-free runtime: ``from realtime import Localizer``.

Exports are lazy so that ``import realtime`` (e.g. for the CLI's ``--help``)
does not load onnxruntime or OpenCV.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CamlocError", "Localizer", "Result"]


def __getattr__(name: str) -> Any:
    if name in ("Localizer", "Result"):
        from realtime.model import engine
        return getattr(engine, name)
    if name == "CamlocError":
        from realtime.errors import CamlocError

        return CamlocError
    raise AttributeError(f"module 'realtime' has no attribute {name!r}")
