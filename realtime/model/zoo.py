"""Model name -> cached .onnx path (building it through ``export`` on first use).

Cache: ``$CAMLOC_HOME/models/<revision>/<name>.onnx`` (default ``~/.cache/camloc``). A
``.onnx`` path is returned as is. Building needs PyTorch, which the runtime
never imports otherwise: ``export`` is imported here, lazily, only when a zoo
model is asked for and not cached yet.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import re
from pathlib import Path

from realtime.errors import CamlocError, ModelError
from realtime.model.paths import cache_path, camloc_home

__all__ = ["DEFAULT_MODEL", "cache_path", "camloc_home", "resolve_model"]  # paths: realtime.model.paths

log = logging.getLogger(__name__)

DEFAULT_MODEL = "efficientnet_lite0"
_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_.\-]*")


def _looks_like_path(model: str) -> bool:
    return model.lower().endswith(".onnx") or os.sep in model or "/" in model


def _build(name: str, target: Path) -> None:
    """Export zoo model ``name`` to ``target`` via ``export`` (torch; it writes atomically).

    The name is checked first, against a list that needs no torch: a typo is answered
    at once, not after seconds of importing PyTorch."""
    try:
        import export

        names = export.zoo_names()
    except ImportError:  # a runtime-only install without the export package
        names = None
    if names is not None and name not in names:
        raise ModelError(f"unknown model {name!r}; valid names: {', '.join(names)}")
    if importlib.util.find_spec("torch") is None:
        raise ModelError(f"model {name!r} is not in the cache ({target}) and building it needs "
                         "PyTorch: pip install torch torchvision, or pass the path of a .onnx "
                         f"made elsewhere with: python -m export --model {name} --output FILE")
    # a warning so that it shows at the CLI's default level: the first run pauses here
    log.warning("exporting %s to %s (first use only; takes a few seconds)", name, target)
    try:
        export.export_model(name, output=target)
    except CamlocError as exc:  # export's user errors (no weights, not a GAP-CNN, ...)
        raise ModelError(f"cannot build model {name!r}: {exc}") from exc


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """A .onnx path for ``model``: an existing path as is, a zoo name from the cache
    (built on first use). Raises ModelError for a missing file or a bad name."""
    text = os.fspath(model)
    path = Path(text).expanduser()
    if path.is_file():
        return path
    if _looks_like_path(text) or path.exists():
        raise ModelError(f"model file not found: {text}")
    if not _NAME.fullmatch(text):
        raise ModelError(f"not a model name or .onnx path: {text!r}")
    cached = cache_path(text)
    if not cached.is_file():
        _build(text, cached)
    return cached
