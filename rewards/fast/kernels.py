"""Numba kernels of the spatial reward: CIoU, the assignment solver and a batched spatial score.

* :func:`ciou01` is the paper's ``CIoU01 = (CIoU + 1) / 2`` (recipe section 2): IoU minus the normalised centre
  distance ``rho^2 / c^2`` minus ``alpha * v``, with ``eps = 1e-7`` in the union, in ``c^2`` and under the heights of
  the aspect-ratio term, evaluated in the same order of operations as the paper's code.
* :func:`linear_sum_assignment` is a port of the shortest-augmenting-path solver that SciPy's
  ``linear_sum_assignment`` uses (Crouse 2016), including its tie-breaking (columns scanned from the last, a free
  column preferred on ties, tall matrices transposed), so matchings agree with the paper's code even on ties.
* :func:`spatial_batch` scores many responses in one call: the Python side passes flat arrays (boxes, name codes,
  offsets) so there is one Numba dispatch per batch, not one per response.

``cache=True`` keeps the compiled code between processes; :func:`warmup` compiles (or loads) these kernels once
(:func:`rewards.spatial.warmup` also compiles the reader of :mod:`rewards.fast.scan` through its caller).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from rewards.constants import EPS, MODE_PAPER, MODE_STRICT, PAD_COST

__all__ = [
    "EPS",
    "MODE_PAPER",
    "MODE_STRICT",
    "PAD_COST",
    "boxes_valid",
    "ciou01",
    "linear_sum_assignment",
    "pairwise_ciou01",
    "spatial_batch",
    "warmup",
]

_FOUR_OVER_PI2 = 4.0 / (math.pi**2)


@njit(cache=True)
def ciou01(a0, a1, a2, a3, b0, b1, b2, b3):
    """Paper rule: ``(CIoU(A, B) + 1) / 2`` of corner boxes A and B, with the paper's order of operations.

    Returns NaN only when a value overflows (boxes near the float range); callers treat that as no overlap.
    """
    atan_a = math.atan((a2 - a0) / ((a3 - a1) + EPS))
    atan_b = math.atan((b2 - b0) / ((b3 - b1) + EPS))
    return _ciou01_pre(a0, a1, a2, a3, atan_a, b0, b1, b2, b3, atan_b)


@njit(cache=True)
def _augmenting_path(cost, u, v, path, row4col, spc, i, sr, sc, remaining):
    """One shortest augmenting path from row ``i`` (SciPy's ``augmenting_path``, same scan order and ties)."""
    nc = cost.shape[1]
    min_val = 0.0
    num_remaining = nc
    for it in range(nc):
        remaining[it] = nc - it - 1
    sr[:] = False
    sc[:] = False
    spc[:] = np.inf
    sink = -1
    while sink == -1:
        index = -1
        lowest = np.inf
        sr[i] = True
        for it in range(num_remaining):
            j = remaining[it]
            r = min_val + cost[i, j] - u[i] - v[j]
            if r < spc[j]:
                path[j] = i
                spc[j] = r
            if spc[j] < lowest or (spc[j] == lowest and row4col[j] == -1):
                lowest = spc[j]
                index = it
        min_val = lowest
        if index < 0 or min_val == np.inf:
            return -1, min_val
        j = remaining[index]
        if row4col[j] == -1:
            sink = j
        else:
            i = row4col[j]
        sc[j] = True
        num_remaining -= 1
        remaining[index] = remaining[num_remaining]
    return sink, min_val


@njit(cache=True)
def _lsap_wide(cost, u, v, spc, path, col4row, row4col, sr, sc, remaining):
    """SciPy's ``solve`` for rows <= cols: fills ``col4row[:nr]`` (all -1 if infeasible); the work arrays are at
    least ``cols`` long and are reset here, so one set serves a whole batch."""
    nr, nc = cost.shape
    u[:nr] = 0.0
    v[:nc] = 0.0
    path[:nc] = -1
    col4row[:nr] = -1
    row4col[:nc] = -1
    u_ = u[:nr]
    v_ = v[:nc]
    spc_ = spc[:nc]
    path_ = path[:nc]
    c4r = col4row[:nr]
    r4c = row4col[:nc]
    sr_ = sr[:nr]
    sc_ = sc[:nc]
    rem = remaining[:nc]
    for cur in range(nr):
        sink, min_val = _augmenting_path(cost, u_, v_, path_, r4c, spc_, cur, sr_, sc_, rem)
        if sink < 0:
            c4r[:] = -1
            return
        u_[cur] += min_val
        for i in range(nr):
            if sr_[i] and i != cur:
                u_[i] += min_val - spc_[c4r[i]]
        for j in range(nc):
            if sc_[j]:
                v_[j] -= min_val - spc_[j]
        j = sink
        while True:
            i = path_[j]
            r4c[j] = i
            tmp = c4r[i]
            c4r[i] = j
            j = tmp
            if i == cur:
                break


@njit(cache=True)
def _work(dim):
    """Work arrays of the assignment solver for matrices up to ``dim`` x ``dim``."""
    return (
        np.zeros(dim),
        np.zeros(dim),
        np.empty(dim),
        np.empty(dim, dtype=np.int64),
        np.empty(dim, dtype=np.int64),
        np.empty(dim, dtype=np.int64),
        np.zeros(dim, dtype=np.bool_),
        np.zeros(dim, dtype=np.bool_),
        np.empty(dim, dtype=np.int64),
    )


@njit(cache=True)
def linear_sum_assignment(cost):
    """Min-cost assignment of a rectangular matrix, as SciPy computes it (same algorithm and tie-breaking).

    Returns ``row_to_col`` of length ``n_rows`` (-1 for rows left unassigned when there are more rows than columns).
    """
    nr, nc = cost.shape
    out = np.full(nr, -1, dtype=np.int64)
    if nr == 0 or nc == 0:
        return out
    u, v, spc, path, col4row, row4col, sr, sc, remaining = _work(max(nr, nc))
    if nc < nr:
        _lsap_wide(np.ascontiguousarray(cost.T), u, v, spc, path, col4row, row4col, sr, sc, remaining)
        for j in range(nc):
            if col4row[j] >= 0:
                out[col4row[j]] = j
        return out
    _lsap_wide(cost, u, v, spc, path, col4row, row4col, sr, sc, remaining)
    out[:] = col4row[:nr]
    return out


@njit(cache=True)
def _normalise(boxes, r0, n, sx, sy, out, atans):
    """Paper rule: corners times ``1/W`` and ``1/H``; also each box's ``atan(w / (h + eps))`` for CIoU's ``v``."""
    for i in range(n):
        x1 = boxes[r0 + i, 0] * sx
        y1 = boxes[r0 + i, 1] * sy
        x2 = boxes[r0 + i, 2] * sx
        y2 = boxes[r0 + i, 3] * sy
        out[i, 0] = x1
        out[i, 1] = y1
        out[i, 2] = x2
        out[i, 3] = y2
        atans[i] = math.atan((x2 - x1) / ((y2 - y1) + EPS))


@njit(cache=True)
def _ciou01_pre(a0, a1, a2, a3, atan_a, b0, b1, b2, b3, atan_b):
    """:func:`ciou01` with the aspect-ratio arctangents precomputed per box (same operations, same order)."""
    wa = a2 - a0
    ha = a3 - a1
    wb = b2 - b0
    hb = b3 - b1
    inter_w = max(0.0, min(a2, b2) - max(a0, b0))
    inter_h = max(0.0, min(a3, b3) - max(a1, b1))
    inter = inter_w * inter_h
    union = wa * ha + wb * hb - inter + EPS
    iou = inter / union
    dcx = (a0 + a2) / 2 - (b0 + b2) / 2
    dcy = (a1 + a3) / 2 - (b1 + b3) / 2
    rho2 = dcx * dcx + dcy * dcy
    cw = max(a2, b2) - min(a0, b0)
    ch = max(a3, b3) - min(a1, b1)
    c2 = cw * cw + ch * ch + EPS
    d = atan_b - atan_a
    v = _FOUR_OVER_PI2 * (d * d)
    with_v = (1.0 - iou) + v
    alpha = v / with_v if with_v != 0.0 else 0.0
    ciou = iou - (rho2 / c2 + alpha * v)
    return (ciou + 1.0) / 2.0


@njit(cache=True)
def _one_spatial(pboxes, pcodes, p0, n, gboxes, gcodes, g0, m, sx, sy, sim, s0, mode, lam_sem, lam_sp, buf, work):
    """Paper rule for S of one response (see :func:`spatial_batch`), in the batch's work arrays."""
    pn, pa, gn, ga, cost_buf, credit, simv = buf
    u, v, spc, path, col4row, row4col, sr, sc, remaining = work
    # normalised corners: the paper multiplies by 1/W and 1/H
    _normalise(pboxes, p0, n, sx, sy, pn, pa)
    _normalise(gboxes, g0, m, sx, sy, gn, ga)
    # the paper's matrix is n x m, padded with constant rows up to m when n < m; tall matrices are solved
    # transposed (as SciPy does)
    transposed = n > m
    rows = m if (n < m and mode == MODE_PAPER) else n
    if transposed:
        cost = cost_buf[: m * n].reshape(m, n)
    else:
        cost = cost_buf[: rows * m].reshape(rows, m)
        for i in range(n, rows):
            for j in range(m):
                cost[i, j] = PAD_COST
    for i in range(n):
        for j in range(m):
            if s0 >= 0:
                s = sim[s0 + i * m + j]
            else:
                s = 1.0 if pcodes[p0 + i] == gcodes[g0 + j] else 0.0
            # CIoU is symmetric operation by operation, so one value serves the cost (paper: CIoU(pred, gt)) and
            # the credit (paper: CIoU(gt, pred))
            c = _ciou01_pre(
                gn[j, 0], gn[j, 1], gn[j, 2], gn[j, 3], ga[j], pn[i, 0], pn[i, 1], pn[i, 2], pn[i, 3], pa[i]
            )
            if not math.isfinite(c):
                c = 0.0
            cij = lam_sem * (1.0 - s) + lam_sp * (1.0 - c)
            if not math.isfinite(cij):
                cij = PAD_COST
            if transposed:
                cost[j, i] = cij
            else:
                cost[i, j] = cij
            credit[i * m + j] = c
            simv[i * m + j] = s
    _lsap_wide(cost, u, v, spc, path, col4row, row4col, sr, sc, remaining)
    total = 0.0
    if transposed:
        for j in range(m):
            i = col4row[j]
            if i >= 0 and (mode == MODE_PAPER or simv[i * m + j] >= 0.5):
                total += credit[i * m + j]
    else:
        for i in range(n):
            j = col4row[i]
            if j >= 0 and (mode == MODE_PAPER or simv[i * m + j] >= 0.5):
                total += credit[i * m + j]
    if mode == MODE_PAPER:
        return total / m
    return total / max(n, m)


@njit(cache=True)
def boxes_valid(boxes, r0, r1):
    """True when rows ``r0:r1`` of ``boxes`` are finite corners with ``x1 <= x2`` and ``y1 <= y2``."""
    for i in range(r0, r1):
        x1 = boxes[i, 0]
        y1 = boxes[i, 1]
        x2 = boxes[i, 2]
        y2 = boxes[i, 3]
        if not (x1 <= x2 and y1 <= y2):
            return False
        if not (math.isfinite(x1) and math.isfinite(y1) and math.isfinite(x2) and math.isfinite(y2)):
            return False
    return True


@njit(cache=True)
def spatial_batch(
    pboxes, pcodes, pstart, need, goff, gcount, gboxes, gcodes, sizes, sim, simstart, mode, lam_sem, lam_sp
):
    """Check the predicted boxes and compute the spatial score S of K responses in one call.

    Response k owns predicted rows ``pstart[k]:pstart[k+1]`` of ``pboxes`` (pixel corners) / ``pcodes`` (name codes)
    and ground-truth rows ``goff[k]:goff[k]+gcount[k]`` of ``gboxes`` / ``gcodes``; ``sizes[k]`` is the stated
    image (W, H). Label similarity is ``sim[simstart[k] + i*m + j]`` when ``simstart[k] >= 0``, else exact name
    match of the codes. S is computed where ``need[k]``, with the paper rule (``MODE_PAPER``: Hungarian on
    ``lam_sem*(1-sim) + lam_sp*(1-CIoU01)``, S = sum of CIoU01 over matched GT / #GT; no GT: 1 if nothing is
    predicted, else 0) or the strict rule (``MODE_STRICT``: label-matched pairs only, / max(#pred, #GT); no GT: 0).

    Returns ``(S, valid)``: ``valid[k]`` is False when a predicted box of response k is not finite corners (the
    caller fails its format; its S is left 0).
    """
    k_n = pstart.shape[0] - 1
    out = np.zeros(k_n)
    valid = np.ones(k_n, dtype=np.bool_)
    max_n = 1
    max_m = 1
    for k in range(k_n):
        max_n = max(max_n, pstart[k + 1] - pstart[k])
        max_m = max(max_m, gcount[k])
    dim = max(max_n, max_m)
    # work arrays allocated once per batch, not once per response
    buf = (
        np.empty((max_n, 4)),
        np.empty(max_n),
        np.empty((max_m, 4)),
        np.empty(max_m),
        np.empty(dim * dim),
        np.empty(max_n * max_m),
        np.empty(max_n * max_m),
    )
    work = _work(dim)
    for k in range(k_n):
        p0 = pstart[k]
        n = pstart[k + 1] - p0
        if not boxes_valid(pboxes, p0, p0 + n):
            valid[k] = False
            continue
        if not need[k]:
            continue
        g0 = goff[k]
        m = gcount[k]
        if m == 0:
            out[k] = 1.0 if (n == 0 and mode == MODE_PAPER) else 0.0
            continue
        if n == 0:
            continue
        sx = 1.0 / sizes[k, 0]
        sy = 1.0 / sizes[k, 1]
        out[k] = _one_spatial(
            pboxes, pcodes, p0, n, gboxes, gcodes, g0, m, sx, sy, sim, simstart[k], mode, lam_sem, lam_sp, buf, work
        )
    return out, valid


@njit(cache=True)
def pairwise_ciou01(a, b):
    """CIoU01 of every box of ``a`` (n, 4) against every box of ``b`` (m, 4)."""
    n, m = a.shape[0], b.shape[0]
    out = np.empty((n, m))
    for i in range(n):
        for j in range(m):
            out[i, j] = ciou01(a[i, 0], a[i, 1], a[i, 2], a[i, 3], b[j, 0], b[j, 1], b[j, 2], b[j, 3])
    return out


def warmup() -> None:
    """Compile (or load from the on-disk cache) every kernel once, so the first batch is not slow."""
    boxes = np.array([[0.0, 0.0, 1.0, 1.0], [0.5, 0.5, 2.0, 3.0]])
    codes = np.array([0, 1], dtype=np.int64)
    spatial_batch(
        boxes,
        codes,
        np.array([0, 1, 2], dtype=np.int64),
        np.array([True, True]),
        np.array([0, 0], dtype=np.int64),
        np.array([2, 2], dtype=np.int64),
        boxes,
        codes,
        np.array([[4.0, 4.0], [4.0, 4.0]]),
        np.zeros(1),
        np.array([-1, -1], dtype=np.int64),
        MODE_PAPER,
        2.0,
        1.0,
    )
    linear_sum_assignment(np.ones((3, 2)))
    pairwise_ciou01(boxes, boxes)
