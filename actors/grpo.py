"""GRPO math: group-relative advantages, the clipped surrogate with a KL
penalty to the reference policy, and batched token log-probabilities for
Qwen2.5-VL-style inputs (text + images)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch


def group_advantages(rewards: Sequence[float], group_ids: Sequence[int], eps: float = 1e-6, scale: bool = True) -> list[float]:
    """(r - mean_group) / (std_group + eps); zero for groups with no spread."""
    r = torch.as_tensor(list(rewards), dtype=torch.float64)
    g = torch.as_tensor(list(group_ids), dtype=torch.long)
    if r.numel() != g.numel():
        raise ValueError("rewards and group_ids differ in length")
    adv = torch.zeros_like(r)
    for gid in torch.unique(g):
        m = g == gid
        x = r[m]
        centered = x - x.mean()
        if scale:
            std = x.std(unbiased=False) if x.numel() > 1 else torch.tensor(0.0, dtype=x.dtype)
            centered = centered / (std + eps) if std > eps else torch.zeros_like(centered)
        adv[m] = centered
    return adv.tolist()


@dataclass
class LossConfig:
    clip_eps: float = 0.2
    clip_eps_high: float | None = None
    kl_beta: float = 0.01
    token_mean: bool = True  # True: mean over all tokens of the batch; False: mean of per-sequence means


def grpo_loss(logp, old_logp, ref_logp, advantages, mask, cfg: LossConfig):
    """Clipped GRPO objective (to minimise) and diagnostics.

    logp, old_logp, ref_logp, mask: [B, T]; advantages: [B].
    KL uses the k3 estimator exp(ref - logp) - (ref - logp) - 1 (>= 0).
    """
    mask = mask.to(logp.dtype)
    adv = advantages.to(logp.dtype).unsqueeze(1)
    ratio = torch.exp(logp - old_logp)
    hi = cfg.clip_eps if cfg.clip_eps_high is None else cfg.clip_eps_high
    surr1 = ratio * adv
    surr2 = torch.clamp(ratio, 1.0 - cfg.clip_eps, 1.0 + hi) * adv
    pg = -torch.minimum(surr1, surr2)
    per_tok = pg
    kl = torch.zeros_like(logp)
    if cfg.kl_beta > 0 and ref_logp is not None:
        d = ref_logp - logp
        kl = torch.exp(d) - d - 1.0
        per_tok = per_tok + cfg.kl_beta * kl
    if cfg.token_mean:
        denom = mask.sum().clamp_min(1.0)
        loss = (per_tok * mask).sum() / denom
        kl_mean = (kl * mask).sum() / denom
    else:
        lens = mask.sum(1).clamp_min(1.0)
        loss = ((per_tok * mask).sum(1) / lens).mean()
        kl_mean = ((kl * mask).sum(1) / lens).mean()
    with torch.no_grad():
        n_tok = mask.sum().clamp_min(1.0)
        clipped = ((surr2 < surr1).to(logp.dtype) * mask).sum() / n_tok
        ratio_mean = (ratio.detach() * mask).sum() / n_tok
    return loss, {"kl": float(kl_mean.detach()), "clip_frac": float(clipped), "ratio_mean": float(ratio_mean)}


def collate(trajs: list[dict], pad_id: int):
    """Right-pad prompt+response sequences of a micro-batch.  Returns model
    kwargs, target ids and a response mask aligned with next-token logits."""
    seqs = [list(t["prompt_ids"]) + list(t["response_ids"]) for t in trajs]
    T = max(len(s) for s in seqs)
    B = len(seqs)
    ids = torch.full((B, T), pad_id, dtype=torch.long)
    attn = torch.zeros((B, T), dtype=torch.long)
    resp = torch.zeros((B, T), dtype=torch.bool)
    for i, (t, s) in enumerate(zip(trajs, seqs)):
        ids[i, : len(s)] = torch.tensor(s, dtype=torch.long)
        attn[i, : len(s)] = 1
        resp[i, len(t["prompt_ids"]) : len(s)] = True
    kwargs = {"input_ids": ids, "attention_mask": attn}
    pv = [t["pixel_values"] for t in trajs if t.get("pixel_values") is not None]
    if pv:
        kwargs["pixel_values"] = torch.cat([torch.as_tensor(p) for p in pv], 0)
        kwargs["image_grid_thw"] = torch.cat([torch.as_tensor(t["image_grid_thw"]) for t in trajs if t.get("image_grid_thw") is not None], 0)
    # logits at position j predict token j+1
    target = ids[:, 1:]
    mask = resp[:, 1:]
    return kwargs, target, mask


def token_logprobs(model, trajs: list[dict], pad_id: int, temperature: float = 1.0, grad: bool = False):
    """Log-probabilities of each response token, [B, T-1] with mask."""
    kwargs, target, mask = collate(trajs, pad_id)
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in kwargs.items()}
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        out = model(**kwargs, use_cache=False)
        logits = out.logits[:, :-1, :].float()
        if temperature != 1.0:
            logits = logits / temperature
        lp = torch.log_softmax(logits, dim=-1).gather(-1, target.to(device).unsqueeze(-1)).squeeze(-1)
    return lp, mask.to(device)


def unpad(lp: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """Per-sample response-token log-probs as 1-D CPU tensors."""
    return [lp[i][mask[i]].detach().float().cpu() for i in range(lp.shape[0])]


def repad(rows: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for i, r in enumerate(rows):
        out[i][mask[i]] = r.to(out.device, torch.float32)
    return out
