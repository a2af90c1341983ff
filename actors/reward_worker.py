"""Reward workers: score trajectories with the Numba-jitted SpatialThinker reward."""

from __future__ import annotations

import ray


@ray.remote
class RewardWorker:
    def __init__(self, reward_cfg: dict | None = None):
        from rewards.kernels import warmup
        from rewards.spatial import RewardConfig

        self.cfg = RewardConfig(**(reward_cfg or {}))
        warmup()

    def score(self, trajs: list[dict]) -> list[dict]:
        """Return one breakdown dict per trajectory (same order).  Malformed
        responses score 0 -- the parser never raises."""
        from rewards.spatial import compute_reward

        return [compute_reward(t["response_text"], t["sample"], self.cfg).as_dict() for t in trajs]

    def ready(self) -> bool:
        return True
