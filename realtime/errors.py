"""Exceptions the runtime raises for user errors (bad model, device, frame, option).

They subclass the built-in type a caller would expect (``ValueError``,
``RuntimeError``) as well as :class:`CamlocError`, so ``except ValueError``
keeps working and the CLI can map every ``CamlocError`` to a one-line message
with exit status 2.
"""

from __future__ import annotations

__all__ = ["CamlocError", "DeviceError", "ModelError", "first_line"]


class CamlocError(Exception):
    """Base class of every error camloc raises on purpose."""


class ModelError(CamlocError, ValueError):
    """The model file is missing, corrupt, or lacks what CAMs need."""


class DeviceError(CamlocError, RuntimeError):
    """An explicitly requested device (execution provider) cannot be used."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none), for
    one-line user messages: libraries (ONNX Runtime, torch, fx) often raise pages."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
