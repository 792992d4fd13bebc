"""python -m realtime.batch on a real local Ray (one 2-CPU instance shared by these tests):
outputs equal to the single-process CLI's on real videos with the real Lite0 model,
a corrupt video reported while the others complete, a re-run skipping finished
videos, a worker killed mid-segment whose segment is redone."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import ray  # requirements.txt: a missing Ray fails here, it does not skip
from media import corrupt_mjpeg_frame, read_stamp, read_video, write_clip

from realtime import batch, cli

FLAGS = ["--imgsz", "192", "--topk", "2"]


@pytest.fixture(scope="module")
def ray_local():
    """One local Ray for the module (slow to start on a small machine)."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1",
                 log_to_driver=False)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def videos(tmp_path_factory, photos):
    """Four real videos made from photos (one MJPG with a corrupt frame inside a segment)
    and the CLI's outputs for each."""
    d = tmp_path_factory.mktemp("batch")
    (d / "sub").mkdir()
    clips = [write_clip(d / "one.mp4", photos, 23, fps=20.0),
             write_clip(d / "two.mp4", photos, 9),
             write_clip(d / "three.avi", photos, 20, fourcc="MJPG", size=(256, 192)),
             write_clip(d / "sub" / "one.mp4", photos, 12, fps=30.0)]  # a second "one"
    corrupt_mjpeg_frame(clips[2], 11)
    expected = {}
    for clip in clips:
        out = d / "cli" / f"{clip.parent.name}_{clip.stem}"
        rc = cli.main(["--source", str(clip), "--save", str(out) + ".mp4", "--save-json",
                       str(out) + ".jsonl", *FLAGS])
        assert rc == 0
        expected[clip] = (Path(str(out) + ".mp4"), Path(str(out) + ".jsonl"))
    return clips, expected


def _same_video(ours: Path, theirs: Path) -> None:
    """Same frames in the same order: each of ours is closest to the CLI's frame of the
    same number (both are lossy encodings of the same annotated frames)."""
    a, b = read_video(ours), read_video(theirs)
    assert [read_stamp(f) for f in a] == [read_stamp(f) for f in b]
    for i, frame in enumerate(a):
        diffs = [np.abs(frame.astype(np.int16) - b[j]).mean()
                 for j in range(max(0, i - 1), min(len(b), i + 2))]
        assert min(diffs) == diffs[min(i, 1)], f"frame {i} of {ours} is not the CLI's"


def test_outputs_equal_the_cli_a_corrupt_video_is_reported_and_a_rerun_skips(
        ray_local, videos, lite0_onnx, tmp_path, capsys):
    clips, expected = videos
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(5000))
    out = tmp_path / "out"
    args = [*map(str, clips[:2]), str(bad), *map(str, clips[2:]), "--output", str(out),
            "--segment-frames", "8", *FLAGS]
    rc = batch.main(args)
    captured = capsys.readouterr()
    assert rc == 1
    assert captured.err.strip().splitlines()[-1].startswith(f"camloc: error: {bad}: cannot open")
    assert "4 done, 0 skipped, 1 failed" in captured.out
    for clip, name in zip(clips, ["one", "two", "three", "one2"]):
        video, jsonl = expected[clip]
        assert (out / f"{name}.jsonl").read_text() == jsonl.read_text()  # identical records
        _same_video(out / f"{name}.mp4", video)
    assert not (out / batch.PARTS_DIR).exists()
    stamps = {p: p.stat().st_mtime_ns for p in out.iterdir()}

    rc = batch.main(args)  # again: complete videos are skipped, the bad one still fails
    captured = capsys.readouterr()
    assert rc == 1 and "0 done, 4 skipped, 1 failed" in captured.out
    assert {p: p.stat().st_mtime_ns for p in out.iterdir()} == stamps


def test_a_worker_killed_mid_segment_has_its_segment_redone(
        ray_local, videos, lite0_onnx, tmp_path, monkeypatch, capsys):
    clips, expected = videos
    trigger = tmp_path / "die-once"
    trigger.touch()
    monkeypatch.setenv("CAMLOC_TEST_KILL_WORKER", str(trigger))  # the workers get CAMLOC_*
    out = tmp_path / "out"
    rc = batch.main([str(clips[0]), "--output", str(out), "--segment-frames", "10", *FLAGS])
    assert rc == 0, capsys.readouterr().err
    assert not trigger.exists()  # a worker did die (only the one that removed it)
    video, jsonl = expected[clips[0]]
    assert (out / "one.jsonl").read_text() == jsonl.read_text()
    _same_video(out / "one.mp4", video)


def _sums(folder: Path) -> dict[str, str]:
    import hashlib

    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_outputs_that_are_inputs_are_refused_before_anything_is_written(
        ray_local, photos, lite0_onnx, tmp_path, capsys):
    """Issue 28: `clips/a.mp4 clips/b.mp4 --output clips` replaced the inputs with their
    annotated copies and exited 0. Now: exit 2, one line, the folder byte-identical; the
    same videos into another folder are done on Ray and leave the inputs as they were."""
    clips = tmp_path / "clips"
    clips.mkdir()
    a = write_clip(clips / "a.mp4", photos, 9)
    write_clip(clips / "b.mp4", photos, 7)
    (clips / "link.mp4").symlink_to(a)
    before = _sums(clips)
    cases = [
        ([str(clips / "a.mp4"), str(clips / "b.mp4")], str(clips), "a.mp4: is the input"),
        ([str(clips / "link.mp4")], str(clips), "link.mp4: is the input"),  # a symlink's name
        ([str(a)], str(clips / ".." / "clips"), "is the input"),
        ([str(clips / "b.mp4"), str(a)], str(tmp_path / "out"), None),  # control: allowed
    ]
    for videos, out, message in cases[:3]:
        assert batch.main([*videos, "--output", out, *FLAGS]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert _sums(clips) == before  # nothing written, nothing replaced
    # a video inside the folder the batch fills with parts and removes is refused too
    parts = tmp_path / "o2" / batch.PARTS_DIR
    parts.mkdir(parents=True)
    inside = write_clip(parts / "c.mp4", photos, 3)
    assert batch.main([str(inside), "--output", str(tmp_path / "o2"), *FLAGS]) == 2
    assert "inside" in capsys.readouterr().err and inside.is_file()
    videos, out, _ = cases[3]
    assert batch.main([*videos, "--output", out, *FLAGS]) == 0, capsys.readouterr().err
    assert {"a.mp4", "b.mp4", "a.jsonl", "b.jsonl"} <= set(os.listdir(out))
    assert _sums(clips) == before


def test_tiles_reach_the_workers_and_equal_the_cli(ray_local, videos, lite0_onnx, tmp_path,
                                                   capsys):
    """``--tiles 2`` in a batch: each segment's worker runs the tiled model, so the records
    equal the single-process CLI's with ``--tiles 2`` (and differ from the untiled ones)."""
    clips, expected = videos
    clip, tiled = clips[1], [*FLAGS, "--tiles", "2", "--tile-blur", "1.5"]
    cli_out = tmp_path / "cli.jsonl"
    assert cli.main(["--source", str(clip), "--save-json", str(cli_out), *tiled]) == 0
    out = tmp_path / "out"
    assert batch.main([str(clip), "--output", str(out), "--segment-frames", "4", *tiled]) == 0
    assert "1 done" in capsys.readouterr().out
    assert (out / "two.jsonl").read_text() == cli_out.read_text()
    assert cli_out.read_text() != expected[clip][1].read_text()
