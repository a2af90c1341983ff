"""SpatialThinker rewards: the response template, the reward presets, label similarity and Numba kernels.

The public names below are loaded on first use, so ``import rewards.prompt`` does not pay for Numba.

* :mod:`rewards.spatial` -- :class:`RewardConfig`, :class:`RewardBreakdown`, :func:`compute_reward`,
  :func:`score_batch`, :func:`perfect_response` (recipe section 2);
* :mod:`rewards.template` -- the never-raising template checks and answer normalisation;
* :mod:`rewards.similarity` -- label similarity backends (exact, MiniLM, spaCy);
* :mod:`rewards.kernels` -- CIoU, the assignment solver and the batched spatial score;
* :mod:`rewards.scan` -- the Numba reader that scores the common response (and JSONL line) end to end;
* :mod:`rewards.score` -- the JSONL scoring CLI (``python -m rewards.score``).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RewardConfig": "rewards.spatial",
    "RewardBreakdown": "rewards.spatial",
    "compute_reward": "rewards.spatial",
    "score_batch": "rewards.spatial",
    "perfect_response": "rewards.spatial",
    "parse_response": "rewards.template",
    "normalize_answer": "rewards.template",
}

__all__ = [
    "RewardBreakdown",
    "RewardConfig",
    "compute_reward",
    "normalize_answer",
    "parse_response",
    "perfect_response",
    "score_batch",
]


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'rewards' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
