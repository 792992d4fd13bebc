"""Read the camloc metadata and check the outputs of an exported .onnx.

The layout (format 1) is pinned in docs/DESIGN.md: outputs ``logits``,
``features``, ``cam_weight``, ``cam_bias`` and ``camloc.*`` metadata strings.
Everything here works on an ``onnxruntime.InferenceSession`` so the runtime
needs no ``onnx`` package.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.errors import ModelError

__all__ = ["BACKGROUND_LABEL", "FRAME_OUTPUTS", "REQUIRED_OUTPUTS", "WEIGHT_OUTPUTS", "ModelInfo",
           "check_outputs", "parse_metadata", "reexport_hint"]

FRAME_OUTPUTS = ("logits", "features")
WEIGHT_OUTPUTS = ("cam_weight", "cam_bias")
REQUIRED_OUTPUTS = FRAME_OUTPUTS + WEIGHT_OUTPUTS
_REQUIRED_KEYS = ("camloc.labels", "camloc.mean", "camloc.std", "camloc.stride")
# Optional keys (older models lack them): camloc.background names the class of frames
# with none of the objects (no detections for them); camloc.threshold is the box threshold
# chosen on labelled data by ``python -m realtime.evaluate --store-threshold``.
BACKGROUND_LABEL = "background"


@dataclass(frozen=True)
class ModelInfo:
    """What the runtime needs to know about a model, read from its metadata."""

    path: str
    arch: str
    weights: str
    labels: tuple[str, ...]
    color: str                       # "RGB" or "BGR": channel order the network expects
    mean: tuple[float, float, float]  # per channel, in the network's colour order
    std: tuple[float, float, float]
    input_size: tuple[int, int]      # native training size (H, W)
    stride: int                      # input pixels per feature cell
    precision: str
    format: int
    background: int | None = None     # class id of the background class, if the model has one
    threshold: float | None = None    # stored box threshold (None: the runtime's default)

    @property
    def num_classes(self) -> int:
        return len(self.labels)


def reexport_hint(path: str | Path, arch: str = "<model>") -> str:
    """The command that writes a proper camloc .onnx, for error messages."""
    return f"re-export it with: python -m export --model {arch} --output {path}"


def _json(meta: dict[str, str], key: str, path: str) -> Any:
    try:
        return json.loads(meta[key])
    except (json.JSONDecodeError, TypeError) as exc:
        raise ModelError(f"{path}: metadata {key} is not valid JSON: {meta[key]!r}") from exc


def _triple(value: Any, key: str, path: str) -> tuple[float, float, float]:
    if not (isinstance(value, list) and len(value) == 3
            and all(isinstance(v, (int, float)) for v in value)):
        raise ModelError(f"{path}: metadata {key} must be a list of 3 numbers, got {value!r}")
    if key.endswith("std") and any(v == 0 for v in value):
        raise ModelError(f"{path}: metadata {key} has a zero: {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def parse_metadata(meta: dict[str, str], path: str | Path = "<model>") -> ModelInfo:
    """Turn the ``camloc.*`` metadata strings into a :class:`ModelInfo`.

    Raises ModelError naming the missing or malformed key; optional keys
    (arch, weights, input size, precision, colour) fall back to sensible values.
    """
    path = str(path)
    arch = meta.get("camloc.arch", "unknown")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path}: not a camloc model, metadata {', '.join(missing)} missing; "
                         + reexport_hint(path, arch if arch != "unknown" else "<model>"))
    fmt = int(meta.get("camloc.format", "1"))
    if fmt != 1:
        raise ModelError(f"{path}: camloc.format {fmt} is not supported (this runtime reads 1)")
    labels = _json(meta, "camloc.labels", path)
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ModelError(f"{path}: metadata camloc.labels must be a non-empty list of strings")
    color = meta.get("camloc.color", "RGB").upper()
    if color not in ("RGB", "BGR"):
        raise ModelError(f"{path}: metadata camloc.color must be RGB or BGR, got {color!r}")
    size = _json(meta, "camloc.input_size", path) if "camloc.input_size" in meta else [224, 224]
    try:
        stride = int(meta["camloc.stride"])
    except ValueError as exc:
        raise ModelError(f"{path}: metadata camloc.stride must be an integer") from exc
    if stride < 1:
        raise ModelError(f"{path}: metadata camloc.stride must be >= 1, got {stride}")
    background = meta.get("camloc.background")
    if background is not None and background not in labels:
        raise ModelError(f"{path}: metadata camloc.background {background!r} is not one of the labels")
    threshold = meta.get("camloc.threshold")
    if threshold is not None:
        try:
            threshold = float(threshold)
        except ValueError:
            threshold = -1.0
        if not 0.0 <= threshold < 1.0:
            raise ModelError(f"{path}: metadata camloc.threshold must be a number in [0, 1), "
                             f"got {meta['camloc.threshold']!r}")
    return ModelInfo(
        path=path, arch=arch, weights=meta.get("camloc.weights", "unknown"),
        labels=tuple(labels), color=color,
        mean=_triple(_json(meta, "camloc.mean", path), "camloc.mean", path),
        std=_triple(_json(meta, "camloc.std", path), "camloc.std", path),
        input_size=(int(size[0]), int(size[1])), stride=stride,
        precision=meta.get("camloc.precision", "fp32"), format=fmt,
        background=None if background is None else labels.index(background), threshold=threshold,
    )


def check_outputs(output_names: list[str], input_names: list[str], path: str | Path,
                  arch: str = "<model>") -> None:
    """Raise ModelError saying which of the required inputs/outputs a model lacks."""
    if "images" not in input_names:
        raise ModelError(f"{path}: the model has no input 'images' (inputs: "
                         f"{', '.join(input_names)}); {reexport_hint(path, arch)}")
    missing = [n for n in REQUIRED_OUTPUTS if n not in output_names]
    if not missing:
        return
    why = []
    if any(n in FRAME_OUTPUTS for n in missing):
        why.append("the per-frame outputs logits and features")
    if any(n in WEIGHT_OUTPUTS for n in missing):
        why.append("the classifier weights (cam_weight, cam_bias) that CAMs need")
    raise ModelError(f"{path}: output(s) {', '.join(missing)} missing ({'; '.join(why)}); "
                     + reexport_hint(path, arch))
