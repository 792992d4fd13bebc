"""CAM math against hand computations (pure numpy, no model)."""

from __future__ import annotations

import numpy as np
import pytest

from realtime.model.cam import CamSmoother, compute_cams, normalize_cams, softmax, top_k


def test_softmax_matches_hand_and_is_stable() -> None:
    p = softmax(np.array([0.0, np.log(3.0)]))
    np.testing.assert_allclose(p, [0.25, 0.75], rtol=1e-6)
    big = softmax(np.array([1000.0, 1000.0, 1000.0 + np.log(2.0)]))
    np.testing.assert_allclose(big, [0.25, 0.25, 0.5], rtol=1e-6)
    assert p.dtype == np.float32


def test_top_k_best_first_ties_by_index() -> None:
    probs = np.array([0.1, 0.4, 0.1, 0.3, 0.1])
    assert top_k(probs, 1).tolist() == [1]
    assert top_k(probs, 3).tolist() == [1, 3, 0]
    assert top_k(probs, 5).tolist() == [1, 3, 0, 2, 4]


@pytest.mark.parametrize("k", [0, 6])
def test_top_k_out_of_range(k: int) -> None:
    with pytest.raises(ValueError, match=rf"k must be between 1 and the number of classes \(5\), "
                                         rf"got {k}"):
        top_k(np.zeros(5), k)


def test_compute_cams_by_hand() -> None:
    # 2 channels on a 2x2 grid; CAM_c(y, x) = sum_k W[c, k] F[k, y, x], then ReLU
    f = np.array([[[1.0, 2.0], [0.0, 4.0]],
                  [[3.0, 0.0], [1.0, 1.0]]], np.float32)
    w = np.array([[1.0, 1.0], [2.0, -1.0], [-1.0, 0.0]], np.float32)
    cams = compute_cams(f, w, np.array([1, 0]))
    expected_c1 = [[2 * 1 - 3, 2 * 2 - 0], [2 * 0 - 1, 2 * 4 - 1]]  # [[-1, 4], [-1, 7]]
    expected_c0 = [[1 + 3, 2 + 0], [0 + 1, 4 + 1]]
    np.testing.assert_allclose(cams[0], np.maximum(expected_c1, 0))
    np.testing.assert_allclose(cams[1], expected_c0)
    assert cams.shape == (2, 2, 2) and cams.dtype == np.float32


def test_cam_mean_is_logit_without_bias() -> None:
    # the CAM identity: spatial mean of W_c . F equals GAP(F) . W_c (before the ReLU)
    rng = np.random.default_rng(0)
    f = rng.random((8, 3, 5), dtype=np.float32)
    w = rng.standard_normal((4, 8)).astype(np.float32)
    w[2] = np.abs(w[2])  # positive weights on positive features: ReLU changes nothing
    cam = compute_cams(f, w, np.array([2]))[0]
    np.testing.assert_allclose(cam.mean(), f.mean(axis=(1, 2)) @ w[2], rtol=1e-5)


def test_compute_cams_channel_mismatch() -> None:
    with pytest.raises(ValueError, match=r"classifier weight \(3, 4\) does not match 2 feature"):
        compute_cams(np.zeros((2, 3, 3)), np.zeros((3, 4)), np.array([0]))


def test_normalize_max_and_minmax() -> None:
    cams = np.array([[[0.0, 2.0], [1.0, 4.0]], [[0.0, 0.0], [0.0, 0.0]],
                     [[2.0, 3.0], [4.0, 6.0]]], np.float32)
    out = normalize_cams(cams, "max")
    np.testing.assert_allclose(out[0], [[0, 0.5], [0.25, 1]])
    np.testing.assert_allclose(out[1], 0)  # all-zero stays zero, no NaN
    np.testing.assert_allclose(out[2], [[1 / 3, 0.5], [2 / 3, 1]], rtol=1e-6)
    mm = normalize_cams(cams, "minmax")
    np.testing.assert_allclose(mm[2], [[0, 0.25], [0.5, 1]])
    np.testing.assert_allclose(mm[1], 0)
    with pytest.raises(ValueError, match="normalize mode must be 'max' or 'minmax', got 'sum'"):
        normalize_cams(cams, "sum")


def test_smoother_ema_same_class_and_reset_on_change() -> None:
    s = CamSmoother(0.5)
    a = np.ones((1, 2, 2), np.float32)
    z = np.zeros((1, 2, 2), np.float32)
    np.testing.assert_allclose(s(np.array([7]), a), 1.0)        # first frame: as is
    np.testing.assert_allclose(s(np.array([7]), z), 0.5)        # same class: EMA
    np.testing.assert_allclose(s(np.array([7]), z), 0.25)
    np.testing.assert_allclose(s(np.array([3]), a), 1.0)        # new class: fresh
    np.testing.assert_allclose(s(np.array([7]), z), 0.0)        # 7 left the top-k: fresh
    s.reset()
    np.testing.assert_allclose(s(np.array([7]), a), 1.0)


def test_smoother_off_and_bad_alpha() -> None:
    cams = np.ones((1, 2, 2), np.float32)
    assert CamSmoother(0.0)(np.array([1]), cams) is cams
    with pytest.raises(ValueError, match=r"smooth must be in \[0, 1\), got 1.0"):
        CamSmoother(1.0)
