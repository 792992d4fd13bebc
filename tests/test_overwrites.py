"""Issue 28: one outputs-vs-inputs guard for every command that writes. Folder outputs
expanded to per-source names, symlinks and hard links; `python -m export --output` over its
--model .onnx, a --calib image or a --train image; `python -m realtime.evaluate --json`
over its labels or the model. Each: exit 2, one line, the inputs byte-identical.
(The CLI's cases are in test_faults.py, the Ray batch's in test_batch.py.)"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from realtime.outputs.guard import files_under, folder_outputs, refuse_overwrites
from realtime.outputs.sinks import SinkError

ROOT = Path(__file__).resolve().parents[1]


def _sums(*roots: Path) -> dict[Path, str]:
    files = [f for r in roots for f in ([r] if r.is_file() else sorted(r.rglob("*")))]
    return {f: hashlib.sha256(f.read_bytes()).hexdigest() for f in files if f.is_file()}


def _run(module: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))


def test_folder_outputs_links_and_the_message(tmp_path):
    (tmp_path / "in").mkdir()
    a = tmp_path / "in" / "a.mp4"
    a.write_bytes(b"video")
    os.link(a, tmp_path / "hard.mp4")
    (tmp_path / "sym.jsonl").symlink_to(a)
    planned = folder_outputs(tmp_path / "in", ["a", "b"], (".mp4", ".jsonl"))
    assert planned == [tmp_path / "in" / n for n in ("a.mp4", "a.jsonl", "b.mp4", "b.jsonl")]
    with pytest.raises(SinkError, match=r"^--save .*in/a\.mp4: is the input .*a\.mp4; "):
        refuse_overwrites([a], {"--save": planned, "--save-json": None})
    for alias in ("hard.mp4", "sym.jsonl", "in/../in/a.mp4"):
        with pytest.raises(SinkError, match="is the input"):
            refuse_overwrites([a], {"--save": [tmp_path / alias]})
    refuse_overwrites([a], {"--save": folder_outputs(tmp_path / "out", ["a"], (".mp4",))})
    assert a.read_bytes() == b"video"
    assert files_under(tmp_path / "in") == [a] and files_under(tmp_path / "none") == []


def test_export_refuses_to_write_over_what_it_reads(tiny_onnx, photos, tmp_path):
    model = tmp_path / "m.onnx"
    model.write_bytes(tiny_onnx.read_bytes())
    calib = tmp_path / "calib"
    train = tmp_path / "train" / "cat"
    for d in (calib, train):
        d.mkdir(parents=True)
        cv2.imwrite(str(d / "cat.png"), np.ascontiguousarray(photos["cat"][:64, :64, ::-1]))
    before = _sums(model, calib, train)
    cases = [
        (["--model", str(model), "--fp16", "--output", str(model)], "--output"),
        (["--model", str(model), "--int8", "--calib", str(calib), "--output",
          str(calib / "cat.png")], "cat.png: is the input"),
        (["--model", "efficientnet_lite0", "--train", str(train.parent), "--output",
          str(train / "cat.png")], "cat.png: is the input"),
    ]
    for args, message in cases:
        r = _run("export", *args)
        assert r.returncode == 2, (args, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0] and "is the input" in lines[0], lines
    assert _sums(model, calib, train) == before


def test_evaluate_json_never_replaces_its_labels_or_the_model(lite0_onnx, photos, tmp_path):
    model = tmp_path / "m.onnx"
    os.symlink(lite0_onnx, model)
    cv2.imwrite(str(tmp_path / "cat.jpg"), np.ascontiguousarray(photos["cat"][:, :, ::-1]))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "cat.jpg"}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, 50, 50]}],
        "categories": [{"id": 1, "name": "Egyptian cat"}]}))
    before = _sums(labels, lite0_onnx, tmp_path / "cat.jpg")
    for target in (labels, model, tmp_path / "cat.jpg"):
        r = _run("realtime.evaluate", "--model", str(model), "--source", str(tmp_path),
                 "--labels", str(labels), "--json", str(target))
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 2 and len(lines) == 1 and "--json" in lines[0] \
            and "is the input" in lines[0], r.stderr
    assert _sums(labels, lite0_onnx, tmp_path / "cat.jpg") == before
