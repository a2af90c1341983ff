"""Records that cross actor boundaries, declared once.

Shapes use ``T_p`` for prompt tokens (image placeholder tokens included), ``T_r`` for the tokens of one response,
``P`` for image patches and ``I`` for images in one prompt. Everything here is pickled into the Ray object store, so
tensors are CPU tensors and the rest are plain Python values.

Flow of one GRPO step::

    driver --RolloutRequest--> rollout worker --PromptGroup (ObjectRef)--> reward worker  -> list[RewardBreakdown]
                                                                      \\--> reference     -> GroupLogprobs
                                                                      \\--> learner ranks -> UpdateStats
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from PIL import Image


@dataclass
class TaskSample:
    """The ground truth of one STVQA question: what the reward needs, nothing more."""

    id: str
    """Dataset row id (``image_id`` plus question index), used in logs and error reports."""
    ground_truth: str
    """The dataset's ``answer_option_text``: ``<scene>{json}</scene>\\n<answer>(B) text</answer>``."""
    image_size: tuple[int, int]
    """(W, H) of the original image: the frame of the ground-truth boxes and of the prompt's ``Image size``."""
    category: str = ""
    """Question category (relation, depth, count, ...), for per-category metrics."""


@dataclass
class RolloutRequest:
    """One prompt to sample ``n`` responses for."""

    uid: str
    """Unique within the step: ``s{step}-{row id}``."""
    index: int
    """Position of the prompt group in the step's batch."""
    messages: list[dict]
    """Chat messages from :class:`rewards.prompt.PromptBuilder` (one user turn, image first)."""
    images: list[Image.Image]
    """The prompt's images, already scaled into the prompt pixel range; ``I`` of them."""
    sample: TaskSample
    """Ground truth for the reward workers."""
    seed: int | None = None
    """Sampling seed of this prompt (derived from the run seed, step and position), so a step redone after a resume
    samples the same responses; None: the engine's own random state."""


@dataclass
class ImageInputs:
    """Processed image tensors of one prompt, stored once per prompt group and shared by all its responses."""

    pixel_values: torch.Tensor
    """[P, C*temporal_patch*patch*patch] float32 flattened patches (Qwen2.5-VL processor output)."""
    image_grid_thw: torch.Tensor
    """[I, 3] int64: temporal, height and width patch counts of each image."""

    def nbytes(self) -> int:
        return self.pixel_values.numel() * self.pixel_values.element_size() + self.image_grid_thw.numel() * 8


@dataclass
class EncodedPrompt:
    """A prompt as the model sees it."""

    input_ids: list[int]
    """[T_p] token ids, each image's placeholder already expanded to its merged-patch count."""
    images: ImageInputs | None
    """The processed images, None for a text-only prompt."""


@dataclass
class Response:
    """One sampled response."""

    token_ids: list[int]
    """[T_r] generated token ids, the stop token included when the response finished."""
    text: str
    """Decoded response (special tokens removed)."""
    finish_reason: str
    """``"stop"``: the model ended the response; ``"length"``: cut at the token limit (a truncated response)."""
    engine_logprobs: list[float] | None = None
    """[T_r] log-probability the rollout engine assigned to each sampled token at the sampling temperature, or
    None when the engine does not report them."""

    @property
    def finished(self) -> bool:
        return self.finish_reason == "stop"


@dataclass
class PromptGroup:
    """A prompt and its ``n`` sampled responses: the unit GRPO compares within, and the unit that travels."""

    uid: str
    """The request's uid."""
    index: int
    """The request's position in the step's batch."""
    prompt: EncodedPrompt
    """Prompt token ids and the image tensors, ONCE for the whole group."""
    responses: list[Response]
    """The ``n`` responses."""
    sample: TaskSample
    """Ground truth, passed through for the reward workers."""
    policy_version: int = 0
    """Weight version (number of updates) of the engine that generated the responses."""
    worker_id: str = ""
    """Rollout worker that generated them."""
    seconds: float = 0.0
    """Wall time the engine spent on the request batch that contained this group."""

    def __len__(self) -> int:
        return len(self.responses)

    @property
    def response_tokens(self) -> int:
        return sum(len(r.token_ids) for r in self.responses)


@dataclass
class GroupLogprobs:
    """Per-token log-probabilities of a group's responses under some policy."""

    logprobs: list[torch.Tensor]
    """``n`` float32 tensors, the k-th of shape [T_r of response k]."""
    start: float = 0.0
    """Wall-clock time (``time.time()``) the computation began, for the run's timeline; 0 when not measured."""
    end: float = 0.0
    """Wall-clock time it ended."""


@dataclass
class ScoreRequest:
    """What a reward worker needs to score one prompt group: the response texts and the ground truth, never the
    image tensors. A rollout worker puts one per group into its chunk summary (key ``score``)."""

    uid: str
    """The prompt group's uid."""
    texts: list[str]
    """[n] decoded responses."""
    sample: TaskSample
    """Ground truth and original image size."""


@dataclass
class GroupScores:
    """A reward worker's answer for several prompt groups scored in one call."""

    rewards: list[list]
    """[groups][n] :class:`rewards.spatial.RewardBreakdown`, in the order of the requests."""
    start: float = 0.0
    """Wall-clock time (``time.time()``) scoring began, for the run's timeline."""
    end: float = 0.0
    """Wall-clock time it ended."""


@dataclass
class UpdateStats:
    """What one learner rank reports after its updates on one rollout batch (means over its optimizer steps)."""

    loss: float = 0.0
    """Mean policy loss (KL term included when it is in the loss)."""
    pg_loss: float = 0.0
    """Mean clipped policy-gradient part of the loss."""
    kl: float = 0.0
    """Mean per-token KL estimate to the reference policy."""
    clip_frac_high: float = 0.0
    """Fraction of response tokens whose ratio was clipped at 1 + clip_ratio_high (A > 0)."""
    clip_frac_low: float = 0.0
    """Fraction of response tokens whose ratio was clipped at 1 - clip_ratio_low (A < 0)."""
    dual_clip_frac: float = 0.0
    """Fraction of response tokens where the dual clip bound applied (A < 0, ratio > dual_clip)."""
    ratio_mean: float = 1.0
    """Mean importance ratio pi/pi_old over response tokens."""
    ratio_max: float = 1.0
    """Largest importance ratio seen."""
    grad_norm: float = 0.0
    """Mean global gradient norm before clipping."""
    lr: float = 0.0
    """Learning rate of the last optimizer step."""
    optimizer_steps: int = 0
    """Optimizer steps taken on this rollout batch (mini-batches x epochs)."""
    logprob_diff_mean: float = float("nan")
    """Mean |engine log-prob - learner log-prob| over sampled tokens, before the update; NaN without engine
    log-probs."""
    logprob_diff_max: float = float("nan")
    """Largest such difference."""
    tokens: int = 0
    """Response tokens this rank trained on."""
    seconds: float = 0.0
    """Wall time of the rank's update."""
    extra: dict = field(default_factory=dict)
    """Anything else a rank wants to report (numeric)."""

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(d.pop("extra"))
        return d


@dataclass
class WeightBucket:
    """One bucket of a streamed weight sync (object-store path), from learner rank 0 to every rollout engine. ``K``
    tensors; see :mod:`actors.weight_sync`."""

    names: list[str]
    """[K] parameter names (``named_parameters()`` of the HF model: tied aliases left out)."""
    dtypes: list[str]
    """[K] torch dtype names (``float32``, ``bfloat16``, ...)."""
    shapes: list[tuple[int, ...]]
    """[K] full tensor shapes."""
    data: list[np.ndarray]
    """[K] uint8 arrays of each tensor's bytes (C order); Ray serialises them out of band, without a copy."""
    index: int
    """Position of this bucket in the sync, from 0."""
    count: int
    """Buckets in this sync."""
    version: int
    """Policy version the weights belong to."""

    @property
    def nbytes(self) -> int:
        return sum(int(d.nbytes) for d in self.data)
