"""Numba-jitted numeric kernels for the spatial reward.

``pairwise_ciou`` computes Complete-IoU between two box sets and
``hungarian`` solves the rectangular assignment problem (min cost), both in
nopython mode.  ``cache=True`` keeps the compiled code between processes.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_EPS = 1e-9


@njit(cache=True)
def ciou(a, b):
    """Complete IoU of boxes a, b = (x1, y1, x2, y2); in [-1, 1]."""
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    inter = max(iw, 0.0) * max(ih, 0.0)
    wa, ha = a[2] - a[0], a[3] - a[1]
    wb, hb = b[2] - b[0], b[3] - b[1]
    union = wa * ha + wb * hb - inter
    iou = inter / union if union > _EPS else (1.0 if (wa == wb and ha == hb and a[0] == b[0] and a[1] == b[1]) else 0.0)
    cw = max(a[2], b[2]) - min(a[0], b[0])
    ch = max(a[3], b[3]) - min(a[1], b[1])
    c2 = cw * cw + ch * ch
    dx = (a[0] + a[2] - b[0] - b[2]) * 0.5
    dy = (a[1] + a[3] - b[1] - b[3]) * 0.5
    rho2 = dx * dx + dy * dy
    dist = rho2 / c2 if c2 > _EPS else 0.0
    v = (4.0 / (math.pi * math.pi)) * (math.atan(wb / (hb + _EPS)) - math.atan(wa / (ha + _EPS))) ** 2
    alpha = v / (1.0 - iou + v + _EPS) if iou >= 0.5 or v > 0 else 0.0
    out = iou - dist - alpha * v
    if out < -1.0:
        out = -1.0
    if out > 1.0:
        out = 1.0
    return out


@njit(cache=True)
def pairwise_ciou(pred, gt):
    n, m = pred.shape[0], gt.shape[0]
    out = np.empty((n, m), dtype=np.float64)
    for i in range(n):
        for j in range(m):
            out[i, j] = ciou(pred[i], gt[j])
    return out


@njit(cache=True)
def _hungarian_rows_le_cols(cost):
    # O(n^2 m) shortest augmenting path (Kuhn-Munkres with potentials); n <= m
    n, m = cost.shape
    inf = 1e300
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    p = np.zeros(m + 1, dtype=np.int64)
    way = np.zeros(m + 1, dtype=np.int64)
    for i in range(1, n + 1):
        p[0] = i
        j0 = 0
        minv = np.full(m + 1, inf)
        used = np.zeros(m + 1, dtype=np.bool_)
        while True:
            used[j0] = True
            i0 = p[j0]
            delta = inf
            j1 = 0
            for j in range(1, m + 1):
                if not used[j]:
                    cur = cost[i0 - 1, j - 1] - u[i0] - v[j]
                    if cur < minv[j]:
                        minv[j] = cur
                        way[j] = j0
                    if minv[j] < delta:
                        delta = minv[j]
                        j1 = j
            for j in range(m + 1):
                if used[j]:
                    u[p[j]] += delta
                    v[j] -= delta
                else:
                    minv[j] -= delta
            j0 = j1
            if p[j0] == 0:
                break
        while True:
            j1 = way[j0]
            p[j0] = p[j1]
            j0 = j1
            if j0 == 0:
                break
    row_to_col = np.full(n, -1, dtype=np.int64)
    for j in range(1, m + 1):
        if p[j] != 0:
            row_to_col[p[j] - 1] = j - 1
    return row_to_col


@njit(cache=True)
def hungarian(cost):
    """Min-cost assignment for a rectangular cost matrix.  Returns
    ``row_to_col`` (length n_rows, -1 for unassigned rows)."""
    n, m = cost.shape
    if n == 0 or m == 0:
        return np.full(n, -1, dtype=np.int64)
    if n <= m:
        return _hungarian_rows_le_cols(cost)
    col_to_row = _hungarian_rows_le_cols(cost.T.copy())
    row_to_col = np.full(n, -1, dtype=np.int64)
    for j in range(m):
        if col_to_row[j] >= 0:
            row_to_col[col_to_row[j]] = j
    return row_to_col


@njit(cache=True)
def spatial_score(pred, gt, label_match, label_penalty):
    """Match predicted to ground-truth boxes (Hungarian on
    ``(1 - ciou)/2 + label_penalty * (1 - label_match)``) and return the
    mean of ``(1 + ciou) / 2`` over matched same-label pairs, divided by
    ``max(n_pred, n_gt)`` so missing and hallucinated objects both cost."""
    n, m = pred.shape[0], gt.shape[0]
    if n == 0 or m == 0:
        return 0.0
    c = pairwise_ciou(pred, gt)
    cost = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            cost[i, j] = (1.0 - c[i, j]) * 0.5 + label_penalty * (1.0 - label_match[i, j])
    assign = hungarian(cost)
    total = 0.0
    for i in range(n):
        j = assign[i]
        if j >= 0 and label_match[i, j] > 0.5:
            total += (1.0 + c[i, j]) * 0.5
    return total / max(n, m)


def warmup() -> None:
    """Compile (or load from cache) every kernel once."""
    a = np.array([[0.0, 0.0, 1.0, 1.0]])
    spatial_score(a, a, np.ones((1, 1)), 1.0)
    hungarian(np.ones((2, 1)))
