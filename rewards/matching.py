"""The spatial matching of a batch in one Numba call, shared by the ``spatialthinker`` and ``strict`` presets."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from rewards.fast.kernels import spatial_batch
from rewards.fast.terms import with_spatial
from rewards.similarity import LabelSimilarity
from rewards.template import BAD_CORNERS
from rewards.truth import NAME_CODES, GroundTruth

if TYPE_CHECKING:
    from rewards.config import RewardConfig


class SpatialJobs:
    """The predicted boxes of a batch, checked and matched in one Numba call
    (:func:`rewards.fast.kernels.spatial_batch`).

    Every response whose format passed so far is one entry ``(item, need, gt_offset, gt_count, W, H)`` (its boxes
    still need the corner check); ``need`` says whether its spatial score S is wanted. Boxes and name codes are
    appended to flat lists; ground truths are stored once per batch.
    """

    def __init__(self, sim: LabelSimilarity, mode: int):
        self.sim = sim
        self.mode = mode
        self.entries: list[tuple] = []
        self.p_flat: list = []
        self.p_codes: list = []
        self.p_start: list = [0]
        self.g_flat: list = []
        self.g_codes: list = []
        self.g_seen: dict = {}
        self.sim_flat: list = []
        self.sim_start: list = []

    def gt_offset(self, gt: GroundTruth, gt_codes: list) -> int:
        """Row of ``gt`` in this batch's ground-truth table (added on first use)."""
        off = self.g_seen.get(id(gt_codes))
        if off is None:
            off = self.g_seen[id(gt_codes)] = (len(self.g_codes), gt)  # gt keeps gt_codes alive for the id() key
            self.g_flat.extend(gt.flat)
            self.g_codes.extend(gt_codes)
        return off[0]

    def add(self, item: int, need: bool, flat: list, codes: list, gt: GroundTruth, gt_codes: list, wh: tuple):
        self.entries.append((item, need, self.gt_offset(gt, gt_codes), len(gt_codes), wh[0], wh[1]))
        self.p_flat.extend(flat)
        self.p_codes.extend(codes)
        self.p_start.append(len(self.p_codes))
        self.add_similarity(need, codes, gt_codes)

    def add_similarity(self, need: bool, codes: list, gt_codes: list) -> None:
        if self.sim.exact or not need:
            self.sim_start.append(-1)
            return
        self.sim_start.append(len(self.sim_flat))
        names = NAME_CODES.names
        m = self.sim.matrix([names[c] for c in codes], [names[c] for c in gt_codes])
        self.sim_flat.extend(m.ravel().tolist())

    def solve(self, cfg: RewardConfig) -> tuple[list, list]:
        """Returns ``(S, valid)`` per entry: S clipped to [0, 1], valid False for a box that is not corners."""
        if not self.entries:
            return [], []
        i64 = np.int64
        try:
            pboxes = np.array(self.p_flat, dtype=np.float64)
        except OverflowError:  # an integer beyond the float range (only the standard-library JSON path makes one)
            pboxes = np.array([_float_or_nan(v) for v in self.p_flat], dtype=np.float64)
        e = np.array(self.entries, dtype=np.float64)
        sim_start = np.array(self.sim_start, dtype=i64) if self.sim_start else np.full(len(e), -1, dtype=i64)
        s_values, valid = spatial_batch(
            pboxes.reshape(-1, 4),
            np.array(self.p_codes, dtype=i64),
            np.array(self.p_start, dtype=i64),
            e[:, 1] != 0.0,
            e[:, 2].astype(i64),
            e[:, 3].astype(i64),
            np.array(self.g_flat, dtype=np.float64).reshape(-1, 4),
            np.array(self.g_codes, dtype=i64),
            np.ascontiguousarray(e[:, 4:6]),
            np.array(self.sim_flat or [0.0], dtype=np.float64),
            sim_start,
            self.mode,
            cfg.lambda_semantic,
            cfg.lambda_spatial,
        )
        # S is a mean of CIoU01 values, which the paper's formula lets dip just below 0 for far-apart boxes
        return np.clip(s_values, 0.0, 1.0).tolist(), valid.tolist()


def _float_or_nan(v) -> float:
    try:
        return float(v)
    except OverflowError:
        return math.nan


def finish_spatial(out: list, jobs: SpatialJobs, cfg: RewardConfig) -> None:
    """Apply the batch's corner checks (a bad box fails the format: all zeros) and spatial scores."""
    if not jobs.entries:
        return
    s_values, valid = jobs.solve(cfg)
    ws = cfg.w_spatial
    gate_a = cfg.gate_spatial_on_accuracy
    gate_f = cfg.gate_on_format
    for entry, s, ok in zip(jobs.entries, s_values, valid):
        row = out[entry[0]]
        if not ok:
            if gate_f or row[1] == 1.0:
                row[:] = [0.0, 0.0, 0.0, 0.0, 0.0, BAD_CORNERS]
            else:  # ungated and already failed: the unreadable scene pays nothing
                row[:] = [cfg.w_accuracy * row[3], 0.0, 0.0, row[3], 0.0, row[5]]
        elif entry[1]:
            row[4] = s
            row[0] = with_spatial(row[0], s, row[3], ws, gate_a)
