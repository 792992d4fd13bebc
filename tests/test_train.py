"""export --train: a short real training run (real photos, real EfficientNet-Lite0 weights)
that beats the untrained head on held-out images, the background class that silences
detections, re-export from the kept checkpoint, FP16/INT8 variants of the trained model,
and one-line exit-2 errors for every bad training folder."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from export.imagefolder import MIN_IMAGES_PER_CLASS, load_images, scan_folder
from realtime.model.cam import softmax
from realtime.model.engine import Localizer

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(training-set root, trained .onnx, TrainReport): 8 images per class of coin, face,
    text and background (tools/make_training_set.py), 2 views each, a few epochs."""
    from export.train import TrainConfig, train_and_export
    from tools.make_training_set import build

    root = tmp_path_factory.mktemp("trainset")
    build(root, per_class=8, test_per_class=4, seed=1)
    out = root / "m.onnx"
    report, _ = train_and_export("efficientnet_lite0", root / "train", out,
                                 TrainConfig(epochs=6, views=2, patience=6, progress=False))
    return root, out, report


def test_training_improves_heldout_accuracy(trained):
    root, model, report = trained
    assert report.labels == ["background", "coin", "face", "text"]
    assert report.heldout_images == 8 and report.train_images == 24
    assert report.best_acc > report.initial_acc
    assert report.best_acc >= 0.75
    assert report.camera_acc is not None and 0.0 <= report.camera_acc <= 1.0
    # it warns when the kept model's two estimates disagree, or when auto trained the last
    # blocks (only done when the head alone's disagreed), whether or not the deeper ones agree
    disagree = abs(report.best_acc - report.camera_acc) > 0.10
    assert (report.warning is not None) == (disagree or report.tune_blocks > 0)
    assert len(report.history) >= 1 and report.checkpoint.is_file()
    info = Localizer(model, device="cpu").info
    assert info.labels == tuple(report.labels)
    assert info.background == 0
    assert (info.threshold, info.tile_blur) == (0.3, 0.0)   # sharp maps: no blur off tiled boxes


def test_background_frames_yield_no_detections(trained):
    root, model, _ = trained
    loc = Localizer(model, device="cpu", topk=2)
    assert loc.in_graph  # the trained export has in-graph CAMs; both paths are checked
    seen = {"background": 0, "object": 0}
    for path in sorted((root / "test" / "images").glob("*.jpg")):
        frame = cv2.imread(str(path))
        x, geo = loc.prepare(frame)
        logits, feats = loc.infer(x)
        top = int(np.argmax(softmax(logits[0])))
        result = loc.postprocess(logits[0], feats[0], geo)
        in_graph = loc.finish(tuple(o[0] for o in loc.forward(x)), geo)  # the default path
        assert list(in_graph.class_ids) == list(result.class_ids)
        assert [d["box"] for d in in_graph.detections()] == [d["box"] for d in result.detections()]
        if top == loc.info.background:
            seen["background"] += 1
            assert result.detections() == [] and len(result.class_ids) == 0
            assert result.draw(frame.copy()) is not None
        else:
            seen["object"] += 1
            assert result.detections() and loc.info.background not in result.class_ids
    assert seen["background"] >= 1 and seen["object"] >= 1


def test_checkpoint_reexports_with_its_labels(trained, tmp_path):
    from export.cli import main

    _, model, report = trained
    out = tmp_path / "again.onnx"
    assert main(["--model", "efficientnet_lite0", "--checkpoint", str(report.checkpoint),
                 "--output", str(out), "-q"]) == 0
    a, b = Localizer(model, device="cpu"), Localizer(out, device="cpu")
    assert b.info.labels == a.info.labels and b.info.background == a.info.background
    frame = cv2.imread(str(next((model.parent / "test" / "images").glob("coin_*.jpg"))))
    np.testing.assert_allclose(b.infer(b.prepare(frame)[0])[0], a.infer(a.prepare(frame)[0])[0],
                               rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_variants_of_a_trained_model(trained, tmp_path, precision, capsys):
    from export.cli import main

    root, model, _ = trained
    out = tmp_path / f"m.{precision}.onnx"
    extra = ["--calib", str(root / "test" / "images"), "--calib-frames", "16",
             "--min-agreement", "0.5"] if precision == "int8" else []
    assert main(["--model", str(model), f"--{precision}", "--output", str(out), *extra]) == 0
    assert "agree" in capsys.readouterr().out
    info = Localizer(out, device="cpu").info
    assert info.precision == precision and info.background == 0
    assert info.labels == Localizer(model, device="cpu").info.labels


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "export", *args], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def _folder(root: Path, counts: dict[str, int], photo: np.ndarray) -> Path:
    """Distinct files (the photo shifted): identical ones would be used once (imagefolder)."""
    for c, (name, n) in enumerate(counts.items()):
        (root / name).mkdir(parents=True)
        for i in range(n):
            view = np.roll(photo[:, :, ::-1], 11 * i + 97 * c, axis=1)
            cv2.imwrite(str(root / name / f"{i}.jpg"), np.ascontiguousarray(view))
    return root


def test_unreadable_images_are_skipped_and_counted(tmp_path, photos, caplog):
    root = _folder(tmp_path / "d", {"cat": 4, "cup": 5}, photos["cat"])
    (root / "cup" / "broken.jpg").write_bytes(b"not a jpeg")
    (root / "cup" / "empty.png").write_bytes(b"")
    folder = scan_folder(root)
    with caplog.at_level(logging.WARNING):
        images = load_images(folder)
    assert [len(c) for c in images] == [4, 5] and len(folder.skipped) == 2
    assert "skipped 2 unreadable image(s)" in caplog.text


def test_bad_training_input_one_line_exit_2(tmp_path, photos):
    one = _folder(tmp_path / "one", {"cat": 5}, photos["cat"])
    few = _folder(tmp_path / "few", {"cat": 5, "cup": 2}, photos["cat"])
    broken = _folder(tmp_path / "broken", {"cat": 5, "cup": 4}, photos["cat"])
    for p in (broken / "cup").iterdir():
        p.write_bytes(b"garbage")
    ok = _folder(tmp_path / "ok", {"cat": 4, "cup": 4}, photos["cat"])
    splits = tmp_path / "splits"   # the set's root, not its train/ split
    _folder(splits / "train", {"cat": 4, "cup": 4}, photos["cat"])
    _folder(splits / "test", {"cat": 4, "cup": 4}, photos["espresso"])
    out = str(tmp_path / "m.onnx")
    cases = {
        "at least two class sub-folders": ["--train", str(one), "--output", out],
        f"at least {MIN_IMAGES_PER_CLASS} images": ["--train", str(few), "--output", out],
        "cup (2)": ["--train", str(few), "--output", out],
        "readable images": ["--train", str(broken), "--output", out],
        "does not exist": ["--train", str(tmp_path / "nope"), "--output", out],
        "holds splits (test, train), each with the same class folders (cat, cup): give one "
        f"split, e.g. --train {splits / 'train'}": ["--train", str(splits), "--output", out],
        "needs --output": ["--train", str(ok)],
        "afterwards with --model M.onnx": ["--train", str(ok), "--output", out, "--fp16"],
        "--epochs must be at least 1": ["--train", str(ok), "--output", out, "--epochs", "0"],
        "--views must be at least 1": ["--train", str(ok), "--output", out, "--views", "0"],
        "--focus must be at least 0": ["--train", str(ok), "--output", out, "--focus", "-1"],
        "--box-loss must be a number at least 0": ["--train", str(ok), "--output", out,
                                                   "--box-loss", "nan"],
        "argument --average: invalid choice": ["--train", str(ok), "--output", out,
                                               "--average", "best"],
        "multiple of 32 from 64": ["--train", str(ok), "--output", out, "--train-size", "100"],
        "--tune-blocks must be auto or a number": ["--train", str(ok), "--output", out,
                                             "--tune-blocks", "-1"],
        "fine-tunes the EfficientNet-Lite": ["--train", str(ok), "--output", out, "--model",
                                             "resnet18"],
    }
    for message, args in cases.items():
        r = _cli(*args)
        assert r.returncode == 2, (message, r.stderr)
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (message, r.stderr)
    assert not (tmp_path / "m.onnx").exists()


def test_context_augmentation(photos):
    from export.trainaug import cutmix, estimate_warning, paste_object, zoom_out

    rng = np.random.default_rng(0)
    cat = photos["cat"]
    grass = np.full((100, 100, 3), 40, np.uint8)
    view, box = zoom_out(cat, (224, 224), [grass], rng, scale=(0.5, 0.5))
    assert view.shape == (224, 224, 3)
    assert (view == 40).all(axis=2).mean() == pytest.approx(0.75, abs=0.01)  # the rest is grass
    x1, y1, x2, y2 = box.astype(int)   # the box is where the photo went: no grass inside
    assert (x2 - x1, y2 - y1) == (112, 112) and not (view[y1:y2, x1:x2] == 40).all(axis=2).any()
    # a focus view: only the found part, scaled so its longer side is half the frame's
    img = np.zeros((100, 120, 3), np.uint8)
    img[..., 2] = 255                                   # blue scene...
    img[30:60, 20:50] = (255, 0, 0)                     # ...with a red object where it was found
    for margin in (0.0, 0.25):   # the box grown by margin of its side each way
        view, box = paste_object(img, [20, 30, 50, 60], (224, 224), [grass], rng, (0.5, 0.5), margin)
        x1, y1, x2, y2 = box.astype(int)
        assert (view[y1:y2, x1:x2] != 40).any(axis=2).all() and (x2 - x1, y2 - y1) == (112, 112)
        red = ((view[..., 0] > 200) & (view[..., 2] < 50)).sum()
        blue = ((view[..., 2] > 200) & (view[..., 0] < 50)).sum()
        side = 112 / (1 + 2 * margin)
        assert red == pytest.approx(side * side, rel=0.1)
        assert blue == pytest.approx(112 * 112 - side * side, abs=0.06 * 112 * 112)
        assert (view == 40).all(axis=2).sum() == pytest.approx(224 * 224 - 112 * 112, rel=0.02)
    torch = pytest.importorskip("torch")
    x = torch.arange(4, dtype=torch.float32).view(4, 1, 1, 1).expand(4, 2, 7, 7).contiguous()
    mixed, target = cutmix(x, torch.tensor([0, 1, 2, 3]), 4, np.random.default_rng(3))
    assert torch.allclose(target.sum(1), torch.ones(4))
    for i in range(4):  # each example keeps its own label in proportion to what it keeps
        kept = float((mixed[i, 0] == i).float().mean())
        own = (float(target[i, i]) - 0.1 / 4) / 0.9
        assert own == pytest.approx(kept, abs=1e-5) or kept == 1.0
    assert estimate_warning(0.95, 0.9, 0.1) is None
    assert "0.600" in estimate_warning(0.95, 0.6, 0.1)
    assert "--tune-blocks 5" in estimate_warning(0.95, 0.6, 0.1)         # the next thing to try
    assert "--tune-blocks" not in estimate_warning(0.95, 0.6, 0.1, tune_blocks=5)  # tried


def test_the_warning_stays_when_deeper_training_closed_the_gap():
    """Auto trains deeper because the head alone's estimates disagree; when the deeper
    model's two then agree, the folder is still unlike camera frames and the model was chosen
    on those held-out photos: the command still warns, naming both pairs of figures."""
    from export.train import final_warning
    from export.trainfit import Fit

    head = Fit(best_acc=0.95, camera_acc=0.70)
    agree, disagree = Fit(best_acc=0.98, camera_acc=0.93), Fit(best_acc=0.98, camera_acc=0.80)
    assert final_warning(agree, None, 0.1, 0) is None                  # nothing started it
    text = final_warning(agree, head, 0.1, 5)
    assert all(f in text for f in ("0.980", "0.930", "0.950", "0.700"))
    assert "lower" in text and "--tune-blocks" not in text
    assert "0.800" in final_warning(disagree, head, 0.1, 5)             # the plain warning
    assert final_warning(disagree, None, 0.1, 5) == final_warning(disagree, head, 0.1, 5)


def test_cell_attention_keeps_the_cam_identity(tmp_path, photos):
    """A head with CellAttention (TrainConfig.attention) exports verified (ONNX Runtime vs
    torch and GAP(features) . W^T + b == logits, write_onnx raises otherwise), its features
    are a * F with mean(a) == 1 per frame, and its checkpoint loads back with the attention."""
    torch = pytest.importorskip("torch")
    from export.onnx_export import write_onnx
    from models.zoo import load_model

    zm = load_model("efficientnet_lite0")
    att = zm.module.add_attention(0.8)
    torch.nn.init.normal_(att.score.weight, std=0.05, generator=torch.Generator().manual_seed(0))
    report = write_onnx(zm, tmp_path / "a.onnx")
    assert all(err < 1e-4 for name, err in report.checks.items() if "identity" in name)
    loc = Localizer(tmp_path / "a.onnx", device="cpu")
    x, _ = loc.prepare(np.ascontiguousarray(photos["cat"][:, :, ::-1]))
    feats = loc.infer(x)[1]
    m = zm.module
    with torch.no_grad():
        t = torch.from_numpy(x)
        plain = m.act(m._bn1(m._conv_head(m._blocks(m.act(m._bn0(m._conv_stem(t)))))))
    a = (feats / np.maximum(plain.numpy(), 1e-6)).max(axis=1)  # the weight of each cell
    assert abs(float(a.mean()) - 1.0) < 1e-3 and float(a.max() / a.min()) > 1.5
    torch.save({"state_dict": m.state_dict(), "labels": zm.labels, "input_size": 320},
               tmp_path / "a.pt")  # as the trainer saves one trained with TrainConfig(imgsz=320)
    again = load_model("efficientnet_lite0", checkpoint=tmp_path / "a.pt")
    assert again.module._attention is not None and again.input_size == (320, 320)
    assert float(again.module._attention.mix) == pytest.approx(0.8)


def test_tune_blocks_auto_keeps_the_better_camera_estimate(trained):
    """--tune-blocks auto (the default): where the held-out estimates disagree (forced here
    with warn_gap -1), the head alone and the last AUTO_DEEPER blocks too are both trained from the same
    cached views; the higher camera-scale estimate is kept (the head alone on a tie), and
    the kept model is exactly what an explicit --tune-blocks N run of it gives."""
    torch = pytest.importorskip("torch")
    from export.train import AUTO_DEEPER, TrainConfig, train_model

    root = trained[0]
    folder = scan_folder(root / "train")
    images = load_images(folder)
    kw = dict(epochs=3, views=2, patience=3, progress=False, warn_gap=-1.0)
    zm, report = train_model("efficientnet_lite0", folder, images, TrainConfig(**kw))
    head_alone, deeper = report.compared
    assert report.tune_blocks == (AUTO_DEEPER if deeper > head_alone else 0)
    assert report.camera_acc == max(head_alone, deeper)
    assert "training deeper too" in report.seconds
    objects = sum(n for name, n in zip(report.labels, report.counts) if name != "background")
    if report.tune_blocks:   # the deeper training also saw the objects it found, in other scenes
        assert 0 < report.focus_views <= 2 * objects and report.focus_views % 2 == 0
        assert f"with {report.focus_views} focus views" in report.summary()
    assert "--tune-blocks" not in report.warning   # it was tried: nothing left to suggest
    line = report.summary()                         # what the CLI prints
    assert f"camera-scale {head_alone:.3f} with the head alone, {deeper:.3f}" in line
    assert (f"trained the last {AUTO_DEEPER} blocks too" in line) == bool(report.tune_blocks)
    explicit, again = train_model("efficientnet_lite0", folder, images,
                                  TrainConfig(tune_blocks=report.tune_blocks, **kw))
    assert again.compared is None and again.camera_acc == report.camera_acc
    ours, theirs = zm.module.state_dict(), explicit.module.state_dict()
    assert ours.keys() == theirs.keys()
    assert all(torch.equal(ours[k], theirs[k]) for k in ours)
    other = AUTO_DEEPER - report.tune_blocks   # the other figure is what it gives alone
    _, alt = train_model("efficientnet_lite0", folder, images, TrainConfig(tune_blocks=other, **kw))
    assert alt.camera_acc == (deeper if other else head_alone)


def test_focus_boxes_find_the_objects(trained):
    """The focus views show what the trained head finds: the strongest region of the image's
    own class's CAM (object_boxes) lies on the object in new test photos."""
    pytest.importorskip("torch")
    import json

    from torch import nn

    from export.train import FOCUS_THRESHOLD, _tensor, checkpoint_labels
    from export.trainaug import whole_view
    from export.trainfit import cache_features, object_boxes
    from models.zoo import load_model
    from realtime.model.accuracy import iou

    root, out, _ = trained
    zm = load_model("efficientnet_lite0", checkpoint=out.with_suffix(".pt"))
    coco = json.loads((root / "test" / "labels.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    index = {name: i for i, name in enumerate(checkpoint_labels(out.with_suffix(".pt")))}
    shown = {a["image_id"]: a for a in coco["annotations"]}
    images, truth, ys = [], [], []
    for im in coco["images"]:
        if im["id"] in shown:
            a = shown[im["id"]]
            rgb = cv2.imread(str(root / "test" / "images" / im["file_name"]))[..., ::-1]
            images.append(rgb)
            x, y, w, h = a["bbox"]
            truth.append([x, y, x + w, y + h])
            ys.append(index[names[a["category_id"]]])
    views = [whole_view(img, zm.input_size) for img in images]   # view 0, as the trainer makes it
    cut = len(zm.module._blocks)
    feats = cache_features(zm.module, [cut], [_tensor(views, zm)], len(views), False)[cut]
    m = zm.module
    top = nn.Sequential(m._conv_head, m._bn1, m.act).eval()
    boxes = object_boxes(top, m._fc.weight.detach().numpy(), feats, np.array(ys),
                         [img.shape[:2] for img in images], FOCUS_THRESHOLD)
    ious = np.array([iou(b, t) for b, t in zip(boxes, truth)])
    whole = np.array([iou([0, 0, img.shape[1], img.shape[0]], t) for img, t in zip(images, truth)])
    # far nearer the object than the whole photo (0.45 against 0.21 mean IoU here)
    assert len(boxes) >= 8 and ious.mean() >= 1.5 * whole.mean(), (ious, whole)
    assert np.mean(ious >= 0.3) >= 0.5, ious


def test_deeper_training_keeps_the_mean_of_its_epochs(trained, monkeypatch):
    """--average deeper (the default): a fit that trains blocks below the head ends with the
    mean of its weights at the end of epochs 2..last, and its held-out figures are the mean's;
    the head alone keeps its best epoch, as with --average none."""
    torch = pytest.importorskip("torch")
    import export.trainfit as trainfit
    from export.train import TrainConfig, train_model

    folder = scan_folder(trained[0] / "train")
    images = load_images(folder)
    seen: dict[int, list] = {}   # per fit (its top's cut): the weights at each held-out check
    real = trainfit._accuracy

    def watched(split, feats, labels, weight):
        seen.setdefault(split.cut, []).append({k: v.clone() for k, v in split.module.state_dict().items()})
        return real(split, feats, labels, weight)

    monkeypatch.setattr(trainfit, "_accuracy", watched)
    kw = dict(epochs=4, views=2, patience=4, progress=False)
    zm, report = train_model("efficientnet_lite0", folder, images, TrainConfig(tune_blocks=1, **kw))
    n = len(report.history)
    assert report.averaged == (2, n) and n >= 2
    assert f"mean weights of epochs 2-{n} of {n}" in report.summary()
    deeper = seen[len(zm.module._blocks) - 1]
    # checks: the start, then (plain, camera) after every epoch, then the mean's two
    assert len(deeper) == 1 + 2 * n + 2
    epochs = deeper[1:1 + 2 * n:2]
    kept = zm.module.state_dict()
    for name, value in kept.items():
        if value.is_floating_point():
            mean = sum(e[name] for e in epochs[1:]) / (n - 1)
            torch.testing.assert_close(value, mean, rtol=1e-5, atol=1e-6)
    assert not torch.equal(kept["_fc.weight"], epochs[-1]["_fc.weight"])

    _, one = train_model("efficientnet_lite0", folder, images,   # no epoch to average: the best
                         TrainConfig(tune_blocks=1, **dict(kw, epochs=1)))
    assert one.averaged is None and one.best_epoch == 1 and "epoch 1 of 1" in one.summary()
    seen.clear()
    _, alone = train_model("efficientnet_lite0", folder, images, TrainConfig(tune_blocks=0, **kw))
    assert alone.averaged is None and f"epoch {alone.best_epoch} of" in alone.summary()
    _, plain = train_model("efficientnet_lite0", folder, images,
                           TrainConfig(tune_blocks=0, average="none", **kw))
    assert (plain.best_acc, plain.camera_acc, plain.history) == (alone.best_acc, alone.camera_acc,
                                                                 alone.history)

