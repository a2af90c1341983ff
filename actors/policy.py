"""Batching and token log-probabilities of prompt groups under a Qwen2.5-VL-style policy.

Used by the learner ranks (with gradients), the reference actor and the warm start. A prompt group's image tensors
are stored once (:class:`actors.records.ImageInputs`); a micro-batch that holds several responses of one group
repeats them only in local memory for the forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from actors.records import EncodedPrompt, GroupLogprobs, PromptGroup


@dataclass
class Sequence:
    """One prompt + response to score: an index into a list of groups, resolved to its token ids."""

    prompt: EncodedPrompt
    """The group's prompt (shared by all responses of the group)."""
    response_ids: list[int]
    """[T_r] the response's token ids."""


def sequences(groups: list[PromptGroup]) -> list[Sequence]:
    """All responses of ``groups`` in order (group-major), as sequences to score."""
    return [Sequence(g.prompt, r.token_ids) for g in groups for r in g.responses]


def image_inputs(ids: torch.Tensor, images: list, image_token_id: int) -> dict:
    """Model kwargs for the images of a batch: ``pixel_values`` [sum P, D], ``image_grid_thw`` [sum I, 3] and
    ``mm_token_type_ids`` [B, T] (1 at image tokens). Without the last, transformers gives image prompts plain 1-D
    positions instead of Qwen2.5-VL's 3-D (M-RoPE) ones, and the learner scores a different model than the engine."""
    if not images:
        return {}
    return {
        "pixel_values": torch.cat([im.pixel_values for im in images], 0),
        "image_grid_thw": torch.cat([im.image_grid_thw for im in images], 0),
        "mm_token_type_ids": (ids == image_token_id).int(),
    }


def collate(batch: list[Sequence], pad_id: int, image_token_id: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """Right-pad prompt+response sequences of a micro-batch of B sequences.

    Returns ``(model_kwargs, target, mask)``: ``input_ids`` and ``attention_mask`` [B, T] (plus the image inputs of
    :func:`image_inputs`), ``target`` [B, T-1] the next token at each position and ``mask`` [B, T-1] bool, True where
    the target is a response token.
    """
    seqs = [list(s.prompt.input_ids) + list(s.response_ids) for s in batch]
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    attention = torch.zeros((len(seqs), width), dtype=torch.long)
    response = torch.zeros((len(seqs), width), dtype=torch.bool)
    for i, (s, tokens) in enumerate(zip(batch, seqs)):
        ids[i, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        attention[i, : len(tokens)] = 1
        response[i, len(s.prompt.input_ids) : len(tokens)] = True
    kwargs = {"input_ids": ids, "attention_mask": attention}
    kwargs.update(image_inputs(ids, [s.prompt.images for s in batch if s.prompt.images is not None], image_token_id))
    # logits at position j predict token j + 1
    return kwargs, ids[:, 1:], response[:, 1:]


def token_logprobs(
    model,
    batch: list[Sequence],
    pad_id: int,
    temperature: float = 1.0,
    grad: bool = False,
    blocked: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every response token at ``temperature``: ``(logprobs [B, T-1] float32, mask [B, T-1])``.

    ``blocked`` token ids (image and vision tokens, which every engine suppresses) get no probability mass, so the
    log-probs are those of the distribution the engines sample from.

    Positions outside the mask hold arbitrary values (prompt and padding); consumers must mask before any
    exponential (see :func:`actors.grpo.grpo_loss`).
    """
    config = getattr(model, "module", model).config  # a DeepSpeed engine wraps the model
    kwargs, target, mask = collate(batch, pad_id, config.image_token_id)
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in kwargs.items()}
    with torch.enable_grad() if grad else torch.no_grad():
        logits = model(**kwargs, use_cache=False).logits[:, :-1, :].float()
        if temperature != 1.0:
            logits = logits / temperature
        if blocked:  # out of place: the logits may be a view autograd still needs
            logits = logits.index_fill(-1, torch.tensor(blocked, device=logits.device), float("-inf"))
        logprobs = torch.log_softmax(logits, dim=-1).gather(-1, target.to(device).unsqueeze(-1)).squeeze(-1)
    return logprobs, mask.to(device)


def unpad(logprobs: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
    """[B, T] padded log-probs -> B 1-D CPU tensors of the response tokens."""
    return [logprobs[i][mask[i]].detach().float().cpu() for i in range(logprobs.shape[0])]


def repad(rows: list[torch.Tensor], mask: torch.Tensor) -> torch.Tensor:
    """B 1-D response log-prob tensors -> [B, T] float32 aligned with ``mask`` (zeros elsewhere)."""
    out = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
    for i, row in enumerate(rows):
        out[i][mask[i]] = row.to(out.device, torch.float32)
    return out


def sequence_logprobs(
    model, batch: list[Sequence], pad_id: int, temperature: float, micro_batch: int, blocked: list[int] | None = None
) -> list:
    """Response-token log-probs of many sequences, ``micro_batch`` at a time: a list of 1-D CPU tensors."""
    out: list[torch.Tensor] = []
    for i in range(0, len(batch), micro_batch):
        out.extend(unpad(*token_logprobs(model, batch[i : i + micro_batch], pad_id, temperature, blocked=blocked)))
    return out


def group_logprobs(
    model,
    groups: list[PromptGroup],
    pad_id: int,
    temperature: float,
    micro_batch: int,
    blocked: list[int] | None = None,
) -> list:
    """Per-group :class:`GroupLogprobs` of every response of ``groups``, scored ``micro_batch`` sequences at a time."""
    flat = sequence_logprobs(model, sequences(groups), pad_id, temperature, micro_batch, blocked)
    out, k = [], 0
    for g in groups:
        out.append(GroupLogprobs(flat[k : k + len(g)]))
        k += len(g)
    return out
