"""Quantization-aware fine-tuning by distillation from FP32 (``--int8 --qat``).

Before ONNX Runtime's post-training quantization (export/quantize.py), a copy of the
FP32 EfficientNet-Lite is fine-tuned to agree with the FP32 model while it computes the
way the INT8 file will: fake quantization that mimics the QDQ pass (BatchNorm folded with
its running statistics frozen; per-output-channel symmetric weights on ONNX Runtime's
grid, integer range [-64, 64] for the portable target (7-bit) and [-127, 127] for vnni;
uint8 asymmetric per-tensor activations on every tensor a quantized node reads or writes,
ranges from min/max on the calibration frames at the runtime's size), the first
``float_first`` convolutions (with the residual Adds among them: export/graph.py keeps
those float too) and the classifier head float, gradients straight through
the rounding. The teacher is the FP32 model itself; the loss is
T^2 KL(softmax(FP32 logits / T) || softmax(student logits / T)) (T = 4) plus the relative
squared error of the features (the CAMs), on random square crops (mirrored, brightness changed) of the
UNLABELLED calibration frames, prepared as the runtime prepares them. No labels needed.

The float blocks in front are frozen, so what they compute is cached once per view and
only the quantized part is trained (a few minutes on a 2-core laptop CPU). The result is
the fine-tuned FLOAT module; the export writes it and quantizes it with the unchanged
ONNX Runtime pass, and verifies the INT8 file against the ORIGINAL FP32 model.
docs/EDGE.md has the measurements behind the defaults.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["QatConfig", "QatLite", "fine_tune", "square_views", "weight_grid_error"]

WEIGHT_RANGE = {"portable": (-64, 64), "vnni": (-127, 127)}  # ONNX Runtime's symmetric ranges


@dataclass
class QatConfig:
    """Fine-tuning settings; the defaults were chosen on views of scikit-image's
    calibration photos (docs/EDGE.md), never on an evaluation set."""

    steps: int = 300
    batch: int = 8
    lr: float = 5e-6              # Adam; 3e-5 made the student drift away from FP32
    feature_weight: float = 1.0   # relative feature error added to the KL
    temperature: float = 4.0      # of the KL's softmaxes (T^2 * KL); 1: val 0.942, 4: 1.000
    views: int = 256              # cached augmented views of the calibration frames
    size: int = 256               # square side: the runtime's shorter side for Lite0
    recalib_every: int = 100      # activation ranges re-measured on the student this often
    seed: int = 0
    target: str = "portable"
    float_first: int = 9
    optional: bool = False        # the default (no --qat): plain INT8 where QAT cannot run
    log: list = field(default_factory=list)  # (step, loss, batch agreement)


def square_views(frames: list[np.ndarray], count: int, seed: int) -> list[np.ndarray]:
    """``count`` square crops (30-100% of the shorter side) of the frames in turn, mirrored
    half the time, brightness changed half the time; deterministic for a seed."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        p = frames[i % len(frames)]
        h, w = p.shape[:2]
        s = max(8, int(min(h, w) * rng.uniform(0.3, 1.0)))
        y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
        v = p[y:y + s, x:x + s]
        if rng.random() < 0.5:
            v = v[:, ::-1]
        if rng.random() < 0.5:
            v = np.clip(v.astype(np.float32) * rng.uniform(0.6, 1.4), 0, 255).astype(np.uint8)
        out.append(np.ascontiguousarray(v))
    return out


def _fold(conv, bn) -> tuple[torch.Tensor, torch.Tensor]:
    """Conv weight and bias with BatchNorm (running statistics) folded in, as ONNX has them."""
    s = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return conv.weight * s[:, None, None, None], bn.bias - bn.running_mean * s


def _conv(conv, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    if conv.pad is not None:
        x = conv.pad(x)
    return F.conv2d(x, w, b, conv.stride, conv.padding, conv.dilation, conv.groups)


def _fq_weight(w: torch.Tensor, target: str) -> torch.Tensor:
    qmin, qmax = WEIGHT_RANGE[target]
    absmax = w.detach().abs().amax(dim=(1, 2, 3)).clamp_min(1e-12)
    scale = (2 * absmax / (qmax - qmin)).float()
    zero = torch.zeros_like(scale, dtype=torch.int32)
    return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, qmin, qmax)


def weight_grid_error(w: np.ndarray, target: str = "portable") -> float:
    """Largest distance, in grid steps, of a weight [O, ...] from ONNX Runtime's
    per-output-channel symmetric grid for ``target`` (0: exactly on it)."""
    qmin, qmax = WEIGHT_RANGE[target]
    w = w.reshape(w.shape[0], -1).astype(np.float64)
    scale = np.maximum(np.abs(w).max(axis=1, keepdims=True), 1e-12) * 2 / (qmax - qmin)
    return float(np.abs(w / scale - np.round(w / scale)).max())


class QatLite(torch.nn.Module):
    """EfficientNet-Lite with fake quantization after its first ``float_first`` convs.

    ``prefix(x)`` runs the float blocks in front; ``rest(t)`` the quantized part ->
    (logits, features). ``fake = False`` gives the plain float model through the same code.
    The wrapped module keeps its own structure, so it exports as usual."""

    def __init__(self, module, float_first: int = 9, target: str = "portable"):
        super().__init__()
        if not hasattr(module, "_blocks") or target not in WEIGHT_RANGE:
            raise ValueError("quantization-aware fine-tuning is for the EfficientNet-Lite "
                             f"models and the targets {', '.join(WEIGHT_RANGE)}")
        self.m, self.target = module, target
        self.ranges: dict[str, list[float]] = {}
        self.calibrating, self.fake = False, True
        n, self.first_q = 1, None  # the stem is conv 0
        for i, blk in enumerate(module._blocks):
            if n == float_first:
                self.first_q = i
            n += 3 if blk._expand_conv is not None else 2
        if float_first == 0 or self.first_q is None:
            raise ValueError(f"--qat needs --float-first on a block boundary, got {float_first}")
        for p in module.parameters():
            p.requires_grad_(False)
        tuned = [*list(module._blocks)[self.first_q:], module._conv_head, module._bn1]
        for p in (p for mod in tuned for p in mod.parameters()):
            p.requires_grad_(True)

    def _w(self, w: torch.Tensor) -> torch.Tensor:
        return _fq_weight(w, self.target) if self.fake else w

    def _act(self, t: torch.Tensor, key: str) -> torch.Tensor:
        if not self.fake:
            return t
        if self.calibrating:
            r = self.ranges.setdefault(key, [0.0, 0.0])  # the range always holds 0
            r[0], r[1] = min(r[0], float(t.min())), max(r[1], float(t.max()))
            return t
        lo, hi = self.ranges[key]
        scale = max((hi - lo) / 255.0, 1e-12)
        return torch.fake_quantize_per_tensor_affine(t, scale, int(round(-lo / scale)), 0, 255)

    def prefix(self, x: torch.Tensor) -> torch.Tensor:
        m = self.m
        x = m.act(m._bn0(m._conv_stem(x)))
        for blk in list(m._blocks)[:self.first_q]:
            x = blk(x)
        return x

    def _block(self, i: int, blk, x: torch.Tensor) -> torch.Tensor:
        inp = x = self._act(x, f"b{i}.in")
        for name, bn, relu in (("_expand_conv", getattr(blk, "_bn0", None), True),
                               ("_depthwise_conv", blk._bn1, True),
                               ("_project_conv", blk._bn2, False)):
            conv = getattr(blk, name)
            if conv is None:
                continue
            w, b = _fold(conv, bn)
            x = _conv(conv, x, self._w(w), b)
            x = self._act(F.relu6(x) if relu else x, f"b{i}{name}")
        if blk.residual:
            x = self._act(x + inp, f"b{i}.add")
        return x

    def rest(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        m = self.m
        for i, blk in enumerate(m._blocks):
            if i >= self.first_q:
                x = self._block(i, blk, x)
        w, b = _fold(m._conv_head, m._bn1)
        feats = self._act(F.relu6(_conv(m._conv_head, x, self._w(w), b)), "head")
        if getattr(m, "_attention", None) is not None:  # a model trained with --attention
            feats = m._attention(feats)
        return m._fc(feats.mean(dim=(2, 3))), feats

    def calibrate(self, cached: list[torch.Tensor]) -> None:
        """Activation ranges: min/max over the prefix outputs ``cached`` (any shapes)."""
        self.ranges, self.calibrating = {}, True
        try:
            with torch.no_grad():
                for c in cached:
                    self.rest(c)
        finally:
            self.calibrating = False


def _prepare(zm, images: list[np.ndarray], imgsz: int | None) -> list[torch.Tensor]:
    """BGR frames -> [1, 3, H, W] as the runtime prepares them: at the longer side
    ``imgsz``, or (None) at the runtime's default size for each frame."""
    from realtime.model.engine import default_imgsz
    from realtime.model.format import ModelInfo
    from realtime.model.preprocess import prepare_frame

    info = ModelInfo(path="", arch="", weights="", labels=("",), color=zm.color, mean=zm.mean,
                     std=zm.std, input_size=zm.input_size, stride=32, precision="fp32", format=1)
    return [torch.from_numpy(np.ascontiguousarray(prepare_frame(
        v, imgsz or default_imgsz(info, *v.shape[:2]), 32, zm.mean, zm.std,
        zm.color == "RGB")[0], np.float32)) for v in images]


def fine_tune(zm, frames: list[np.ndarray], cfg: QatConfig,
              progress: Callable[[str], None] | None = None) -> tuple[object, float]:
    """QAT-KD of a copy of ``zm.module`` on the BGR calibration ``frames``;
    (the fine-tuned float module in eval mode, seconds taken). ``zm`` is left unchanged."""
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    teacher = QatLite(copy.deepcopy(zm.module).eval(), cfg.float_first, cfg.target)
    teacher.fake = False
    student = QatLite(copy.deepcopy(zm.module).eval(), cfg.float_first, cfg.target)
    with torch.no_grad():
        cache = [student.prefix(x) for x in _prepare(zm, square_views(frames, cfg.views,
                                                                       cfg.seed), cfg.size)]
        soft, feat = zip(*[teacher.rest(c) for c in cache])
        calib = [student.prefix(x) for x in _prepare(zm, frames, None)]
    student.calibrate(calib)
    if progress:
        progress(f"QAT: cached {len(cache)} views in {time.perf_counter() - t0:.0f} s")
    params = [p for p in student.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=cfg.lr)
    rng = np.random.default_rng(cfg.seed)
    for step in range(1, cfg.steps + 1):
        idx = rng.choice(len(cache), min(cfg.batch, len(cache)), replace=False)
        x, t = torch.cat([cache[i] for i in idx]), torch.cat([soft[i] for i in idx])
        logits, fs = student.rest(x)
        temp = cfg.temperature
        loss = temp * temp * F.kl_div(F.log_softmax(logits / temp, 1), F.log_softmax(t / temp, 1),
                                      reduction="batchmean", log_target=True)
        if cfg.feature_weight:  # keep the features (the CAMs) where FP32 has them
            ft = torch.cat([feat[i] for i in idx])
            loss = loss + cfg.feature_weight * ((fs - ft) ** 2).mean() / (ft ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        agree = float((logits.argmax(1) == t.argmax(1)).float().mean())
        cfg.log.append((step, float(loss.detach()), agree))
        if step % cfg.recalib_every == 0 and step < cfg.steps:
            student.calibrate(calib)
        if progress and (step % 50 == 0 or step == cfg.steps):
            recent = cfg.log[-50:]
            progress(f"QAT: step {step}/{cfg.steps}  loss {np.mean([r[1] for r in recent]):.4f}"
                     f"  batch agreement {np.mean([r[2] for r in recent]):.3f}  "
                     f"{time.perf_counter() - t0:.0f} s")
    return student.m.eval(), time.perf_counter() - t0
