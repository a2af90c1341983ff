"""Numba kernels: CIoU01 against the recipe's formula, the assignment solver against SciPy (ties included), and the
batched spatial score's edge cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsa

from rewards.fast.kernels import MODE_PAPER, MODE_STRICT, ciou01, linear_sum_assignment, pairwise_ciou01, spatial_batch
from rewards.fast.kernels import warmup as kernels_warmup
from tests.rewards.helpers import ref_ciou01


def random_boxes(rng, n):
    xy = rng.random((n, 2))
    wh = rng.random((n, 2)) * 0.5
    wh[rng.random(n) < 0.1] = 0.0  # some degenerate boxes
    return np.hstack([xy, xy + wh])


def test_ciou01_matches_the_formula():
    rng = np.random.default_rng(1)
    a, b = random_boxes(rng, 300), random_boxes(rng, 300)
    for x, y in zip(a, b):
        assert ciou01(*x, *y) == pytest.approx(ref_ciou01(x, y), abs=1e-12)
        assert ciou01(*x, *y) == ciou01(*y, *x)  # symmetric operation by operation
    assert ciou01(0.0, 0.0, 0.5, 0.5, 0.0, 0.0, 0.5, 0.5) == pytest.approx(1.0, abs=1e-6)


def test_pairwise_ciou01():
    rng = np.random.default_rng(2)
    a, b = random_boxes(rng, 4), random_boxes(rng, 3)
    m = pairwise_ciou01(a, b)
    assert m.shape == (4, 3) and m[2, 1] == ciou01(*a[2], *b[1])
    assert pairwise_ciou01(np.zeros((0, 4)), b).shape == (0, 3)


@pytest.mark.parametrize("kind", ["real", "ties-int", "ties-few-values"])
def test_assignment_is_scipys_including_ties(kind):
    rng = np.random.default_rng({"real": 0, "ties-int": 1, "ties-few-values": 2}[kind])
    for _ in range(600):
        n, m = rng.integers(1, 9, size=2)
        if kind == "real":
            c = rng.random((n, m))
        elif kind == "ties-int":
            c = rng.integers(0, 3, size=(n, m)).astype(float)
        else:
            c = rng.choice([0.0, 1.0, 2.0, 2.5, 1e5], size=(n, m))
        rows, cols = scipy_lsa(c)
        expect = np.full(n, -1)
        expect[rows] = cols
        np.testing.assert_array_equal(linear_sum_assignment(c), expect)


def test_assignment_empty():
    assert linear_sum_assignment(np.zeros((0, 3))).shape == (0,)
    np.testing.assert_array_equal(linear_sum_assignment(np.zeros((2, 0))), [-1, -1])


def _batch(pred, gt, need=True, mode=MODE_PAPER, size=(1.0, 1.0), pcodes=None, gcodes=None, sim=None):
    pred = np.asarray(pred, dtype=np.float64).reshape(-1, 4)
    gt = np.asarray(gt, dtype=np.float64).reshape(-1, 4)
    pc = np.arange(len(pred)) if pcodes is None else np.asarray(pcodes)
    gc = np.arange(len(gt)) if gcodes is None else np.asarray(gcodes)
    simflat = np.zeros(1) if sim is None else np.asarray(sim, dtype=np.float64).ravel()
    s, ok = spatial_batch(
        pred,
        pc.astype(np.int64),
        np.array([0, len(pred)], dtype=np.int64),
        np.array([need]),
        np.array([0], dtype=np.int64),
        np.array([len(gt)], dtype=np.int64),
        gt,
        gc.astype(np.int64),
        np.array([size], dtype=np.float64),
        simflat,
        np.array([-1 if sim is None else 0], dtype=np.int64),
        mode,
        2.0,
        1.0,
    )
    return s[0], bool(ok[0])


def test_spatial_batch_edge_cases():
    box = [0.1, 0.1, 0.4, 0.5]
    assert _batch([], []) == (1.0, True)  # no GT and nothing predicted
    assert _batch([box], []) == (0.0, True)
    assert _batch([], [box]) == (0.0, True)
    assert _batch([box], [box], need=False) == (0.0, True)
    s, ok = _batch([box], [box])
    assert ok and s == pytest.approx(1.0, abs=1e-5)
    assert _batch([[0.5, 0.1, 0.1, 0.5]], [box]) == (0.0, False)  # inverted: not valid corners
    assert _batch([[0.1, 0.1, np.nan, 0.5]], [box])[1] is False
    assert _batch([[0.1, 0.1, np.inf, 0.5]], [box])[1] is False
    assert _batch([], [], mode=MODE_STRICT) == (0.0, True)


def test_spatial_batch_uses_a_similarity_matrix_when_given():
    a, b = [0.0, 0.0, 0.2, 0.2], [0.6, 0.6, 0.9, 0.9]
    # two predictions, two GT objects; names say pred 0 <-> gt 1, boxes say pred 0 <-> gt 0
    sim = [[0.0, 1.0], [1.0, 0.0]]
    s_names, _ = _batch([a, b], [a, b], sim=sim)
    s_boxes, _ = _batch([a, b], [a, b], sim=[[1.0, 1.0], [1.0, 1.0]])
    assert s_boxes == pytest.approx(1.0, abs=1e-5) and s_names < 0.5


def test_warmup_runs():
    kernels_warmup()
