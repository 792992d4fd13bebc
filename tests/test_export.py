"""Export: the zoo, the GAP-head finder, the self-verifying .onnx and its CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from export.gap import NotGapError, find_gap_head
from export.onnx_export import export_model
from models.zoo import load_model
from realtime.model.format import INCAM_OUTPUTS, OUTPUTS

ROOT = Path(__file__).resolve().parents[1]
MOTORCYCLE = {"moped", "motor scooter"}  # ImageNet has no plain "motorcycle"


def _run_export(*args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env=env)


def _session(path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _tensor(photo: np.ndarray, meta: dict, h: int, w: int) -> np.ndarray:
    import cv2

    mean = np.float32(json.loads(meta["camloc.mean"]))
    std = np.float32(json.loads(meta["camloc.std"]))
    x = (cv2.resize(photo, (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) - mean) / std
    return x.transpose(2, 0, 1)[None].copy()


def test_lite0_onnx_alone_names_real_photos(lite0_onnx, photos):
    """Through the exported file and ONNX Runtime only: the right class first."""
    sess = _session(lite0_onnx)
    meta = sess.get_modelmeta().custom_metadata_map
    labels = json.loads(meta["camloc.labels"])
    assert meta["camloc.color"] == "RGB" and json.loads(meta["camloc.input_size"]) == [224, 224]
    expected = {"cat": {"Egyptian cat", "tabby", "tiger cat"}, "espresso": {"espresso"},
                "motorcycle": MOTORCYCLE}
    for name, want in expected.items():
        logits, = sess.run(["logits"], {"images": _tensor(photos[name], meta, 224, 224)})
        assert labels[int(logits.argmax())] in want, name


def test_lite0_onnx_contract(lite0_onnx, photos):
    """Dynamic N/H/W, the outputs and metadata the runtime relies on, the CAM identity."""
    sess = _session(lite0_onnx)
    meta = sess.get_modelmeta().custom_metadata_map
    # the contract, spelled out once more here on purpose; the in-graph CAMs after it
    assert [o.name for o in sess.get_outputs()] == ["logits", "features", "cam_weight",
                                                    "cam_bias", "topk_scores", "topk_ids",
                                                    "cams"] == [*OUTPUTS, *INCAM_OUTPUTS]
    assert sess.get_inputs()[0].name == "images"
    for key in ("camloc.arch", "camloc.weights", "camloc.mean", "camloc.std", "camloc.stride",
                "camloc.precision", "camloc.format"):
        assert key in meta
    assert meta["camloc.arch"] == "efficientnet_lite0" and meta["camloc.stride"] == "32"
    x = np.concatenate([_tensor(photos["cat"], meta, 192, 320), _tensor(photos["espresso"], meta, 192, 320),
                        _tensor(photos["rocket"], meta, 192, 320)])
    logits, feats, weight, bias = sess.run(list(OUTPUTS), {"images": x})
    assert logits.shape == (3, 1000) and feats.shape == (3, 1280, 6, 10)
    assert weight.shape == (1000, 1280) and bias.shape == (1000,)
    np.testing.assert_allclose(feats.mean(axis=(2, 3)) @ weight.T + bias, logits, rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "densenet121", "efficientnet_b0",
                                  "regnet_y_400mf", "googlenet", "shufflenet_v2_x0_5"])
def test_torchvision_families_export_and_verify(name, tmp_path):
    """Random weights: only the structure matters (head found, identity holds)."""
    torch.manual_seed(0)
    report = export_model(name, tmp_path / f"{name}.onnx", weights=None)
    assert (tmp_path / f"{name}.onnx").is_file()
    assert all(err < 1e-4 for err in report.checks.values())
    assert any("CAM identity" in k for k in report.checks)
    meta = _session(tmp_path / f"{name}.onnx").get_modelmeta().custom_metadata_map
    assert meta["camloc.weights"] == "random"


@pytest.mark.parametrize("name, culprit", [("mobilenet_v3_small", "Hardswish"),
                                           ("convnext_tiny", "LayerNorm2d"),
                                           ("vgg11", "no global average pooling"),
                                           ("vit_b_16", "no global average pooling")])
def test_heads_without_exact_cam_are_refused(name, culprit, tmp_path):
    with pytest.raises(NotGapError, match=f"has no exact CAM.*{culprit}"):
        export_model(name, tmp_path / "x.onnx", weights=None)
    assert list(tmp_path.iterdir()) == []


def test_gap_finder_on_a_tiny_model():
    """3 -> 8 -> 16 conv, GAP, linear: features are the last conv's output."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
                              torch.nn.Conv2d(8, 16, 3, stride=2, padding=1), torch.nn.ReLU(),
                              torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5))
    head = find_gap_head(net)
    x = torch.randn(2, 3, 8, 8)
    logits, feats = head.module(x)
    assert feats.shape == (2, 16, 4, 4)
    torch.testing.assert_close(logits, net(x))
    torch.testing.assert_close(head.linear(feats.mean((2, 3))), logits)


def test_cli_exports_lite_with_report(tmp_path):
    out = tmp_path / "sub" / "lite0.onnx"
    proc = _run_export("--model", "efficientnet_lite0", "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "CAM identity" in proc.stdout and "Egyptian cat" in proc.stdout
    assert out.is_file() and out.stat().st_size > 10e6


def test_checkpoint_with_own_classes_and_labels(tmp_path):
    torch.manual_seed(0)
    net = load_model("resnet18", weights=None).module
    net.fc = torch.nn.Linear(512, 3)
    ckpt = tmp_path / "mine.pt"
    torch.save({"state_dict": net.state_dict()}, ckpt)
    (tmp_path / "labels.txt").write_text("apple\nbanana\ncherry\n")
    out = tmp_path / "mine.onnx"
    proc = _run_export("--model", "resnet18", "--checkpoint", str(ckpt), "--labels",
                       str(tmp_path / "labels.txt"), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    meta = _session(out).get_modelmeta().custom_metadata_map
    assert json.loads(meta["camloc.labels"]) == ["apple", "banana", "cherry"]
    assert meta["camloc.weights"] == "checkpoint mine.pt"


def test_default_weights_come_through_torchvision_cache(tmp_path):
    """--weights DEFAULT takes torchvision's download path; with the file already
    in the hub cache (as after a download) it needs no network."""
    torch.manual_seed(0)
    hub = tmp_path / "torch" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    net = load_model("resnet18", weights=None).module
    torch.save(net.state_dict(), hub / "resnet18-f37072fd.pth")
    env = {**__import__("os").environ, "TORCH_HOME": str(tmp_path / "torch")}
    proc = _run_export("--model", "resnet18", "--output", str(tmp_path / "r.onnx"), env=env)
    assert proc.returncode == 0, proc.stderr
    meta = _session(tmp_path / "r.onnx").get_modelmeta().custom_metadata_map
    assert meta["camloc.weights"] == "torchvision ResNet18_Weights.IMAGENET1K_V1"


def _one_line_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


def test_bad_input_gives_one_line_and_status_2(tmp_path):
    out = tmp_path / "x.onnx"
    _one_line_error(_run_export("--model", "nope", "--output", str(out)),
                    "unknown model 'nope'", "efficientnet_lite0", "resnet18")
    _one_line_error(_run_export("--model", "mobilenet_v3_large", "--weights", "none", "--output", str(out)),
                    "no exact CAM", "Hardswish")
    bad = tmp_path / "truncated.pt"
    torch.save(load_model("resnet18", weights=None).module.state_dict(), bad)
    bad.write_bytes(bad.read_bytes()[:5000])
    _one_line_error(_run_export("--model", "resnet18", "--checkpoint", str(bad), "--output", str(out)),
                    "corrupt")
    wrong = tmp_path / "wrong.pt"
    torch.save(load_model("resnet18", weights=None).module.state_dict(), wrong)
    _one_line_error(_run_export("--model", "resnet34", "--checkpoint", str(wrong), "--output", str(out)),
                    "does not fit resnet34", "missing keys", "layer1.2.conv1.weight")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(_run_export("--model", "efficientnet_lite0", "--output", str(blocker / "m.onnx")),
                    "cannot write")
    _one_line_error(_run_export("--model", "resnet18", "--output", str(out)),
                    "could not get the weights", "--weights none")
    _one_line_error(_run_export("--bogus"), "unrecognized arguments")
    assert not out.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial file
