"""Capacity model: step time and per-pool utilisation of a run shape on N devices, with and without staleness.

From per-token rates (measured by ``scripts/bench_pipeline.py``, or given for hardware this project cannot measure)
and a step's token counts, each pool's busy time per step is::

    generate     G  = responses x response tokens / (engines x generation rate)
    old log-probs P = responses x sequence tokens / (ranks x forward rate)       (0 with rollout.use_engine_logprobs)
    update       U  = ppo_epochs x responses x sequence tokens / (ranks x training rate)
    reference    R  = responses x sequence tokens / (reference devices x forward rate)
                      or, colocated (reference.colocate_with_learner), / (ranks x forward rate) on the learner
    weight sync  W  (seconds, measured)

The synchronous step (``algo.max_staleness=0``) runs them one after another: ``G + R + P + U + W`` (the reference
runs while the batch's last chunks are scored, so R is counted once, after G). With ``max_staleness >= 1`` the pool
generates the next step's prompts while the learners train and the reference scores as chunks land:
``max(G, R_separate, P + U + R_colocated) + W``. A pool's utilisation is its busy time over the step time.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass


@dataclass
class Rates:
    """Per-device throughput of each kind of work, in tokens per second."""

    generation: float
    """Response tokens generated per second by one engine (prefill included, at the run's batch)."""
    training: float
    """Sequence tokens (prompt + response) per second through forward + backward on one learner rank."""
    forward: float
    """Sequence tokens per second through a forward pass only (old log-probs, reference) on one device."""
    weight_sync_s: float
    """Seconds of one weight sync (gather on the learners and load into the engines)."""
    source: str = ""
    """Where the numbers come from (a measurement, or an assumption)."""


@dataclass
class Shape:
    """Tokens of one step."""

    responses: int
    """Responses per step (prompts_per_step x group_size)."""
    response_tokens: float
    """Mean response length."""
    prompt_tokens: float
    """Mean prompt length (image tokens included)."""
    ppo_epochs: int = 1
    """Passes over the batch."""
    learner_old_logprobs: bool = True
    """The learner recomputes old log-probs (False: the engine's are used)."""
    reference: bool = True
    """KL to a reference policy (reference log-probs needed)."""

    @property
    def sequence_tokens(self) -> float:
        return self.prompt_tokens + self.response_tokens


@dataclass
class Split:
    """Devices of each pool."""

    engines: int
    ranks: int
    reference: int
    """Reference devices; 0 with a reference computes on the learner ranks (colocated)."""

    @property
    def devices(self) -> int:
        return self.engines + self.ranks + self.reference

    def label(self) -> str:
        ref = f"{self.reference} ref" if self.reference else "ref on learners"
        return f"{self.engines} gen / {self.ranks} learn / {ref}"


@dataclass
class Prediction:
    split: Split
    staleness: int
    step_s: float
    busy: dict
    """Pool -> utilisation (busy time / step time)."""


def predict(rates: Rates, shape: Shape, split: Split, staleness: int) -> Prediction:
    """Step time and per-pool utilisation of ``shape`` on ``split`` at ``staleness`` (0 or >= 1)."""
    seq = shape.responses * shape.sequence_tokens
    gen = shape.responses * shape.response_tokens / (split.engines * rates.generation)
    old = seq / (split.ranks * rates.forward) if shape.learner_old_logprobs else 0.0
    update = shape.ppo_epochs * seq / (split.ranks * rates.training)
    ref_separate = seq / (split.reference * rates.forward) if shape.reference and split.reference else 0.0
    ref_coloc = seq / (split.ranks * rates.forward) if shape.reference and not split.reference else 0.0
    learner = old + update + ref_coloc
    sync = rates.weight_sync_s
    if staleness <= 0:
        step = gen + ref_separate + learner + sync
    else:
        step = max(gen, ref_separate, learner) + sync
    busy = {"rollout": (gen + sync) / step, "learner": (learner + sync) / step}
    if split.reference:
        busy["reference"] = ref_separate / step
    return Prediction(split, staleness, step, busy)


def splits(devices: int, reference: bool, rank_counts=(1, 2, 4, 8, 16)) -> list[Split]:
    """Every split of ``devices`` into engines (>= 1), learner ranks (one of ``rank_counts``, which must divide
    the per-update prompts) and 0 or 1 reference device."""
    out = []
    for ranks, ref in itertools.product(rank_counts, (0, 1) if reference else (0,)):
        engines = devices - ranks - ref
        if engines >= 1:
            out.append(Split(engines, ranks, ref))
    return out


def best(rates: Rates, shape: Shape, devices: int, staleness: int) -> Prediction:
    """The split of ``devices`` with the shortest predicted step."""
    return min((predict(rates, shape, s, staleness) for s in splits(devices, shape.reference)), key=lambda p: p.step_s)


__all__ = ["Prediction", "Rates", "Shape", "Split", "best", "predict", "splits"]
