"""The camloc .onnx format (format 1), in one place: input and output names, every
``camloc.*`` metadata key, and the metadata <-> :class:`ModelInfo` conversion both ways.

The layout is pinned in docs/DESIGN.md: input ``images``, outputs ``logits``,
``features``, ``cam_weight``, ``cam_bias`` and ``camloc.*`` metadata strings.
Format 1 is extended, not bumped: a model may also carry its CAMs inside the graph
(outputs :data:`INCAM_OUTPUTS`, metadata ``camloc.topk_max``, export/incam.py); a
runtime that does not know them ignores them, and this one reads models without them.
``export/`` writes through :func:`to_metadata` / :func:`with_precision`, the runtime
reads through :func:`parse_metadata` / :func:`check_outputs`. Pure Python: no torch,
no onnx, no onnxruntime, so both sides (and an edge box) can import it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realtime.errors import ModelError

__all__ = ["BACKGROUND_LABEL", "CAMS", "CAM_BIAS", "CAM_WEIGHT", "DEFAULT_TOPK_MAX", "FEATURES",
           "FORMAT", "FRAME_OUTPUTS", "INCAM_OUTPUTS", "INPUT", "KEY_ARCH", "KEY_BACKGROUND",
           "KEY_COLOR", "KEY_FORMAT", "KEY_INPUT_SIZE", "KEY_LABELS", "KEY_MEAN", "KEY_PRECISION",
           "KEY_STD", "KEY_STRIDE", "KEY_THRESHOLD", "KEY_TILE_BLUR", "KEY_TOPK_MAX", "KEY_WEIGHTS",
           "MAX_INPUT_SIDE", "MAX_STRIDE", "METADATA_KEYS", "OUTPUTS", "PRODUCER",
           "REQUIRED_OUTPUTS", "TOPK_IDS", "TOPK_SCORES", "WEIGHT_OUTPUTS", "ModelInfo",
           "check_outputs", "parse_metadata", "reexport_hint", "to_metadata", "with_precision",
           "with_threshold"]

FORMAT = 1           # the layout this module writes and reads
PRODUCER = "camloc"  # ModelProto.producer_name of the files export writes
INPUT = "images"          # float32 [N, 3, H, W]
LOGITS = "logits"          # [N, K] class scores before softmax
FEATURES = "features"      # [N, C, h, w] what the global average pooling consumes
CAM_WEIGHT = "cam_weight"  # [K, C] the classifier's weight (constant)
CAM_BIAS = "cam_bias"      # [K] its bias (constant)
FRAME_OUTPUTS = (LOGITS, FEATURES)       # per frame: what session.run asks for
WEIGHT_OUTPUTS = (CAM_WEIGHT, CAM_BIAS)  # constants, fetched once after loading
REQUIRED_OUTPUTS = FRAME_OUTPUTS + WEIGHT_OUTPUTS
OUTPUTS = REQUIRED_OUTPUTS                   # in the order export writes them
# optional, the CAMs inside the graph (export/incam.py), after OUTPUTS:
TOPK_SCORES = "topk_scores"  # [N, k] float32: the top camloc.topk_max softmax scores, best first
TOPK_IDS = "topk_ids"        # [N, k] int64: their class ids
CAMS = "cams"                # [N, k, h, w] float32: their CAMs, ReLU'd and max-normalised
INCAM_OUTPUTS = (TOPK_SCORES, TOPK_IDS, CAMS)
DEFAULT_TOPK_MAX = 10  # k the export puts in the graph (fewer if the model has fewer classes)

KEY_FORMAT = "camloc.format"
KEY_ARCH = "camloc.arch"
KEY_WEIGHTS = "camloc.weights"
KEY_LABELS = "camloc.labels"
KEY_COLOR = "camloc.color"
KEY_MEAN = "camloc.mean"
KEY_STD = "camloc.std"
KEY_INPUT_SIZE = "camloc.input_size"
KEY_STRIDE = "camloc.stride"
KEY_PRECISION = "camloc.precision"
KEY_TOPK_MAX = "camloc.topk_max"  # classes the in-graph CAMs cover; absent: none (old models)
# Optional keys (older models lack them): camloc.background names the class of frames with
# none of the objects (no detections for them); camloc.threshold is the box threshold chosen
# on labelled data by ``python -m realtime.evaluate --store-threshold``; camloc.tile_blur is
# the blur (CAM cells) the tiled path takes off this model's boxes, where its maps are not
# as blurred as the runtime's default assumes (a model trained with the box loss: 0).
KEY_BACKGROUND = "camloc.background"
KEY_THRESHOLD = "camloc.threshold"
KEY_TILE_BLUR = "camloc.tile_blur"
METADATA_KEYS = (KEY_FORMAT, KEY_ARCH, KEY_WEIGHTS, KEY_LABELS, KEY_COLOR, KEY_MEAN, KEY_STD,
                 KEY_INPUT_SIZE, KEY_STRIDE, KEY_PRECISION, KEY_TOPK_MAX, KEY_BACKGROUND,
                 KEY_THRESHOLD, KEY_TILE_BLUR)
MAX_TILE_BLUR = 16.0   # cells: a map blurred wider than that has no box left to correct
BACKGROUND_LABEL = "background"  # the training folder's class that export marks as background
_REQUIRED_KEYS = (KEY_LABELS, KEY_MEAN, KEY_STD, KEY_STRIDE)
# bounds on what a model file may claim: a stride beyond 512 or a native side beyond 4096 is
# no CNN anyone trains (strides are 8 to 64); a file claiming it would only make the runtime
# allocate nonsense (a stride of 1e8 is a MemoryError, not a model)
MAX_STRIDE = 512
MAX_INPUT_SIDE = 4096


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
    topk_max: int = 0                # classes the graph's in-graph CAMs cover (0: none)
    background: int | None = None    # class id of the background class, if the model has one
    threshold: float | None = None   # stored box threshold (None: the runtime's default)
    tile_blur: float | None = None   # stored tiled-map blur (None: the runtime's default)

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
    if key == KEY_STD and any(v == 0 for v in value):
        raise ModelError(f"{path}: metadata {key} has a zero: {value!r}")
    return (float(value[0]), float(value[1]), float(value[2]))


def _int(value: Any, key: str, path: str, low: int, high: int) -> int:
    """``value`` (a metadata string or JSON number) as an int in [low, high], or a
    ModelError naming the file and the key."""
    try:
        number = int(value) if not isinstance(value, float) or value.is_integer() else None
    except (TypeError, ValueError):
        number = None
    if number is None or isinstance(value, bool):
        raise ModelError(f"{path}: metadata {key} must be an integer, got {value!r}")
    if not low <= number <= high:
        raise ModelError(f"{path}: metadata {key} must be in [{low}, {high}], got {number}")
    return number


def to_metadata(info: ModelInfo) -> dict[str, str]:
    """The ``camloc.*`` metadata strings of ``info`` (``info.path`` is not stored);
    :func:`parse_metadata` reads them back into an equal ModelInfo. The optional keys
    (``camloc.topk_max`` for a model with in-graph CAMs, background, threshold) are
    written only when set."""
    meta = {
        KEY_FORMAT: str(info.format),
        KEY_ARCH: info.arch,
        KEY_WEIGHTS: info.weights,
        KEY_LABELS: json.dumps(list(info.labels)),
        KEY_COLOR: info.color,
        KEY_MEAN: json.dumps([round(float(v), 6) for v in info.mean]),
        KEY_STD: json.dumps([round(float(v), 6) for v in info.std]),
        KEY_INPUT_SIZE: json.dumps([int(v) for v in info.input_size]),
        KEY_STRIDE: str(int(info.stride)),
        KEY_PRECISION: info.precision,
    }
    if info.topk_max:
        meta[KEY_TOPK_MAX] = str(int(info.topk_max))
    if info.background is not None:
        meta[KEY_BACKGROUND] = info.labels[info.background]
    if info.threshold is not None:
        meta[KEY_THRESHOLD] = repr(float(info.threshold))
    if info.tile_blur is not None:
        meta[KEY_TILE_BLUR] = repr(float(info.tile_blur))
    return meta


def with_precision(meta: dict[str, str], precision: str) -> dict[str, str]:
    """A variant's metadata: its FP32 source's, with ``camloc.precision`` replaced."""
    return dict(meta, **{KEY_PRECISION: precision})


def with_threshold(meta: dict[str, str], threshold: float, tile_blur: float | None = None
                   ) -> dict[str, str]:
    """``meta`` with the stored box threshold (``camloc.threshold``) set to ``threshold``,
    and the tiled-map blur (``camloc.tile_blur``) to ``tile_blur`` unless it is None."""
    if not 0.0 <= float(threshold) < 1.0:
        raise ValueError(f"threshold must be in [0, 1), got {threshold!r}")
    if tile_blur is not None and not 0.0 <= float(tile_blur) <= MAX_TILE_BLUR:
        raise ValueError(f"tile blur must be in [0, {MAX_TILE_BLUR:g}], got {tile_blur!r}")
    extra = {} if tile_blur is None else {KEY_TILE_BLUR: repr(float(tile_blur))}
    return dict(meta, **{KEY_THRESHOLD: repr(float(threshold))}, **extra)


def _stored(meta: dict[str, str], key: str, path: str, top: float, closed: bool) -> float | None:
    """The number under ``key`` (None when absent), in [0, ``top``) or, ``closed``, [0, ``top``]."""
    value = meta.get(key)
    if value is None:
        return None
    try:
        number = float(value)
    except ValueError:
        number = -1.0
    if not (0.0 <= number <= top if closed else 0.0 <= number < top):
        raise ModelError(f"{path}: metadata {key} must be a number in [0, {top:g}{']' if closed else ')'}, "
                         f"got {value!r}")
    return number


def _optional(meta: dict[str, str], labels: list[str], path: str) -> tuple[int | None,
                                                                           float | None]:
    """The background class id and the stored threshold (None when absent)."""
    background = meta.get(KEY_BACKGROUND)
    if background is not None and background not in labels:
        raise ModelError(f"{path}: metadata {KEY_BACKGROUND} {background!r} is not one of the "
                         "labels")
    threshold = _stored(meta, KEY_THRESHOLD, path, 1.0, closed=False)
    return (None if background is None else labels.index(background)), threshold


def parse_metadata(meta: dict[str, str], path: str | Path = "<model>") -> ModelInfo:
    """Turn the ``camloc.*`` metadata strings into a :class:`ModelInfo`.

    Raises ModelError naming the missing or malformed key; optional keys
    (arch, weights, input size, precision, colour, topk_max) fall back to sensible values,
    and background and threshold to None.
    """
    path = str(path)
    arch = meta.get(KEY_ARCH, "unknown")
    missing = [k for k in _REQUIRED_KEYS if k not in meta]
    if missing:
        raise ModelError(f"{path}: not a camloc model, metadata {', '.join(missing)} missing; "
                         + reexport_hint(path, arch if arch != "unknown" else "<model>"))
    fmt = _int(meta.get(KEY_FORMAT, str(FORMAT)), KEY_FORMAT, path, 1, 1_000_000)
    if fmt != FORMAT:
        raise ModelError(f"{path}: {KEY_FORMAT} {fmt} is not supported (this runtime reads "
                         f"{FORMAT})")
    labels = _json(meta, KEY_LABELS, path)
    if not (isinstance(labels, list) and labels and all(isinstance(x, str) for x in labels)):
        raise ModelError(f"{path}: metadata {KEY_LABELS} must be a non-empty list of strings")
    color = meta.get(KEY_COLOR, "RGB").upper()
    if color not in ("RGB", "BGR"):
        raise ModelError(f"{path}: metadata {KEY_COLOR} must be RGB or BGR, got {color!r}")
    size = _json(meta, KEY_INPUT_SIZE, path) if KEY_INPUT_SIZE in meta else [224, 224]
    if not (isinstance(size, list) and len(size) == 2):
        raise ModelError(f"{path}: metadata {KEY_INPUT_SIZE} must be [height, width], "
                         f"got {size!r}")
    size = [_int(v, KEY_INPUT_SIZE, path, 1, MAX_INPUT_SIDE) for v in size]
    stride = _int(meta[KEY_STRIDE], KEY_STRIDE, path, 1, MAX_STRIDE)
    # the export caps k at the class count: more than that is a malformed file
    topk_max = _int(meta.get(KEY_TOPK_MAX, "0"), KEY_TOPK_MAX, path, 0, len(labels))
    background, threshold = _optional(meta, labels, path)
    return ModelInfo(
        path=path, arch=arch, weights=meta.get(KEY_WEIGHTS, "unknown"),
        labels=tuple(labels), color=color,
        mean=_triple(_json(meta, KEY_MEAN, path), KEY_MEAN, path),
        std=_triple(_json(meta, KEY_STD, path), KEY_STD, path),
        input_size=(size[0], size[1]), stride=stride,
        precision=meta.get(KEY_PRECISION, "fp32"), format=fmt,
        topk_max=topk_max,
        background=background, threshold=threshold,
        tile_blur=_stored(meta, KEY_TILE_BLUR, path, MAX_TILE_BLUR, closed=True),
    )


def check_outputs(output_names: list[str], input_names: list[str], path: str | Path,
                  arch: str = "<model>") -> None:
    """Raise ModelError saying which of the required inputs/outputs a model lacks."""
    if INPUT not in input_names:
        raise ModelError(f"{path}: the model has no input '{INPUT}' (inputs: "
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
