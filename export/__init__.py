"""Export PyTorch GAP-CNNs to self-verifying ONNX files for the camloc runtime (needs torch).

``python -m export --model NAME --output PATH``; from Python, ``export_model``.
Names resolve lazily so ``import export`` stays cheap.
"""

from __future__ import annotations

__all__ = ["ExportError", "ExportReport", "export_model"]


def __getattr__(name: str):
    if name in __all__:
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
