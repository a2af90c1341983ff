"""Reward workers: score prompt groups with the Numba-jitted SpatialThinker reward."""

from __future__ import annotations

import time

import ray

from actors.records import GroupScores, PromptGroup, ScoreRequest
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

    def score_groups(self, batch: dict | list[ScoreRequest]) -> GroupScores:
        """Several prompt groups in one call, from texts and ground truth only: ``batch`` is a list of
        :class:`ScoreRequest` or a rollout chunk's summary (passed as its ObjectRef, so the call starts the moment the
        chunk is generated), whose ``score`` entry holds them."""
        start = time.time()
        requests = batch["score"] if isinstance(batch, dict) else batch
        flat = [(t, r.sample.ground_truth, r.sample.image_size) for r in requests for t in r.texts]
        scores = score_batch(flat, self.config)
        rewards, i = [], 0
        for r in requests:
            rewards.append(scores[i : i + len(r.texts)])
            i += len(r.texts)
        return GroupScores(rewards, start, time.time())

    def ready(self) -> bool:
        return True
