"""``realtime.stream``: the pipeline from Python, for one source and several, with real
video files: every frame of each source in its order, annotated images when asked, a
failing source that ends alone, and no thread left behind when the caller stops early."""

from __future__ import annotations

import threading

import pytest
from media import read_stamp, write_clip

import realtime
from realtime.model.engine import Localizer


@pytest.mark.parametrize("n", [1, 2])
def test_stream_yields_every_frame_of_each_source_in_order(n, photos, tiny_onnx, tmp_path):
    counts = (12, 7)[:n]
    files = [str(write_clip(tmp_path / f"{c}.mp4", photos, k)) for c, k in zip("pq", counts)]
    seen: dict[str, list[int]] = {}
    with realtime.stream(files if n > 1 else files[0], model=str(tiny_onnx), topk=2,
                         draw=True) as frames:
        for item in frames:
            seen.setdefault(item.name, []).append(item.frame.index)
            assert item.image is not None and item.image.shape == item.frame.image.shape
            assert item.frame.source == files[item.feed] and len(item.result.class_ids) == 2
            assert read_stamp(item.image) == item.frame.index  # the frame, drawn in place
    assert seen == {c: list(range(k)) for c, k in zip("pq", counts)}
    assert frames.errors == {} and frames.stats.processed == sum(counts)


@pytest.mark.parametrize("n", [1, 2])
def test_stream_takes_tiles_like_the_cli(n, photos, tiny_onnx, tmp_path):
    files = [str(write_clip(tmp_path / f"{c}.mp4", photos, 4)) for c in "pq"[:n]]
    tiled = Localizer(str(tiny_onnx), topk=2, tiles=2)
    with realtime.stream(files, model=str(tiny_onnx), topk=2, tiles=2, batch=2) as frames:
        got = [(item.result, item.frame.image) for item in frames]
    assert len(got) == 4 * n
    for result, image in got:  # the tiled Localizer's results (its finer merged maps)
        want = tiled(image)
        assert result.cams.shape == want.cams.shape and result.boxes == want.boxes
        assert list(result.class_ids) == list(want.class_ids)


def test_a_missing_source_fails_alone_among_several(photos, tiny_onnx, tmp_path):
    good = str(write_clip(tmp_path / "good.mp4", photos, 9))
    loc = Localizer(str(tiny_onnx))
    with realtime.stream([good, str(tmp_path / "missing.mp4")], model=loc) as frames:
        names = [item.name for item in frames]
    assert names == ["good"] * 9
    assert list(frames.errors) == ["missing"] and "not found" in str(frames.errors["missing"])


@pytest.mark.parametrize("n", [1, 2])
def test_breaking_out_early_stops_and_joins_everything(n, photos, tiny_onnx, tmp_path):
    files = [str(write_clip(tmp_path / f"{c}.mp4", photos, 200)) for c in "xy"[:n]]
    before = threading.active_count()
    frames = realtime.stream(files, model=Localizer(str(tiny_onnx)))
    for i, _item in enumerate(frames):
        if i == 5:
            break  # a plain for loop, no with block
    assert threading.active_count() == before
    assert all(f.source.stopped for f in frames.run.feeds)
    with pytest.raises(ValueError, match="no sources"):
        realtime.stream([], model=Localizer(str(tiny_onnx)))
