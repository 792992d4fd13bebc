"""Where camloc keeps files between runs: ``$CAMLOC_HOME`` (default ``~/.cache/camloc``)
with the zoo models (``models/<revision>/<name>.onnx``) and TensorRT's engine and timing caches
(``tensorrt/``). Both the runtime and ``export`` (which writes the zoo cache) read
them from here."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CACHE_REVISION", "cache_path", "camloc_home", "tensorrt_cache"]


def camloc_home() -> Path:
    """Root of camloc's cache: ``$CAMLOC_HOME`` or ``~/.cache/camloc``."""
    return Path(os.environ.get("CAMLOC_HOME", "~/.cache/camloc")).expanduser()


# The export's revision: a zoo model cached by an older camloc lacks what this one adds
# (in-graph CAMs since "incam1") and would silently take the slower numpy path, so each
# revision caches in its own folder and the first run re-exports (a few seconds).
CACHE_REVISION = "incam1"


def cache_path(name: str) -> Path:
    """Where the zoo model ``name`` is (or will be) cached."""
    return camloc_home() / "models" / CACHE_REVISION / f"{name}.onnx"


def tensorrt_cache() -> Path:
    """TensorRT's engine and timing caches (one engine per model, shape range and GPU)."""
    return camloc_home() / "tensorrt"
