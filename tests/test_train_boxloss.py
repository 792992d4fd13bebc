"""The box loss of export --train (issue 26): views pasted into a background photo keep the
box they were pasted in, and the loss keeps their class's CAM inside it. Real photos, real
EfficientNet-Lite0 weights."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from export.imagefolder import load_images, scan_folder


@pytest.fixture(scope="module")
def trainset(tmp_path_factory):
    """tools/make_training_set.py's set, as tests/test_train.py trains on: 8 images per class."""
    from tools.make_training_set import build

    root = tmp_path_factory.mktemp("trainset")
    build(root, per_class=8, test_per_class=4, seed=1)
    return root


def test_inside_masks():
    from export.trainaug import inside_masks

    m = inside_masks([None, np.array([32.0, 16, 96, 64]), np.array([0.0, 0, 224, 224])], (224, 224), (7, 7))
    assert m.shape == (3, 7, 7) and np.isnan(m[0]).all()          # no box: nothing said
    assert m[2].min() == m[2].max() == 1.0
    # x 32..96 covers cells 1 and 2 wholly; y 16..64 half of cell 0 and all of cell 1
    assert m[1][0, 1:3].tolist() == [0.5, 0.5] and m[1][1, 1:3].tolist() == [1.0, 1.0]
    assert m[1].sum() == pytest.approx(64 * 48 / 32 / 32) and m[1][2:].sum() == 0 and m[1][:, 3:].sum() == 0


def test_box_loss_keeps_the_cam_inside_pasted_views(trainset, monkeypatch):
    """Views pasted into a background photo (zoom-out, focus) carry their box; the training
    loss then also counts the share of the class's CAM outside it (``box_loss``). Trained
    with it (the head and the last block), new photos pasted into new scenes have less of
    their CAM outside the photo."""
    torch = pytest.importorskip("torch")
    import json

    from torch import nn

    import export.train as train_module
    from export.train import TrainConfig, _tensor, train_model
    from export.trainaug import inside_masks, zoom_out
    from export.trainfit import cache_features

    root = trainset
    folder = scan_folder(root / "train")
    images = load_images(folder)
    seen = []   # each fit's training data: (features, labels, inside masks)
    real = train_module.fit
    monkeypatch.setattr(train_module, "fit",
                        lambda split, train, *a: seen.append(train) or real(split, train, *a))
    kw = dict(epochs=4, views=4, patience=4, progress=False, tune_blocks=1)
    zm_on, _ = train_model("efficientnet_lite0", folder, images, TrainConfig(box_loss=1.0, **kw))
    x, y, inside = seen[0]
    assert inside.shape == (len(x), 7, 7) and len(y) == len(x)
    boxed = ~np.isnan(inside[:, 0, 0])
    assert not boxed[::4].any()                       # view 0, the whole image: no box
    assert not boxed[y == folder.labels.index("background")].any()
    assert boxed.any() and (inside[boxed].sum(axis=(1, 2)) >= 0.35 ** 2 * 49 * 0.9).all()
    focus = seen[1][2][len(x):]                       # the deeper fit's focus views: all boxed
    assert len(focus) and not np.isnan(focus).any()
    zm_off, _ = train_model("efficientnet_lite0", folder, images, TrainConfig(box_loss=0.0, **kw))

    coco = json.loads((root / "test" / "labels.json").read_text())
    names = {c["id"]: c["name"] for c in coco["categories"]}
    shown = {a["image_id"]: names[a["category_id"]] for a in coco["annotations"]}
    scenes = images[folder.labels.index("background")]
    rng = np.random.default_rng(5)
    views, boxes, ys = [], [], []
    for im in coco["images"]:
        if im["id"] in shown:
            rgb = cv2.imread(str(root / "test" / "images" / im["file_name"]))[..., ::-1]
            view, box = zoom_out(np.ascontiguousarray(rgb), (224, 224), scenes, rng)
            views.append(view)
            boxes.append(box)
            ys.append(folder.labels.index(shown[im["id"]]))
    outside = 1.0 - inside_masks(boxes, (224, 224), (7, 7))

    def share(zm) -> float:
        m = zm.module.eval()
        cut = len(m._blocks)
        feats = cache_features(m, [cut], [_tensor(views, zm)], len(views), False)[cut]
        with torch.no_grad():
            f = nn.Sequential(m._conv_head, m._bn1, m.act)(torch.from_numpy(feats.astype(np.float32))).numpy()
        cam = np.maximum(np.einsum("bchw,bc->bhw", f, m._fc.weight.detach().numpy()[ys]), 0)
        return float(np.mean((cam * outside).sum(axis=(1, 2)) / (cam.sum(axis=(1, 2)) + 1e-6)))

    on, off = share(zm_on), share(zm_off)   # 0.13 against 0.28 here
    assert len(views) >= 8 and on < 0.8 * off, (on, off)
