"""realtime/format.py's optional keys (issue 14): the background class and the stored box
threshold (and the tiled-map blur, issue 26) go both ways through to_metadata/parse_metadata,
models without them still load, and malformed values are one-line ModelErrors."""

from __future__ import annotations

from dataclasses import replace

import pytest

from realtime.errors import ModelError
from realtime.model.format import (
    BACKGROUND_LABEL,
    FORMAT,
    KEY_BACKGROUND,
    KEY_THRESHOLD,
    KEY_TILE_BLUR,
    ModelInfo,
    parse_metadata,
    to_metadata,
    with_threshold,
)

INFO = ModelInfo(path="m.onnx", arch="efficientnet_lite0", weights="fine-tuned",
                 labels=(BACKGROUND_LABEL, "coin", "face"), color="RGB", mean=(127.0,) * 3,
                 std=(128.0,) * 3, input_size=(224, 224), stride=32, precision="fp32",
                 format=FORMAT)


def test_old_models_have_neither_key():
    meta = to_metadata(INFO)
    assert KEY_BACKGROUND not in meta and KEY_THRESHOLD not in meta and KEY_TILE_BLUR not in meta
    info = parse_metadata(meta, "m.onnx")
    assert info == INFO and info.background is None and info.threshold is None
    assert info.tile_blur is None


def test_background_and_threshold_round_trip():
    info = replace(INFO, background=0, threshold=0.27)
    meta = to_metadata(info)
    assert meta[KEY_BACKGROUND] == BACKGROUND_LABEL and float(meta[KEY_THRESHOLD]) == 0.27
    assert parse_metadata(meta, "m.onnx") == info
    stored = parse_metadata(with_threshold(to_metadata(INFO), 0.4), "m.onnx")
    assert stored.threshold == 0.4 and stored.background is None and stored.tile_blur is None
    info = replace(INFO, threshold=0.3, tile_blur=0.0)
    assert parse_metadata(to_metadata(info), "m.onnx") == info
    stored = parse_metadata(with_threshold(to_metadata(INFO), 0.3, 0.0), "m.onnx")
    assert (stored.threshold, stored.tile_blur) == (0.3, 0.0)


@pytest.mark.parametrize("key, value, message", [
    (KEY_BACKGROUND, "sky", "is not one of the labels"),
    (KEY_THRESHOLD, "1.5", "must be a number in [0, 1)"),
    (KEY_THRESHOLD, "high", "must be a number in [0, 1)"),
    (KEY_TILE_BLUR, "-1", "must be a number in [0, 16]"),
    (KEY_TILE_BLUR, "nan", "must be a number in [0, 16]"),
    (KEY_TILE_BLUR, "1e9", "must be a number in [0, 16]"),
])
def test_malformed_optional_keys(key, value, message):
    meta = dict(to_metadata(INFO), **{key: value})
    with pytest.raises(ModelError, match=message.replace("[", r"\[").replace(")", r"\)")
                       .replace("]", r"\]")):
        parse_metadata(meta, "m.onnx")
    with pytest.raises(ValueError):
        with_threshold(to_metadata(INFO), 1.0)
    with pytest.raises(ValueError):
        with_threshold(to_metadata(INFO), 0.3, -0.5)
