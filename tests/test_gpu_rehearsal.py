"""The GPU check rehearsed on the CPU, as CI runs it: tools/gpu/pack (no ONNX Runtime
wheel: the installed one runs) into small parts spread over two folders as the device
calls leave them, then tools/gpu/check --cpu runs every step on the CPU provider.
So the scripts cannot rot while no GPU is at hand (docs/GPU.md)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLS = ROOT / "tools" / "gpu"


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory, lite0_onnx: Path) -> tuple[Path, Path]:
    """(the pack folder with the manifest and the last part, the 'device /tmp' folder with
    the other parts)."""
    base = tmp_path_factory.mktemp("gpu")
    dest, device_tmp = base / "pack", base / "device-tmp"
    r = subprocess.run([sys.executable, str(TOOLS / "pack"), "--no-wheel", "--models",
                        "efficientnet_lite0", "--clip-seconds", "1", "--xz", "1",
                        "--part-mib", "7", "--dest", str(dest)],
                       cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads((dest / "manifest.json").read_text())
    parts = manifest["parts"]
    assert len(parts) >= 2 and all(p["bytes"] <= 7 << 20 for p in parts)
    assert (dest / "plan.txt").read_text().count("  carry: ") == len(parts)
    assert f"call {len(parts)}/{len(parts)}" in r.stdout and "tools/gpu/check" in r.stdout
    device_tmp.mkdir()
    for p in parts[:-1]:                      # earlier calls left these in the device's /tmp
        shutil.move(dest / p["name"], device_tmp / p["name"])
    return dest, device_tmp


def test_check_rehearses_every_step_on_the_cpu(packed, tmp_path) -> None:
    dest, device_tmp = packed
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(TOOLS / "check"), "--cpu", "--parts", str(dest),
                        str(device_tmp), "--out", str(out), "--work", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    summary = (out / "summary.txt").read_text()
    assert r.returncode == 0, summary
    report = json.loads((out / "results.json").read_text())
    status = {s["step"]: s["status"] for s in report["steps"]}
    assert status == {
        "join": "passed", "fp16": "passed", "providers": "passed", "tests": "passed",
        "bench efficientnet_lite0 fp16": "passed", "file1080": "passed",
        "bench efficientnet_lite0 fp32": "passed", "multi16": "passed",
        "bench efficientnet_lite2 fp16": "skipped", "bench efficientnet_lite2 fp32": "skipped",
        "uint8": "passed"}, summary
    tests = report["tests"]
    assert tests["failed"] == 0 and tests["passed"] >= 7, summary
    assert set(tests["why"]) <= {"test_nvenc_through_pyav"}   # NVENC: no GPU here
    cells = report["results"]["bench efficientnet_lite0 fp16"]["cells"]
    assert {(c["batch"], c["cuda_graphs"]) for c in cells} == {(1, True), (2, True), (1, False),
                                                               (2, False)}
    assert all(c["fps"] > 0 and c["provider"] == "CPUExecutionProvider" for c in cells)
    stages = report["results"]["file1080"]["bench"]["stages_ms"]
    assert {"decode", "infer", "draw", "encode"} <= set(stages)
    assert report["seconds"] < 600 and (out / "check.log").stat().st_size > 0


def test_a_missing_part_is_named_and_the_check_goes_on(packed, tmp_path) -> None:
    dest, _ = packed          # the parts the first calls left are not there: machine went cold
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(TOOLS / "check"), "--cpu", "--parts", str(dest),
                        "--out", str(out), "--work", str(tmp_path / "work"),
                        "--only", "join,providers"],
                       cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    steps = json.loads((out / "results.json").read_text())["steps"]
    assert [s["step"] for s in steps] == ["join", "providers"]
    assert "part-01 is missing" in steps[0]["reason"]
    assert "make the device calls again" in steps[0]["reason"]
    assert steps[1]["status"] == "failed"      # no models unpacked; reported, not a hang
