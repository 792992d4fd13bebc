"""The trainer's inner part: a Lite model cut in two, the frozen bottom's cache, the epochs.

``export.train`` prepares the views and decides what to train; this module runs it. The
bottom's features can be cached at two cuts in one pass (``cache_features``), so that
``--tune-blocks auto`` can train the head alone and then, when the held-out estimates
disagree, the last blocks with it too, without decoding or augmenting an image twice;
``object_boxes`` says where the head alone finds each image's object (for the focus views).
Views pasted into a background photo carry their box; the loss then adds the share of their
class's CAM outside it (``_outside``, weighted by ``config.box_loss``), which keeps the maps
on the object.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from .trainaug import cutmix

__all__ = ["AVERAGES", "BOX_LOSS", "Fit", "Split", "cache_features", "fit", "object_boxes"]

log = logging.getLogger(__name__)


class Split:
    """A Lite model cut in two: the frozen bottom (cached) and the trainable top."""

    def __init__(self, module, num_classes: int, tune_blocks: int, attention: float = 0.0):
        import torch
        from torch import nn

        blocks = module._blocks   # tune_blocks in 0..len(blocks): export.train checks it
        self.cut = len(blocks) - tune_blocks
        self.module = module
        fc = nn.Linear(module._fc.in_features, num_classes)
        nn.init.normal_(fc.weight, std=0.01)
        nn.init.zeros_(fc.bias)
        module._fc = fc
        att = [module.add_attention(attention)] if attention > 0 else []
        self.top = nn.Sequential(*blocks[self.cut:], module._conv_head, module._bn1, module.act, *att)
        self.fc, self.dropout = fc, nn.Dropout(0.2)
        self.new = list(fc.parameters()) + [p for a in att for p in a.parameters()]
        for p in module.parameters():
            p.requires_grad_(False)
        for p in list(self.top.parameters()) + self.new:
            p.requires_grad_(True)
        self.top.to(memory_format=torch.channels_last)   # 1.2-1.3x faster on a CPU (fit's end undoes it)
        self.torch = torch

    def head(self, x):
        return self.classify(self.maps(x))

    def maps(self, x):
        """The head's feature maps [B, C, h, w] of cached features ``x``."""
        return self.top(x.contiguous(memory_format=self.torch.channels_last))

    def classify(self, f):
        return self.fc(self.dropout(f.mean(dim=(2, 3))))

    def train_mode(self, on: bool) -> None:
        # BatchNorm keeps its ImageNet statistics (small batches of few classes would
        # ruin them); only dropout switches.
        self.module.eval()
        self.dropout.train(on)


def cache_features(module, cuts: list[int], batches, total: int, progress: bool
                   ) -> dict[int, np.ndarray]:
    """Run the frozen network on every prepared batch up to the deepest of ``cuts``
    (a block index: the features entering that block; len(blocks): after the last);
    float16 features [N, C, h, w] per cut."""
    import torch
    from tqdm import tqdm

    blocks, deepest = module._blocks, max(cuts)
    out: dict[int, list[np.ndarray]] = {c: [] for c in cuts}
    module.to(memory_format=torch.channels_last)   # 1.5x faster on a CPU; undone below
    with torch.no_grad(), tqdm(total=total, desc="caching features", unit="view",
                               disable=None if progress else True, leave=False) as bar:
        for x in batches:
            x = torch.from_numpy(x).contiguous(memory_format=torch.channels_last)
            y = module.act(module._bn0(module._conv_stem(x)))
            for i in range(deepest + 1):
                if i in out:
                    out[i].append(y.numpy().astype(np.float16))
                if i < deepest:
                    y = blocks[i](y)
            bar.update(len(x))
    module.to(memory_format=torch.contiguous_format)
    return {c: np.concatenate(v) for c, v in out.items()}


AVERAGE_FROM = 2   # the first epoch whose weights enter the average (the first is far off)
AVERAGES = ("none", "deeper", "all")
# The weight of the share of a view's CAM outside the box it was pasted in (``_outside``),
# chosen on the hard sets' validation frames (docs/TRAINING.md).
BOX_LOSS = 1.0


def _averages(which: str, split: Split) -> bool:
    """Whether this fit averages its epochs' weights: ``which`` is "all", "deeper" (only
    where blocks below the head are trained) or "none"."""
    return which == "all" or (which == "deeper" and split.cut < len(split.module._blocks))


def _accumulate(total: dict | None, state: dict) -> dict:
    """The running sum of ``state``'s floating-point tensors (others: the latest)."""
    if total is None:
        return {n: v.detach().clone() for n, v in state.items()}
    for n, v in state.items():
        if v.is_floating_point():
            total[n] += v.detach()
        else:
            total[n] = v.detach().clone()
    return total


def _outside(split: Split, f, y, inside: np.ndarray):
    """The share of each boxed view's class's positive CAM outside its box (``inside``: each
    cell's fraction inside it, NaN for a view without one), summed over the batch's views
    with a box and divided by the batch's size (a view without one adds 0)."""
    torch = split.torch
    has = ~np.isnan(inside[:, 0, 0])
    if not has.any():
        return f.sum() * 0.0
    rows = torch.from_numpy(np.flatnonzero(has))
    cam = torch.relu(torch.einsum("bchw,bc->bhw", f[rows], split.fc.weight[y[rows]]))
    out = 1.0 - torch.from_numpy(inside[has].astype(np.float32))
    return ((cam * out).sum(dim=(1, 2)) / (cam.sum(dim=(1, 2)) + 1e-6)).sum() / len(y)


def _accuracy(split: Split, feats: np.ndarray, labels: np.ndarray, weight) -> tuple[float, float]:
    torch = split.torch
    split.train_mode(False)
    with torch.no_grad():
        logits = torch.cat([split.head(torch.from_numpy(feats[i:i + 64].astype(np.float32)))
                            for i in range(0, len(feats), 64)])
        y = torch.from_numpy(labels)
        loss = float(torch.nn.functional.cross_entropy(logits, y, weight=weight))
    return float((logits.argmax(1) == y).float().mean()), loss


@dataclass
class Fit:
    """One training run's outcome: the held-out figures of its best epoch."""

    initial_acc: float = 0.0
    best_acc: float = 0.0
    camera_acc: float = 0.0
    best_epoch: int = 0
    history: list[tuple[int, float, float]] = field(default_factory=list)  # epoch, loss, acc
    averaged: tuple[int, int] | None = None   # first and last epoch whose weights were averaged


def fit(split: Split, train: tuple[np.ndarray, np.ndarray], held: tuple[np.ndarray, np.ndarray],
        camera: np.ndarray, config, rng: np.random.Generator) -> Fit:
    """Train ``split``'s top on cached features (early stopping on the mean of the plain and
    the camera-scale held-out accuracy). The module ends with its best epoch's weights, or,
    where ``config.average`` asks for this fit, with the mean of its weights at the end of
    every epoch from ``AVERAGE_FROM`` (the second) to the last one run; the held-out figures
    are then the mean's."""
    from tqdm import tqdm

    torch = split.torch
    (train_x, train_y, train_in), (held_x, held_y) = train, held
    k = split.fc.out_features
    counts = np.bincount(train_y, minlength=k).astype(np.float64)
    weight = torch.tensor(counts.sum() / (k * np.maximum(counts, 1)), dtype=torch.float32)
    result = Fit()
    result.initial_acc, _ = _accuracy(split, held_x, held_y, weight)
    new = {id(p) for p in split.new}
    opt = torch.optim.AdamW([
        {"params": split.new, "lr": config.lr},
        {"params": [p for p in split.top.parameters() if id(p) not in new], "lr": config.lr / 10}],
        weight_decay=config.weight_decay)
    best, best_state, bad = (-1.0, float("inf")), None, 0
    average = _averages(config.average, split)
    total_state, averaged = None, 0
    epochs = tqdm(range(1, config.epochs + 1), desc="training", unit="epoch",
                  disable=None if config.progress else True, leave=False)
    for epoch in epochs:
        split.train_mode(True)
        order = rng.permutation(len(train_x))
        total = 0.0
        for i in range(0, len(order), config.batch):
            idx = order[i:i + config.batch]
            x, y = torch.from_numpy(train_x[idx].astype(np.float32)), torch.from_numpy(train_y[idx])
            if rng.random() < config.cutmix:
                x, target = cutmix(x, y, k, rng)
                loss = torch.nn.functional.cross_entropy(split.head(x), target, weight=weight)
            else:
                f = split.maps(x)
                loss = torch.nn.functional.cross_entropy(split.classify(f), y, weight=weight,
                                                         label_smoothing=0.1)
                if config.box_loss > 0:
                    loss = loss + config.box_loss * _outside(split, f, y, train_in[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(idx)
        plain, held_loss = _accuracy(split, held_x, held_y, weight)
        cam, camera_loss = _accuracy(split, camera, held_y, weight)
        # early stopping on both estimates: the plain split and the same images seen smaller
        acc, held_loss = (plain + cam) / 2, (held_loss + camera_loss) / 2
        result.history.append((epoch, total / len(order), plain))
        epochs.set_postfix(loss=f"{total / len(order):.3f}", heldout_acc=f"{acc:.3f}")
        log.info("epoch %d/%d: train loss %.3f, held-out accuracy %.3f (loss %.3f)",
                 epoch, config.epochs, total / len(order), acc, held_loss)
        if average and epoch >= AVERAGE_FROM:
            total_state = _accumulate(total_state, split.module.state_dict())
            averaged += 1
        if (acc, -held_loss) > (best[0], -best[1]):
            best, bad = (acc, held_loss), 0
            result.best_acc, result.camera_acc, result.best_epoch = plain, cam, epoch
            if not average or epoch < AVERAGE_FROM:   # the mean (if any epoch enters it)
                best_state = {n: p.detach().clone() for n, p in split.module.state_dict().items()}
        else:
            bad += 1
            if bad >= config.patience:
                log.info("early stop: no better held-out accuracy for %d epochs", bad)
                break
    if averaged:
        split.module.load_state_dict({n: v / averaged if v.is_floating_point() else v
                                      for n, v in total_state.items()})
        result.best_acc, _ = _accuracy(split, held_x, held_y, weight)
        result.camera_acc, _ = _accuracy(split, camera, held_y, weight)
        result.averaged = (AVERAGE_FROM, len(result.history))
    else:
        split.module.load_state_dict(best_state)
    split.module.to(memory_format=torch.contiguous_format)
    split.module.eval()
    return result


def object_boxes(top, weight: np.ndarray, feats: np.ndarray, labels: np.ndarray,
                 shapes: list[tuple[int, int]], threshold: float = 0.5) -> list[np.ndarray]:
    """Where a trained head finds each image's own class: the box [x1, y1, x2, y2] in image
    pixels of the strongest region of the class's CAM (the runtime's box rule at
    ``threshold``; the whole image when the map is empty). ``top`` maps the cached
    ``feats`` to the head's feature maps (torch, in eval mode), ``weight`` is the
    classifier's [K, C], ``shapes`` the images' (H, W)."""
    import torch

    from realtime.model.boxes import boxes_from_cam, scale_boxes
    from realtime.model.cam import compute_cams, normalize_cams

    out = []
    with torch.no_grad():
        for i in range(0, len(feats), 64):
            maps = top(torch.from_numpy(feats[i:i + 64].astype(np.float32))).numpy()
            for f, c, (h, w) in zip(maps, labels[i:i + 64], shapes[i:i + 64]):
                cam = normalize_cams(compute_cams(f, weight, np.array([c])))[0]
                boxes, _ = boxes_from_cam(cam, threshold)
                out.append(scale_boxes(boxes[:1], cam.shape, h, w)[0] if len(boxes)
                           else np.array([0, 0, w, h]))
    return out
