"""Reward workers: score prompt groups with the Numba-jitted SpatialThinker reward."""

from __future__ import annotations

import ray

from actors.records import PromptGroup
from rewards.spatial import RewardBreakdown, RewardConfig, score_batch, warmup


@ray.remote(max_restarts=-1, max_task_retries=2)
class RewardWorker:
    """Scores the responses of a prompt group. Stateless, so Ray restarts it if it dies and retries the task."""

    def __init__(self, config: RewardConfig):
        self.config = config
        warmup()  # compile the Numba kernels once per process, not inside the first step

    def score(self, group: PromptGroup) -> list[RewardBreakdown]:
        """One breakdown per response, in order. The reward never raises: a malformed response scores 0 and a
        sample whose ground truth is unusable carries an ``error``."""
        s = group.sample
        return score_batch([(r.text, s.ground_truth, s.image_size) for r in group.responses], self.config)

    def ready(self) -> bool:
        return True
