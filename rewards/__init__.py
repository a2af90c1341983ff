"""SpatialThinker rewards: the response template, the reward presets, label similarity and Numba kernels.

The public names below are loaded on first use, so ``import rewards.prompt`` does not pay for Numba.

* :mod:`rewards.spatial` -- :func:`compute_reward`, :func:`score_batch`, :func:`perfect_response` (recipe
  section 2): the public API, which picks the preset and never raises;
* :mod:`rewards.config` -- :class:`RewardConfig`, :class:`RewardBreakdown`;
* :mod:`rewards.presets` -- one module per preset (``spatialthinker``, ``strict``, ``vanilla``) behind one interface;
* :mod:`rewards.truth` -- the parsed ground truth and the batch item; :mod:`rewards.matching` -- the batched
  spatial matching the box-scoring presets share;
* :mod:`rewards.template` -- the never-raising template checks and answer normalisation;
* :mod:`rewards.similarity` -- label similarity backends (exact, MiniLM, spaCy);
* :mod:`rewards.fast` -- the Numba fast path (CIoU, the assignment solver, the paper's count and total formulas,
  the reader that scores the common response and JSONL line end to end); it imports only
  :mod:`rewards.constants` from this package;
* :mod:`rewards.score` -- the JSONL scoring CLI (``python -m rewards.score``);
* :mod:`rewards.prompt` -- the prompt builder (multiple-choice answer extraction lives in :mod:`evaluation.answers`).
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "RewardConfig": "rewards.config",
    "RewardBreakdown": "rewards.config",
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
