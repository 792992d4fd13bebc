"""Segments without Ray: frame ranges of real videos (every frame once, by its own
number, also past a corrupt frame), the plan, the smoothing warm-up across a segment
boundary, joining parts, output names."""

from __future__ import annotations

import pytest
from media import corrupt_mjpeg_frame, read_jsonl, read_stamp, read_video, write_clip

from realtime.model.engine import Localizer
from realtime.pipeline.segments import (
    join_parts,
    part_paths,
    plan_segments,
    process_segment,
    warmup_frames,
)
from realtime.sources import VideoFileSource
from realtime.sources.names import source_name, unique_names


@pytest.fixture(scope="module")
def mjpeg(tmp_path_factory, photos):
    path = write_clip(tmp_path_factory.mktemp("seg") / "c.avi", photos, 20, fourcc="MJPG",
                      size=(160, 120))
    corrupt_mjpeg_frame(path, 11)
    return path


@pytest.mark.parametrize("bounds", [[0, 8, 16, None], [0, 11, 12, 13, None], [0, 5, None]])
def test_frame_ranges_cover_every_frame_once_by_its_number(mjpeg, bounds):
    seen, corrupt = [], 0
    for start, end in zip(bounds, bounds[1:]):
        with VideoFileSource(str(mjpeg), start=start, end=end) as src:
            frames = list(src)
            corrupt += src.frames_corrupt
        assert all(start <= f.index < (end or 99) for f in frames)
        seen += [(f.index, read_stamp(f.image)) for f in frames]
    assert seen == [(i, i) for i in range(20) if i != 11]
    assert corrupt == 1


def test_a_frame_range_checks_its_bounds(mjpeg):
    with pytest.raises(ValueError, match="need 0 <= start < end"):
        VideoFileSource(str(mjpeg), start=5, end=5)
    with pytest.raises(ValueError, match="multiple of stride"):
        VideoFileSource(str(mjpeg), stride=2, start=3)
    with VideoFileSource(str(mjpeg), start=4, end=10) as src:
        assert src.total == 6


def test_plan_cuts_a_video_and_leaves_the_last_segment_open():
    segs = plan_segments("v.mp4", "v", 23, 8, path="/data/v.mp4")
    assert [(s.index, s.start, s.end) for s in segs] == [(0, 0, 8), (1, 8, 16), (2, 16, None)]
    assert {s.path for s in segs} == {"/data/v.mp4"}
    assert [(s.start, s.end) for s in plan_segments("v.mp4", "v", None, 8)] == [(0, None)]
    with pytest.raises(ValueError, match="segment_frames must be >= 1"):
        plan_segments("v.mp4", "v", 10, 0)


def test_warmup_leaves_at_most_one_percent_of_the_history():
    assert warmup_frames(0.0) == 0
    for smooth in (0.3, 0.5, 0.8, 0.95):
        n = warmup_frames(smooth)
        assert smooth ** n <= 0.01 < smooth ** (n - 1)
    with pytest.raises(ValueError, match="smooth must be in"):
        warmup_frames(1.0)


def test_smoothing_crosses_segment_boundaries_by_warmup(photos, lite0_onnx, tmp_path):
    """Segments with the warm-up give the single run's records on a real clip; without
    it the same classes and scores, but boxes at segment starts may differ."""
    video = write_clip(tmp_path / "v.mp4", photos, 23, fps=20.0)
    loc = Localizer(lite0_onnx, imgsz=192, topk=2, smooth=0.5, threads=1)
    whole = plan_segments(str(video), "whole", None, 100)
    process_segment(loc, whole[0], tmp_path / "parts")
    single = read_jsonl(part_paths(tmp_path / "parts", whole[0])[1])
    segs = plan_segments(str(video), "cut", 23, 8)
    for warmup in (0, warmup_frames(0.5)):
        for seg in segs:
            process_segment(loc, seg, tmp_path / "parts", warmup=warmup)
        out = tmp_path / f"w{warmup}"
        out.mkdir()
        join_parts([part_paths(tmp_path / "parts", s) for s in segs], out / "v.mp4",
                   out / "v.jsonl")
        joined = read_jsonl(out / "v.jsonl")
        assert [read_stamp(f) for f in read_video(out / "v.mp4")] == list(range(23))

        def strip(records):
            return [(r["frame"], [(d["label"], d["score"]) for d in r["detections"]])
                    for r in records]
        assert strip(joined) == strip(single)
        if warmup:
            assert joined == single


def test_output_names_are_distinct_and_safe():
    assert unique_names(["a/clip.mp4", "b/clip.mp4", "clip.avi", "0", "/dev/video2"]) == [
        "clip", "clip2", "clip3", "camera0", "camera2"]
    assert source_name("rtsp://127.0.0.1:8554/cam 1") == "127.0.0.1_8554_cam_1"
    assert source_name("http://host/live/index.m3u8") == "host_index"


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_parts_in_the_clis_codec_join_by_packet_copy(photos, tiny_onnx, tmp_path, codec):
    """Parts written by the CLI's video sinks (H.264 fragmented MP4, the default, and mp4v)
    join without re-encoding: the joined file holds exactly the parts' packets, in order,
    with rising timestamps; the H.264 one is fragmented again (crash-safe like the CLI's)."""
    import av
    video = write_clip(tmp_path / "v.mp4", photos, 30, fps=10.0)
    loc = Localizer(tiny_onnx, threads=1)
    segs = plan_segments(str(video), "v", 30, 12)  # 12 + 12 + 6 frames
    for seg in segs:
        process_segment(loc, seg, tmp_path / "parts", codec=codec)
    parts = [part_paths(tmp_path / "parts", s) for s in segs]

    def packets(path):
        with av.open(str(path)) as c:
            s = c.streams.video[0]
            return s.codec_context.name, [(bytes(p), p.pts) for p in c.demux(s) if p.size]

    names, before = zip(*(packets(v) for v, _ in parts))
    out = tmp_path / "out"
    out.mkdir()
    join_parts(parts, out / "v.mp4", out / "v.jsonl")
    name, after = packets(out / "v.mp4")
    assert set(names) == {name} == {"h264" if codec == "h264" else "mpeg4"}
    assert [data for data, _ in after] == [data for part in before for data, _ in part]
    pts = [p for _, p in after]
    assert pts == sorted(set(pts)) and len(pts) == 30
    assert [read_stamp(f) for f in read_video(out / "v.mp4")] == list(range(30))
    assert [r["frame"] for r in read_jsonl(out / "v.jsonl")] == list(range(30))
    if codec == "h264":
        assert (out / "v.mp4").read_bytes().count(b"moof") >= 3  # a fragment per keyframe
