"""The runtime runs an INT8 model end to end with torch (and onnx) unimportable.

The fresh-virtual-environment check (only requirements-runtime.txt installed) is
tools/check_runtime_venv.sh, called by .ci/run: it needs the package index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.calib import read_frames
from export.quantize import quantize_onnx

ROOT = Path(__file__).resolve().parents[1]

# A meta-path finder that refuses the heavy packages, installed before anything else runs.
_BLOCK = """
import sys
class _NoHeavy:
    BLOCKED = ("torch", "torchvision", "onnx")
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.BLOCKED:
            raise ImportError(f"{name} is blocked in this test (edge box: no torch, no onnx)")
        return None
sys.meta_path.insert(0, _NoHeavy())
"""


@pytest.fixture(scope="module")
def clip(photos, tmp_path_factory) -> Path:
    """24 frames, 320x240: the cat, the espresso and the motorcycle, 8 frames each,
    slowly zooming in (a video written from real photos)."""
    path = tmp_path_factory.mktemp("edge") / "photos.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 8, (320, 240))
    for name in ("cat", "espresso", "motorcycle"):
        rgb = photos[name]
        h, w = rgb.shape[:2]
        for i in range(8):
            m = int(min(h, w) * 0.02 * i)
            crop = rgb[m:h - m, m:w - m]
            writer.write(np.ascontiguousarray(cv2.resize(crop, (320, 240))[:, :, ::-1]))
    writer.release()
    return path


@pytest.fixture(scope="module")
def int8_model(lite0_onnx, clip, tmp_path_factory) -> Path:
    """INT8 default model calibrated on the clip itself (quick: 24 frames)."""
    out = tmp_path_factory.mktemp("edge-model") / "lite0.int8.onnx"
    quantize_onnx(lite0_onnx, out, "int8", read_frames(clip, 24), bench_runs=0,
                  min_agreement=0.5)
    return out


def test_cli_runs_int8_model_without_torch(int8_model, clip, tmp_path):
    code = _BLOCK + (
        "from realtime.cli import main\n"
        f"rc = main(['--model', {str(int8_model)!r}, '--source', {str(clip)!r}, "
        "'--save-json', 'out.jsonl', '--save', 'out.mp4'])\n"
        "assert not any(m.split('.')[0] in ('torch', 'torchvision', 'onnx') for m in sys.modules)\n"
        "sys.exit(rc)\n")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [row["frame"] for row in rows] == list(range(24))
    labels = [row["detections"][0]["label"] for row in rows if row["detections"]]
    assert len(labels) == 24
    # the INT8 model still finds the cat and the espresso in their parts of the clip
    assert sum("cat" in lab for lab in labels[:8]) >= 6
    assert sum(lab == "espresso" for lab in labels[8:16]) >= 6


def test_localizer_reports_int8_precision_without_torch(int8_model, photos):
    code = _BLOCK + (
        "import numpy as np, cv2\n"
        "from realtime import Localizer\n"
        f"loc = Localizer({str(int8_model)!r}, device='cpu')\n"
        "img = cv2.imread(sys.argv[1])\n"
        "res = loc(img)\n"
        "print(loc.info.precision, res.labels[0], res.cams.dtype, res.cams.max())\n")
    img = Path(str(int8_model) + ".cat.png")
    cv2.imwrite(str(img), np.ascontiguousarray(photos["cat"][:, :, ::-1]))
    r = subprocess.run([sys.executable, "-c", code, str(img)], env={**os.environ,
                       "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    precision, *rest = r.stdout.split()
    assert precision == "int8" and "cat" in " ".join(rest[:-2]) and rest[-2] == "float32"


def test_runtime_requirements_hold_no_heavy_packages():
    text = (ROOT / "requirements-runtime.txt").read_text()
    names = [line.split(";")[0].split(">")[0].split("=")[0].strip().lower()
             for line in text.splitlines() if line.strip() and not line.startswith("#")]
    # the core, plus PyAV (H.264 recordings, the --save default) and the web view's server
    # and Prometheus client (--serve), the MQTT client of events (pure Python): no torch,
    # torchvision or onnx
    assert {"numpy", "opencv-python-headless", "onnxruntime", "onnxruntime-gpu", "av",
            "aiohttp", "prometheus-client", "paho-mqtt"} == set(names)
    # and the runtime imports nothing beyond them (plus the optional, guarded tqdm and Pillow,
    # and onnx, which only `realtime.evaluate --store-threshold` needs, to write the model)
    import ast

    third = set()
    for f in (ROOT / "realtime").rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text())):
            mods = ([a.name for a in node.names] if isinstance(node, ast.Import)
                    else [node.module] if isinstance(node, ast.ImportFrom) and node.level == 0
                    and node.module else [])
            third.update(m.split(".")[0] for m in mods)
    stdlib = set(sys.stdlib_module_names)
    # ray: python -m realtime.batch only, imported there lazily with an install hint
    assert third - stdlib - {"realtime", "numpy", "cv2", "onnxruntime", "av", "aiohttp",
                             "prometheus_client", "paho"} <= {"tqdm", "export", "PIL", "ray", "onnx"}
