"""Export PyTorch GAP-CNNs to self-verifying ONNX files for the camloc runtime (needs torch).

``python -m export --model NAME --output PATH``; from Python, ``export_model``.
Names resolve lazily so ``import export`` stays cheap.
"""

from __future__ import annotations

__all__ = ["ExportError", "ExportReport", "export_model", "zoo_names"]


def __getattr__(name: str):
    if name == "zoo_names":  # every model name export_model accepts
        from models.zoo import list_models

        return list_models
    if name in __all__:
        from . import onnx_export

        return getattr(onnx_export, name)
    raise AttributeError(f"module 'export' has no attribute {name!r}")
