"""Small helpers of the driver loop: one timed block per phase, and the step's metrics built from the records the
pools return (shared by the synchronous step in :mod:`cluster.trainer` and the pipeline in :mod:`cluster.pipeline`)."""

from __future__ import annotations

import math
import time
from contextlib import contextmanager

import torch

from actors.learner import PrepareInfo
from actors.records import UpdateStats
from cluster.pool import GroupResult
from rewards.spatial import RewardBreakdown, is_sample_error

COMPONENTS = ("total", "format", "count", "accuracy", "spatial")


@contextmanager
def timed(timings: dict, name: str):
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start


def reward_metrics(prefix: str, rewards: list[RewardBreakdown]) -> dict:
    n = max(len(rewards), 1)
    out = {f"{prefix}/{k}": sum(getattr(r, k) for r in rewards) / n for k in COMPONENTS}
    out[f"{prefix}/errors"] = sum(1 for r in rewards if is_sample_error(r.error))
    return out


def update_metrics(stats: list[UpdateStats]) -> dict:
    keys = ("loss", "pg_loss", "kl", "clip_frac_high", "clip_frac_low", "dual_clip_frac", "ratio_mean", "grad_norm")
    out = {f"train/{k}": sum(getattr(s, k) for s in stats) / len(stats) for k in keys}
    out["train/ratio_max"] = max(s.ratio_max for s in stats)
    out["train/lr"] = stats[0].lr
    out["train/optimizer_steps"] = stats[0].optimizer_steps
    # forward/backward passes per rank and the share of padding in them (token-budget vs fixed-count micro-batches)
    out["train/micro_batches"] = sum(s.extra.get("micro_batches", 0) for s in stats) / len(stats)
    out["train/padding_fraction"] = sum(s.extra.get("padding_fraction", 0.0) for s in stats) / len(stats)
    return out


def rollout_metrics(
    results: list[GroupResult], prep: PrepareInfo, stats: list[UpdateStats], pool_size: int, group_size: int
) -> dict:
    summaries = {id(r.summary): r.summary for r in results}.values()  # a chunk's summary is shared by its groups
    responses = len(results) * group_size
    if prep.logprob_diff_tokens:  # measured against the learner's old log-probs
        diff_mean, diff_max = prep.logprob_diff_sum / prep.logprob_diff_tokens, prep.logprob_diff_max
    else:  # engine log-probs as old log-probs: measured on each rank's first forward pass, before any update
        measured = [s for s in stats if math.isfinite(s.logprob_diff_mean)]
        diff_mean = sum(s.logprob_diff_mean for s in measured) / len(measured) if measured else float("nan")
        diff_max = max((s.logprob_diff_max for s in measured), default=float("nan"))
    return {
        "rollout/response_tokens_mean": sum(s["response_tokens"] for s in summaries) / responses,
        "rollout/truncated_frac": sum(s["truncated"] for s in summaries) / responses,
        "rollout/workers": pool_size,
        "rollout/logprob_diff_mean": diff_mean,
        "rollout/logprob_diff_max": diff_max,
    }


def advantage_metrics(advantages: torch.Tensor) -> dict:
    spread = (advantages.abs().sum(1) > 0).float()
    return {"algo/groups_with_signal": float(spread.mean()), "algo/advantage_abs_mean": float(advantages.abs().mean())}


def step_metrics(timings: dict) -> dict:
    return {f"time/{k}": v for k, v in timings.items()}
