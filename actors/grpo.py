"""Pure GRPO algorithm functions: group-relative advantages, the clipped PPO
surrogate (clip-higher + dual clip), per-token KL estimators and loss
aggregation.

Nothing here touches a model, a tokenizer or a device placement: every
function takes padded ``[B, T]`` tensors (B sequences, T response positions)
and a boolean ``mask`` of the same shape that is True on response tokens.
Batching and log-probability extraction live in ``actors/policy.py``.

Padded positions may hold anything (zeros, ``-1000``, even ``inf``/``nan``):
every function replaces masked-out entries by 0 with ``torch.where`` *before*
any ``exp`` or product, so they can make neither the loss nor the gradient
non-finite.

Style and semantics follow verl's ``verl/trainer/ppo/core_algos.py`` and
EasyR1 (the codebase SpatialThinker, arXiv 2511.07403, is built on).  The
paper's setting (``LossSettings()`` defaults): unbiased-std group advantages,
PPO clip eps_low 0.2 / eps_high 0.3, dual clip c = 3, k3 ("low_var_kl") KL in
the loss with beta 0.01 clamped to [-10, 10], token-mean aggregation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

__all__ = [
    "KL_ESTIMATORS",
    "KL_INS",
    "LOSS_AGG_MODES",
    "LossNormalizer",
    "LossSettings",
    "aggregate",
    "canonical_kl_estimator",
    "group_advantages",
    "grpo_loss",
    "kl_penalty",
    "policy_loss",
    "sequence_kl",
]

KL_ESTIMATORS: dict[str, str] = {
    "k1": "k1",
    "kl": "k1",
    "k2": "k2",
    "mse": "k2",
    "k3": "k3",
    "low_var_kl": "k3",
}
"""Accepted KL estimator names (verl/EasyR1 spellings included) -> canonical name."""

LOSS_AGG_MODES: tuple[str, ...] = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum")
"""Supported loss aggregation modes, see :func:`aggregate`."""

KL_INS: tuple[str, ...] = ("loss", "reward")
"""Where the KL to the reference policy enters: the loss (paper) or the reward."""


def canonical_kl_estimator(name: str) -> str:
    """Normalise a KL estimator name: ``"k1"``/``"kl"`` -> ``"k1"``,
    ``"k2"``/``"mse"`` -> ``"k2"``, ``"k3"``/``"low_var_kl"`` -> ``"k3"``.

    Raises ValueError for anything else.
    """
    key = name.strip().lower() if isinstance(name, str) else name
    if key not in KL_ESTIMATORS:
        raise ValueError(f"algo.kl_estimator must be one of {sorted(KL_ESTIMATORS)}, got {name!r}")
    return KL_ESTIMATORS[key]


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


@dataclass
class LossSettings:
    """Hyper-parameters of the GRPO loss; defaults are the SpatialThinker paper's.

    Built from the ``algo`` section of the training config, hence the
    ``algo.<field>`` prefix of validation errors.
    """

    clip_ratio_low: float = 0.2
    """PPO lower clip eps_low: the ratio is clipped at ``1 - clip_ratio_low``; in [0, 1)."""

    clip_ratio_high: float = 0.3
    """PPO upper clip eps_high: the ratio is clipped at ``1 + clip_ratio_high`` (clip-higher, DAPO,
    arXiv 2503.14476, when larger than ``clip_ratio_low``); >= 0."""

    dual_clip: float | None = 3.0
    """Dual-clip PPO constant c (Ye et al. 2020, arXiv 1912.09729; verl ``clip_ratio_c``): for A < 0
    the per-token loss is capped at ``-A * c``.  Must be > 1; None disables it."""

    kl_beta: float = 0.01
    """Weight beta of the KL to the reference policy; 0 disables the KL term.  >= 0."""

    kl_estimator: str = "k3"
    """Per-token KL estimator (Schulman, "Approximating KL divergence"): "k1" (alias "kl"),
    "k2" (alias "mse") or "k3" (alias "low_var_kl").  Aliases are normalised to k1/k2/k3."""

    kl_clamp: float | None = 10.0
    """Clamp per-token KL values to [-c, c], as verl/EasyR1 do for low_var_kl (here applied to every
    estimator); beyond it the KL gradient is zero.  None disables; otherwise > 0."""

    kl_in: str = "loss"
    """Where the KL to the reference enters: "loss" (paper) adds beta * KL to the per-token loss;
    "reward" subtracts beta * sequence KL (:func:`sequence_kl`) from the scalar reward before advantages."""

    loss_agg_mode: str = "token-mean"
    """How per-token losses become a scalar: "token-mean" (paper, DAPO), "seq-mean-token-mean"
    (original GRPO, DeepSeekMath) or "seq-mean-token-sum" (Dr. GRPO style).  See :func:`aggregate`."""

    log_ratio_clamp: float = 20.0
    """Log-ratios are clamped to [-c, c] before ``exp`` (policy ratio and k3), as verl does with 20;
    beyond it the gradient is zero.  > 0."""

    def __post_init__(self) -> None:
        if not _is_number(self.clip_ratio_low) or not 0.0 <= self.clip_ratio_low < 1.0:
            raise ValueError(f"algo.clip_ratio_low must be in [0, 1), got {self.clip_ratio_low!r}")
        if not _is_number(self.clip_ratio_high) or self.clip_ratio_high < 0.0:
            raise ValueError(f"algo.clip_ratio_high must be >= 0, got {self.clip_ratio_high!r}")
        if self.dual_clip is not None and (not _is_number(self.dual_clip) or self.dual_clip <= 1.0):
            raise ValueError(f"algo.dual_clip must be > 1 or null, got {self.dual_clip!r}")
        if not _is_number(self.kl_beta) or self.kl_beta < 0.0:
            raise ValueError(f"algo.kl_beta must be >= 0, got {self.kl_beta!r}")
        self.kl_estimator = canonical_kl_estimator(self.kl_estimator)
        if self.kl_clamp is not None and (not _is_number(self.kl_clamp) or self.kl_clamp <= 0.0):
            raise ValueError(f"algo.kl_clamp must be > 0 or null, got {self.kl_clamp!r}")
        if self.kl_in not in KL_INS:
            raise ValueError(f"algo.kl_in must be one of {list(KL_INS)}, got {self.kl_in!r}")
        if self.loss_agg_mode not in LOSS_AGG_MODES:
            raise ValueError(f"algo.loss_agg_mode must be one of {list(LOSS_AGG_MODES)}, got {self.loss_agg_mode!r}")
        if not _is_number(self.log_ratio_clamp) or self.log_ratio_clamp <= 0.0:
            raise ValueError(f"algo.log_ratio_clamp must be > 0, got {self.log_ratio_clamp!r}")


# -- advantages --------------------------------------------------------------------------------------------------


def group_advantages(
    rewards: Tensor | Sequence[Sequence[float]],
    unbiased: bool = True,
    eps: float = 1e-6,
    scale: bool = True,
) -> Tensor:
    """GRPO outcome advantages, normalised within each group of responses to one prompt.

    Variant: ``(r - mean_g) / (std_g + eps)`` with the UNBIASED (n - 1) std by default, as in the
    SpatialThinker code, verl (``compute_grpo_outcome_advantage``, ``torch.std``) and EasyR1;
    ``unbiased=False`` gives the biased (n) std, i.e. values smaller by ``sqrt((n - 1) / n)``.
    ``scale=False`` only centres (Dr. GRPO, arXiv 2503.20783, drops the std division).

    Groups with no spread (all rewards equal) and single-response groups get exact zeros (no NaN from
    the std of one element, no ``tiny / eps`` blow-up from floating-point rounding of the mean).

    Args:
        rewards: ``[G, n]`` scalar rewards, G groups (prompts) of n responses; a tensor or nested
            lists.  Must be finite.
        unbiased: use the n - 1 (Bessel) std.
        eps: added to the std in the denominator.
        scale: divide by ``std + eps``; otherwise only subtract the group mean.

    Returns:
        ``[G, n]`` float32 advantages (on the input tensor's device).
    """
    if isinstance(rewards, Tensor):
        r = rewards.detach().to(torch.float64)
    else:
        rows = [list(g) for g in rewards]
        if len({len(g) for g in rows}) > 1:
            raise ValueError("rewards must be a rectangular [G, n] array: groups differ in size")
        r = torch.tensor(rows, dtype=torch.float64)
        if r.ndim == 1:  # no groups at all: []
            r = r.reshape(0, 0)
    if r.ndim != 2:
        raise ValueError(f"rewards must have shape [G, n], got {tuple(r.shape)}")
    if r.numel() == 0:
        return torch.zeros(r.shape, dtype=torch.float32, device=r.device)
    if not bool(torch.isfinite(r).all()):
        raise ValueError("rewards must be finite")
    n = r.shape[1]
    centered = r - r.mean(dim=1, keepdim=True)
    spread = r.amax(dim=1, keepdim=True) > r.amin(dim=1, keepdim=True)  # [G, 1]; False when n == 1
    if scale and n > 1:
        std = r.std(dim=1, keepdim=True, correction=1 if unbiased else 0)
        centered = centered / (std + eps)
    adv = torch.where(spread, centered, torch.zeros_like(centered))
    return adv.to(torch.float32)


# -- KL ----------------------------------------------------------------------------------------------------------


def kl_penalty(
    logp: Tensor,
    ref_logp: Tensor,
    estimator: str = "k3",
    clamp: float | None = 10.0,
    *,
    mask: Tensor | None = None,
    log_ratio_clamp: float = 20.0,
) -> Tensor:
    """Per-token estimate of KL(pi_theta || pi_ref) from sampled-token log-probs.

    Estimators (J. Schulman, "Approximating KL divergence", 2020; names as in verl ``kl_penalty``):

    - ``"k1"`` (verl "kl"): ``logp - ref_logp``; unbiased, high variance, can be negative.
    - ``"k2"`` (verl "mse"): ``0.5 * (logp - ref_logp) ** 2``.
    - ``"k3"`` (verl/EasyR1 "low_var_kl", used by GRPO/DeepSeekMath and the paper):
      ``exp(d) - d - 1`` with ``d = ref_logp - logp``; unbiased and >= 0.

    For k3 the log-ratio ``d`` is clamped to ``[-log_ratio_clamp, log_ratio_clamp]`` before ``exp``
    (verl uses 20).  Every estimate is then clamped to ``[-clamp, clamp]`` (verl/EasyR1 clamp
    low_var_kl to [-10, 10]; here all estimators, ``clamp=None`` to disable).  Beyond either clamp the
    gradient is zero, so a reference far above the policy cannot produce an ``e^d`` gradient.

    Args:
        logp: ``[B, T]`` log-probs of the sampled tokens under the current policy.
        ref_logp: ``[B, T]`` log-probs of the same tokens under the reference policy.
        estimator: "k1"/"kl", "k2"/"mse" or "k3"/"low_var_kl".
        clamp: bound on |KL| per token, or None.
        mask: optional ``[B, T]`` bool, True on response tokens; masked-out positions are zeroed before
            any arithmetic and are exactly 0 in the output.
        log_ratio_clamp: bound on |d| before ``exp`` (k3).

    Returns:
        ``[B, T]`` per-token KL estimates, differentiable w.r.t. ``logp``.
    """
    kind = canonical_kl_estimator(estimator)
    diff = ref_logp.to(logp.dtype) - logp  # d = log pi_ref - log pi
    if mask is not None:
        diff = torch.where(mask.bool(), diff, torch.zeros_like(diff))
    if kind == "k1":
        kl = -diff
    elif kind == "k2":
        kl = 0.5 * diff.square()
    else:
        d = diff.clamp(-log_ratio_clamp, log_ratio_clamp)
        kl = torch.exp(d) - d - 1.0
    if clamp is not None:
        kl = kl.clamp(-clamp, clamp)
    return kl


def sequence_kl(logp: Tensor, ref_logp: Tensor, mask: Tensor, settings: LossSettings | None = None) -> Tensor:
    """Per-sequence KL for ``kl_in == "reward"``: the token sum of :func:`kl_penalty` over the response.

    Variant: KL-in-reward (classic RLHF/InstructGPT PPO; verl ``apply_kl_penalty`` with
    ``use_kl_in_reward``).  verl subtracts ``beta * kl`` per token from the token-level rewards and the
    GRPO outcome estimator then sums them, which equals ``reward - beta * sequence_kl`` on the scalar
    reward; do that before :func:`group_advantages`.  Uses ``settings.kl_estimator``, ``kl_clamp`` and
    ``log_ratio_clamp``.  The result is detached (a reward carries no gradient).

    Args:
        logp: ``[B, T]`` policy log-probs (usually those of the rollout / old policy).
        ref_logp: ``[B, T]`` reference log-probs.
        mask: ``[B, T]`` bool, True on response tokens.
        settings: loss settings (defaults: the paper's).

    Returns:
        ``[B]`` summed KL per sequence (0 for a sequence with no response token).
    """
    s = settings if settings is not None else LossSettings()
    m = mask.bool()
    with torch.no_grad():
        kl = kl_penalty(logp, ref_logp, s.kl_estimator, s.kl_clamp, mask=m, log_ratio_clamp=s.log_ratio_clamp)
        return torch.where(m, kl, torch.zeros_like(kl)).sum(dim=-1).detach()


# -- policy loss -------------------------------------------------------------------------------------------------


def _token_advantages(advantages: Tensor, like: Tensor) -> Tensor:
    """``[B]`` or ``[B, T]`` advantages -> ``[B, T]`` in ``like``'s dtype/device."""
    adv = torch.as_tensor(advantages, device=like.device).to(like.dtype)
    if adv.ndim == 1:
        adv = adv.unsqueeze(-1)
    if adv.ndim != 2 or adv.shape[0] != like.shape[0] or adv.shape[1] not in (1, like.shape[1]):
        raise ValueError(
            f"advantages must have shape [B] or [B, T] with [B, T] = {tuple(like.shape)}, got {tuple(adv.shape)}"
        )
    return adv.expand_as(like)


def _check_same_shape(mask: Tensor, **tensors: Tensor | None) -> None:
    for name, t in tensors.items():
        if t is not None and t.shape != mask.shape:
            raise ValueError(f"{name} must have the mask's shape {tuple(mask.shape)}, got {tuple(t.shape)}")


def _masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    return torch.where(mask, x, torch.zeros_like(x)).sum() / mask.sum().clamp_min(1)


def policy_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    settings: LossSettings | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Per-token clipped PPO surrogate with clip-higher and dual clip (to minimise).

    Variant: verl ``compute_policy_loss`` ("vanilla") / EasyR1 ``compute_policy_loss``, used by the
    paper.  With ``r = exp(clamp(logp - old_logp))`` and per-token advantage A:

    - ``L = max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high))`` (PPO, Schulman et al. 2017, with
      decoupled eps_low / eps_high: clip-higher, DAPO arXiv 2503.14476);
    - for A < 0 and ``dual_clip = c``: ``L = min(L, -A * c)`` (dual-clip PPO, Ye et al. 2020,
      arXiv 1912.09729), which bounds the loss (and zeroes the gradient) when r > c.

    Args:
        logp: ``[B, T]`` sampled-token log-probs under the current policy (requires grad).
        old_logp: ``[B, T]`` log-probs under the policy that generated the rollout.
        advantages: ``[B]`` sequence advantages (broadcast over tokens) or ``[B, T]``.
        mask: ``[B, T]`` bool, True on response tokens; masked-out entries are zeroed before ``exp``.
        settings: loss settings (defaults: the paper's).

    Returns:
        ``(per_token_loss [B, T], stats)``: per-token loss, exactly 0 at masked-out positions; stats
        (Python floats, means over response tokens): ``clip_frac_high`` (A > 0, r > 1 + eps_high),
        ``clip_frac_low`` (A < 0, r < 1 - eps_low), ``clip_frac`` (either), ``dual_clip_frac`` (A < 0,
        capped at ``-A * c``), ``ratio_mean`` and ``ratio_max`` (0 when there is no response token).
    """
    s = settings if settings is not None else LossSettings()
    _check_same_shape(mask, logp=logp, old_logp=old_logp)
    m = mask.bool()
    zero = torch.zeros_like(logp)
    adv = torch.where(m, _token_advantages(advantages, logp), zero)
    log_ratio = torch.where(m, logp - old_logp.to(logp.dtype), zero)
    ratio = torch.exp(log_ratio.clamp(-s.log_ratio_clamp, s.log_ratio_clamp))
    loss_unclipped = -adv * ratio
    loss_clipped = -adv * ratio.clamp(1.0 - s.clip_ratio_low, 1.0 + s.clip_ratio_high)
    loss = torch.maximum(loss_unclipped, loss_clipped)
    dual = torch.zeros_like(m)
    if s.dual_clip is not None:
        loss_dual = -adv * s.dual_clip
        dual = (adv < 0) & (loss > loss_dual) & m
        loss = torch.where(adv < 0, torch.minimum(loss, loss_dual), loss)
    loss = torch.where(m, loss, zero)

    with torch.no_grad():
        clipped = (loss_clipped > loss_unclipped) & m
        r = ratio.detach()
        stats = {
            "clip_frac_high": float(_masked_mean((clipped & (r > 1.0)).to(r.dtype), m)),
            "clip_frac_low": float(_masked_mean((clipped & (r < 1.0)).to(r.dtype), m)),
            "clip_frac": float(_masked_mean(clipped.to(r.dtype), m)),
            "dual_clip_frac": float(_masked_mean(dual.to(r.dtype), m)),
            "ratio_mean": float(_masked_mean(r, m)),
            "ratio_max": float(torch.where(m, r, torch.zeros_like(r)).max()) if r.numel() else 0.0,
        }
    return loss, stats


# -- aggregation -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LossNormalizer:
    """The denominators of :func:`aggregate` taken from a whole mini-batch, so that a mini-batch split into
    micro-batches (any number, any sizes) gives the loss and gradient of the unsplit mini-batch as the SUM of its
    micro-batch losses: ``token-mean`` divides by ``tokens``, the ``seq-mean-*`` modes by ``sequences``. Never the
    number of micro-batches (which changes with token-budget packing)."""

    tokens: int
    """Response tokens of the mini-batch."""
    sequences: int
    """Sequences of the mini-batch with at least one response token."""

    @classmethod
    def of(cls, response_lengths: Sequence[int]) -> LossNormalizer:
        """From the response lengths of every sequence of the mini-batch."""
        return cls(int(sum(response_lengths)), sum(1 for n in response_lengths if n > 0))


def aggregate(
    per_token: Tensor, mask: Tensor, mode: str = "token-mean", normalizer: LossNormalizer | None = None
) -> Tensor:
    """Reduce a ``[B, T]`` per-token loss to a scalar over the response tokens (verl ``agg_loss``).

    With ``m`` the mask, ``L_i = sum_t m_it`` the response length and S the number of sequences with
    ``L_i > 0`` (fully masked rows are left out, as in verl):

    - ``"token-mean"``: ``sum_it m_it x_it / sum_it m_it``; every token weighs the same (DAPO,
      arXiv 2503.14476; the SpatialThinker paper, over the micro-batch).
    - ``"seq-mean-token-mean"``: ``(1/S) sum_i (1/L_i) sum_t m_it x_it``; every sequence weighs the same
      (original GRPO, DeepSeekMath arXiv 2402.03300).
    - ``"seq-mean-token-sum"``: ``(1/S) sum_i sum_t m_it x_it``; no length normalisation (Dr. GRPO,
      arXiv 2503.20783, which further divides by a constant generation budget, a mere rescaling).

    Masked-out entries are replaced by 0 with ``torch.where`` (not multiplied), so inf/NaN there cannot
    leak into the result or its gradient.  With no response token at all the result is 0 (still
    connected to the graph).

    With ``normalizer`` the denominators (``sum_it m_it`` and S) are the whole mini-batch's, and the rows given are
    one micro-batch of it: the micro-batch results sum to the mini-batch's.

    Args:
        per_token: ``[B, T]`` per-token values.
        mask: ``[B, T]`` bool, True on response tokens.
        mode: one of ``LOSS_AGG_MODES``.
        normalizer: the mini-batch's counts, or None (this batch is the whole mini-batch).

    Returns:
        0-dim tensor.
    """
    _check_same_shape(mask, per_token=per_token)
    m = mask.bool()
    x = torch.where(m, per_token, torch.zeros_like(per_token))
    if mode == "token-mean":
        if normalizer is not None:
            return x.sum() / max(normalizer.tokens, 1)
        return x.sum() / m.sum().clamp_min(1).to(x.dtype)
    lengths = m.sum(dim=-1)  # [B]
    if normalizer is not None:
        n_seq = torch.tensor(float(max(normalizer.sequences, 1)), dtype=x.dtype, device=x.device)
    else:
        n_seq = (lengths > 0).sum().clamp_min(1).to(x.dtype)
    seq = x.sum(dim=-1)  # [B]
    if mode == "seq-mean-token-mean":
        return (seq / lengths.clamp_min(1).to(x.dtype)).sum() / n_seq
    if mode == "seq-mean-token-sum":
        return seq.sum() / n_seq
    raise ValueError(f"algo.loss_agg_mode must be one of {list(LOSS_AGG_MODES)}, got {mode!r}")


# -- full objective ----------------------------------------------------------------------------------------------


def grpo_loss(
    logp: Tensor,
    old_logp: Tensor,
    ref_logp: Tensor | None,
    advantages: Tensor,
    mask: Tensor,
    settings: LossSettings | None = None,
    normalizer: LossNormalizer | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """GRPO objective to minimise: clipped surrogate (:func:`policy_loss`) + beta * KL, aggregated.

    Variant: GRPO (DeepSeekMath, arXiv 2402.03300) as trained by SpatialThinker with EasyR1/verl:
    per token ``l = L_clip + beta * KL_k3(pi || pi_ref)``, then ``aggregate(l, mask, loss_agg_mode)``.
    The KL term is added only when ``kl_in == "loss"``, ``kl_beta > 0`` and ``ref_logp`` is given; with
    ``kl_in == "reward"`` it belongs in the reward instead (:func:`sequence_kl`).

    Args:
        logp: ``[B, T]`` current-policy log-probs (requires grad); padding may hold any value.
        old_logp: ``[B, T]`` rollout-policy log-probs.
        ref_logp: ``[B, T]`` reference-policy log-probs, or None.
        advantages: ``[B]`` or ``[B, T]``.
        mask: ``[B, T]`` bool, True on response tokens.
        settings: loss settings (defaults: the paper's).
        normalizer: the whole mini-batch's counts when these rows are one micro-batch of it (see
            :class:`LossNormalizer`); ``loss``, ``pg_loss`` and ``kl`` are then this micro-batch's share.

    Returns:
        ``(loss, stats)``: a 0-dim loss and Python-float stats: those of :func:`policy_loss` plus
        ``pg_loss`` and ``kl`` (each aggregated like the loss; ``kl`` is 0.0 without ``ref_logp`` and is
        reported even when it is not in the loss) and ``loss``.  When the KL is in the loss,
        ``loss == pg_loss + kl_beta * kl``.
    """
    s = settings if settings is not None else LossSettings()
    _check_same_shape(mask, ref_logp=ref_logp)
    m = mask.bool()
    pg_tok, stats = policy_loss(logp, old_logp, advantages, m, s)
    per_token = pg_tok
    kl_value = 0.0
    if ref_logp is not None:
        kl_in_loss = s.kl_in == "loss" and s.kl_beta > 0
        with torch.set_grad_enabled(kl_in_loss and torch.is_grad_enabled()):
            kl_tok = kl_penalty(logp, ref_logp, s.kl_estimator, s.kl_clamp, mask=m, log_ratio_clamp=s.log_ratio_clamp)
        if kl_in_loss:
            per_token = per_token + s.kl_beta * kl_tok
        kl_value = float(aggregate(kl_tok.detach(), m, s.loss_agg_mode, normalizer))
    loss = aggregate(per_token, m, s.loss_agg_mode, normalizer)
    stats["pg_loss"] = float(aggregate(pg_tok.detach(), m, s.loss_agg_mode, normalizer))
    stats["kl"] = kl_value
    stats["loss"] = float(loss.detach())
    return loss, stats
