"""``python -m realtime.bench --live``: a real paced MJPEG stream, the real pipeline, every
documented figure present and consistent (no timing thresholds: speed is the bench's job)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from media import write_clip

from realtime.commands.bench_live import format_live, run_live_bench

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def clip(tmp_path_factory, photos):
    return write_clip(tmp_path_factory.mktemp("benchlive") / "clip.mp4", photos, 20,
                      fps=20.0, size=(320, 240))


def test_each_configuration_reports_stages_and_end_to_end_latency(clip, tiny_onnx):
    r = run_live_bench(str(clip), str(tiny_onnx), "cpu", seconds=2.0, warmup_s=0.5,
                       configs=("none", "video+web"))
    assert r["fps"] == 20.0 and r["frame_size"] == [240, 320] and set(r["runs"]) == {
        "none", "video+web"}
    none, both = r["runs"]["none"]["latency_ms"], r["runs"]["video+web"]["latency_ms"]
    assert {"reader_wait", "preprocess", "infer", "postprocess", "draw", "e2e_out"} <= set(none)
    assert {"encode", "web", "e2e_video", "e2e_web_sent", "e2e_web_received"} <= set(both)
    for p in (*none.values(), *both.values()):
        assert p["p50"] <= p["p95"] <= p["p99"] <= p["max"] and p["n"] >= 1
    # to the recording is part of the way out: the recording has the frame before it leaves
    assert both["e2e_video"]["p50"] <= both["e2e_out"]["p50"]
    assert both["infer"]["p50"] < both["e2e_out"]["p50"]
    for run in r["runs"].values():
        assert run["processed"] >= 2 and run["frames_read"] >= run["processed"]
        assert 0 <= run["dropped_share"] < 1
    assert "e2e_web_received" in format_live(r)


def test_the_command_writes_json_and_refuses_bad_options(clip, tiny_onnx, tmp_path):
    out = tmp_path / "live.json"
    r = subprocess.run([sys.executable, "-m", "realtime.bench", "--live", "--source", str(clip),
                        "--model", str(tiny_onnx), "--seconds", "1", "--warmup", "0.3",
                        "--configs", "video", "--json", str(out)], cwd=ROOT,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "e2e_video" in r.stdout and json.loads(out.read_text())["runs"]["video"]
    bad = subprocess.run([sys.executable, "-m", "realtime.bench", "--live", "--configs", "x"],
                         cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--configs" in bad.stderr
