"""Kept for existing imports: the .onnx format now lives in :mod:`realtime.format`."""

from realtime.format import (  # noqa: F401
    FRAME_OUTPUTS,
    REQUIRED_OUTPUTS,
    WEIGHT_OUTPUTS,
    ModelInfo,
    check_outputs,
    parse_metadata,
    reexport_hint,
)

__all__ = ["FRAME_OUTPUTS", "REQUIRED_OUTPUTS", "WEIGHT_OUTPUTS", "ModelInfo", "check_outputs",
           "parse_metadata", "reexport_hint"]
