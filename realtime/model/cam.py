"""Class Activation Maps in plain numpy (Zhou et al., CVPR 2016).

For a GAP-CNN, ``logits = mean_xy(F) . W^T + b``, so the map
``CAM_c(x, y) = sum_k W[c, k] * F[k, x, y]`` is where the evidence for class c
sits. Only the top-k classes' maps are computed, at the features' own (tiny)
resolution, which is cheap enough to ignore next to the network itself.
"""

from __future__ import annotations

import numpy as np

__all__ = ["CAM_EPS", "CamSmoother", "compute_cams", "normalize_cams", "softmax", "top_k"]

CAM_EPS = 1e-7  # floor of a map's maximum in normalize_cams (export/incam.py uses it too)
_EPS = CAM_EPS


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis (float32)."""
    z = np.asarray(logits)
    e = np.exp((z - z.max(axis=-1, keepdims=True)).astype(np.float32))
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest entries of a 1-D array, best first (ties: lower index)."""
    probs = np.asarray(probs)
    if probs.ndim != 1:
        raise ValueError(f"top_k expects a 1-D array of class scores, got shape {probs.shape}")
    if not 1 <= k <= probs.shape[0]:
        raise ValueError(f"k must be between 1 and the number of classes ({probs.shape[0]}), "
                         f"got {k}")
    if k == probs.shape[0]:
        return np.argsort(-probs, kind="stable")
    part = np.argpartition(-probs, k - 1)[:k]
    return part[np.lexsort((part, -probs[part]))]


def compute_cams(features: np.ndarray, weight: np.ndarray, class_ids: np.ndarray) -> np.ndarray:
    """Raw CAMs ``ReLU(W[c] . F)`` for each class in ``class_ids``: float32 [k, h, w].

    ``features`` is one image's [C, h, w], ``weight`` the classifier's [K, C].
    The bias is left out: a constant per class, it moves no evidence around.
    """
    c, h, w = features.shape
    if weight.ndim != 2 or weight.shape[1] != c:
        raise ValueError(f"classifier weight {weight.shape} does not match {c} feature channels")
    w_sel = np.asarray(weight[np.asarray(class_ids)], dtype=np.float32)
    cams = w_sel @ np.asarray(features, dtype=np.float32).reshape(c, h * w)
    np.maximum(cams, 0.0, out=cams)
    return cams.reshape(len(w_sel), h, w)


def normalize_cams(cams: np.ndarray, mode: str = "max") -> np.ndarray:
    """Scale each map to [0, 1] (float32, new array).

    ``"max"`` divides by the map's maximum (zero stays zero: after the ReLU a
    zero means "no evidence"); ``"minmax"`` also subtracts the minimum, which
    stretches maps that are positive everywhere. An all-zero map stays zero.
    """
    cams = np.asarray(cams, dtype=np.float32)
    flat = cams.reshape(cams.shape[0], -1)
    hi = flat.max(axis=1)[:, None, None]
    if mode == "max":
        return cams / np.maximum(hi, _EPS)
    if mode == "minmax":
        lo = flat.min(axis=1)[:, None, None]
        return (cams - lo) / np.maximum(hi - lo, _EPS)
    raise ValueError(f"normalize mode must be 'max' or 'minmax', got {mode!r}")


class CamSmoother:
    """Exponential moving average of each class's CAM across video frames.

    ``out = alpha * previous + (1 - alpha) * current`` for a class that was also
    in the previous frame's top-k at the same map size; any other class (or a
    size change) starts afresh, so a new class never inherits another's map.
    ``alpha = 0`` switches smoothing off.
    """

    def __init__(self, alpha: float = 0.0):
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f"smooth must be in [0, 1), got {alpha!r}")
        self.alpha = float(alpha)
        self._prev: dict[int, np.ndarray] = {}

    def reset(self) -> None:
        """Forget all history (call between unrelated videos or images)."""
        self._prev = {}

    def __call__(self, class_ids: np.ndarray, cams: np.ndarray) -> np.ndarray:
        """Smoothed copy of ``cams`` [k, h, w] (normalised maps) for ``class_ids``."""
        if self.alpha == 0.0:
            return cams
        out = np.empty_like(cams)
        for i, cid in enumerate(int(c) for c in class_ids):
            prev = self._prev.get(cid)
            if prev is not None and prev.shape == cams[i].shape:
                out[i] = self.alpha * prev + (1.0 - self.alpha) * cams[i]
            else:
                out[i] = cams[i]
        self._prev = {int(c): out[i] for i, c in enumerate(class_ids)}
        return out
