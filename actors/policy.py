"""Batching and token log-probabilities of prompt groups under a Qwen2.5-VL-style policy.

Used by the learner ranks (with gradients), the reference actor and the warm start. A prompt group's image tensors
are stored once (:class:`actors.records.ImageInputs`); a micro-batch that holds several responses of one group
repeats them only in local memory for the forward pass.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from actors.records import EncodedPrompt, GroupLogprobs, PromptGroup

log = logging.getLogger(__name__)


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


LOGPROB_CHUNK_TOKENS = 512
"""Default response tokens per log-softmax chunk: at Qwen2.5-VL's vocabulary (151,936) one float32 chunk of logits
is 311 MB, and the forward and the backward each hold about two such copies at a time."""


class ChunkedTokenLogprobs(torch.autograd.Function):
    """``log softmax(h W^T / temperature)[target]`` for N positions, ``chunk`` positions at a time.

    Forward and backward never hold more than a ``[chunk, V]`` slice of the logits (plus one temporary of that
    size): the backward recomputes each chunk's logits from the saved ``hidden`` and ``weight`` and applies
    ``d logp / d logits = (onehot(target) - softmax) / temperature`` by hand. Blocked token ids get -inf logits
    inside each chunk, so they carry no probability mass and no gradient (as ``index_fill`` does in
    :func:`full_vocabulary_logprobs`). The weight gradient is accumulated in the weight's dtype, as the full-vocabulary
    path's ``lm_head`` backward produces it.

    Inputs: ``hidden`` [N, H] (the final hidden states, after the model's last norm), ``weight`` [V, H] (the
    ``lm_head`` weight, no bias), ``target`` [N] long. Output: [N] float32 log-probs.
    """

    @staticmethod
    def forward(ctx, hidden, weight, target, temperature: float, blocked, chunk: int):
        out = torch.empty(hidden.shape[0], dtype=_logit_dtype(weight), device=hidden.device)
        for lo in range(0, hidden.shape[0], chunk):
            logits = _chunk_logits(hidden[lo : lo + chunk], weight, temperature, blocked)
            picked = logits.gather(-1, target[lo : lo + chunk, None]).squeeze(-1)
            top, total = _exp_shifted_(logits)
            out[lo : lo + chunk] = picked - top.squeeze(-1) - total.log().squeeze(-1)
        ctx.save_for_backward(hidden, weight, target)
        ctx.temperature, ctx.blocked, ctx.chunk = temperature, blocked, chunk
        return out

    @staticmethod
    def backward(ctx, grad_out):
        hidden, weight, target = ctx.saved_tensors
        need_hidden, need_weight = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_hidden = torch.empty_like(hidden) if need_hidden else None
        grad_weight = torch.zeros_like(weight) if need_weight else None
        for lo in range(0, hidden.shape[0], ctx.chunk):
            h = hidden[lo : lo + ctx.chunk]
            logits = _chunk_logits(h, weight, ctx.temperature, ctx.blocked)
            # softmax in place, then d logp / d logits = (onehot - p) / T, scaled by the incoming gradient
            probs = logits.div_(_exp_shifted_(logits)[1])
            g = grad_out[lo : lo + ctx.chunk].to(logits.dtype)
            grad_logits = probs.mul_(-(g / ctx.temperature)[:, None])
            grad_logits.scatter_add_(-1, target[lo : lo + ctx.chunk, None], (g / ctx.temperature)[:, None])
            grad_logits = grad_logits.to(weight.dtype)
            if need_hidden:
                grad_hidden[lo : lo + ctx.chunk] = grad_logits @ weight
            if need_weight:
                grad_weight.addmm_(grad_logits.t(), h.to(weight.dtype))
        return grad_hidden, grad_weight, None, None, None, None


def _exp_shifted_(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """In place, ``logits`` [C, V] -> ``exp(logits - max)``; returns ``(max, sum)`` [C, 1], so the log-sum-exp is
    ``max + log(sum)``. No [C, V] temporary (``torch.logsumexp`` makes one)."""
    top = logits.amax(-1, keepdim=True)
    total = logits.sub_(top).exp_().sum(-1, keepdim=True)
    return top, total


def _logit_dtype(weight: torch.Tensor) -> torch.dtype:
    """float32 for bf16/fp16/fp32 weights (float64 ones stay float64, for gradcheck)."""
    return torch.promote_types(weight.dtype, torch.float32)


def _chunk_logits(hidden: torch.Tensor, weight: torch.Tensor, temperature: float, blocked) -> torch.Tensor:
    """[C, H] hidden states -> [C, V] float32 logits at ``temperature`` with the ``blocked`` columns at -inf (as the
    full-vocabulary path: the projection in the weight's dtype, then float32)."""
    logits = torch.nn.functional.linear(hidden.to(weight.dtype), weight).to(_logit_dtype(weight))
    if temperature != 1.0:
        logits.div_(temperature)
    if blocked is not None:
        logits.index_fill_(-1, blocked, float("-inf"))
    return logits


def chunked_logprobs(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    target: torch.Tensor,
    temperature: float = 1.0,
    blocked: list[int] | None = None,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> torch.Tensor:
    """[N, H] final hidden states, [V, H] output projection, [N] targets -> [N] float32 log-probs of the targets at
    ``temperature``, computed ``chunk_tokens`` positions at a time (:class:`ChunkedTokenLogprobs`)."""
    ids = torch.tensor(blocked, dtype=torch.long, device=hidden.device) if blocked else None
    return ChunkedTokenLogprobs.apply(hidden, weight, target, float(temperature), ids, max(1, int(chunk_tokens)))


@contextmanager
def _head_returns_logprobs(head: torch.nn.Module, forward):
    """Route the output projection's forward to ``forward`` for one model call.

    Why not call the decoder and the projection separately: under DeepSpeed ZeRO-3 the projection weight is only
    gathered inside the module's own forward (and again for its backward, by hooks on its outputs), so the chunked
    computation has to run as ``lm_head``'s forward; the model's ``.logits`` output is then the [N] log-prob tensor.
    """
    head.forward = forward
    try:
        yield
    finally:
        del head.forward


def token_logprobs(
    model,
    batch: list[Sequence],
    pad_id: int,
    temperature: float = 1.0,
    grad: bool = False,
    blocked: list[int] | None = None,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability of every response token at ``temperature``: ``(logprobs [B, T-1] float32, mask [B, T-1])``.

    ``blocked`` token ids (image and vision tokens, which every engine suppresses) get no probability mass, so the
    log-probs are those of the distribution the engines sample from.

    Only the positions that predict a response token are projected onto the vocabulary, ``chunk_tokens`` at a time
    (:class:`ChunkedTokenLogprobs`), so memory does not grow with vocabulary x sequence length. ``chunk_tokens=0``
    selects :func:`full_vocabulary_logprobs` (float32 logits at every position; kept as the reference
    implementation the tests and ``scripts/bench_memory.py`` compare against).

    Positions outside the mask hold 0 (prompt and padding); consumers must mask before any exponential (see
    :func:`actors.grpo.grpo_loss`).
    """
    if not chunk_tokens:
        return full_vocabulary_logprobs(model, batch, pad_id, temperature, grad, blocked)
    module = getattr(model, "module", model)  # a DeepSpeed engine wraps the model
    kwargs, target, mask = collate(batch, pad_id, module.config.image_token_id)
    device = next(model.parameters()).device
    kwargs = {k: v.to(device) for k, v in kwargs.items()}
    target, mask = target.to(device), mask.to(device)
    head = module.get_output_embeddings()
    if head.bias is not None:
        raise ValueError("chunked log-probs need an output projection without bias (Qwen2.5-VL has none)")

    def response_logprobs(hidden: torch.Tensor) -> torch.Tensor:  # [B, T, H] -> [N] at the response positions
        return chunked_logprobs(hidden[:, :-1][mask], head.weight, target[mask], temperature, blocked, chunk_tokens)

    with torch.enable_grad() if grad else torch.no_grad(), _head_returns_logprobs(head, response_logprobs):
        picked = model(**kwargs, use_cache=False).logits
        logprobs = torch.zeros(mask.shape, dtype=torch.float32, device=device).masked_scatter(mask, picked)
    return logprobs, mask


def full_vocabulary_logprobs(
    model,
    batch: list[Sequence],
    pad_id: int,
    temperature: float = 1.0,
    grad: bool = False,
    blocked: list[int] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The former :func:`token_logprobs`: float32 logits over the whole vocabulary at every prompt and response
    position, two more full copies (blocked tokens, log-softmax). Same outputs as :func:`token_logprobs` (values and
    gradients within 1e-5 in float32) at several times its memory; kept as the reference implementation."""
    config = getattr(model, "module", model).config
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


def sequence_length(seq: Sequence) -> int:
    """Tokens of a sequence in the forward pass: prompt (image tokens included) + response."""
    return len(seq.prompt.input_ids) + len(seq.response_ids)


@dataclass
class MicroBatchPlan:
    """How one batch of sequences is cut into forward/backward passes."""

    batches: list[list[int]]
    """Indices into the batch, one list per micro-batch (every index exactly once)."""
    tokens: int
    """Real tokens (prompt + response) of all sequences."""
    padded_tokens: int
    """Tokens the passes process: per micro-batch, sequences x its longest sequence."""

    @property
    def padding_fraction(self) -> float:
        return 1.0 - self.tokens / self.padded_tokens if self.padded_tokens else 0.0


def plan_micro_batches(
    lengths: list[int],
    micro_batch_size: int,
    max_tokens: int | None = None,
    setting: str = "max_tokens",
    min_count: int = 0,
) -> MicroBatchPlan:
    """Cut sequences of ``lengths`` tokens into micro-batches.

    - ``max_tokens`` 0/None: fixed count, ``micro_batch_size`` consecutive sequences per micro-batch.
    - Otherwise token budget (verl ``use_dynamic_bsz``, OpenRLHF ``max_tokens_per_gpu``): first-fit decreasing by
      length, a sequence joining the first micro-batch where (sequences x longest) stays within ``max_tokens``
      (right padding makes that the size of the pass); ``micro_batch_size`` is not used. A sequence longer than the
      budget gets a micro-batch of its own, with a warning naming ``setting``.

    ``min_count``: split the micro-batches with the most sequences in two until there are at least this many (at
    most one per sequence). ZeRO-3 gathers parameters and reduces gradients in collectives on every forward and
    backward, so all ranks must make the same number of passes: the learner asks every rank for its count and plans
    again with the largest (verl balances its dynamic micro-batches across ranks the same way).
    """
    order = range(len(lengths))
    if not max_tokens:
        batches = [list(order[i : i + micro_batch_size]) for i in range(0, len(lengths), micro_batch_size)]
    else:
        batches, longest = [], []
        for i in sorted(order, key=lambda k: -lengths[k]):
            if lengths[i] > max_tokens:
                what = "a %d-token sequence exceeds %s=%d: it gets a micro-batch of its own"
                log.warning(what, lengths[i], setting, max_tokens)
            for b, members in enumerate(batches):
                if (len(members) + 1) * longest[b] <= max_tokens:
                    members.append(i)
                    break
            else:
                batches.append([i])
                longest.append(lengths[i])
    while len(batches) < min(min_count, len(lengths)):
        widest = max(range(len(batches)), key=lambda b: len(batches[b]))
        members = batches[widest]  # more than one: fewer batches than sequences
        batches[widest : widest + 1] = [members[: len(members) // 2], members[len(members) // 2 :]]
    padded = sum(len(b) * max(lengths[i] for i in b) for b in batches)
    return MicroBatchPlan(batches, sum(lengths), padded)


def aligned_micro_batches(
    lengths: list[int],
    micro_batch_size: int,
    max_tokens: int | None,
    setting: str,
    align: Callable[[int], int] | None,
) -> MicroBatchPlan:
    """:func:`plan_micro_batches`, then planned again with ``min_count=align(passes)`` when ``align`` is given (the
    learner's all-ranks maximum)."""
    plan = plan_micro_batches(lengths, micro_batch_size, max_tokens, setting)
    if align is None:
        return plan
    return plan_micro_batches(lengths, micro_batch_size, max_tokens, setting, align(len(plan.batches)))


def sequence_logprobs(
    model,
    batch: list[Sequence],
    pad_id: int,
    temperature: float,
    micro_batch: int,
    blocked: list[int] | None = None,
    max_tokens: int | None = None,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
    setting: str = "max_tokens_per_micro_batch",
    align: Callable[[int], int] | None = None,
) -> list:
    """Response-token log-probs of many sequences, in micro-batches of :func:`plan_micro_batches` (``micro_batch``
    sequences, or up to ``max_tokens`` padded tokens): a list of 1-D CPU tensors in ``batch`` order. ``align`` maps
    this process's number of passes to the number every ZeRO-3 rank makes (see ``min_count`` there)."""
    plan = aligned_micro_batches([sequence_length(s) for s in batch], micro_batch, max_tokens, setting, align)
    out: list = [None] * len(batch)
    for ids in plan.batches:
        part = [batch[i] for i in ids]
        rows = unpad(*token_logprobs(model, part, pad_id, temperature, False, blocked, chunk_tokens))
        for i, row in zip(ids, rows):
            out[i] = row
    return out


def group_logprobs(
    model,
    groups: list[PromptGroup],
    pad_id: int,
    temperature: float,
    micro_batch: int,
    blocked: list[int] | None = None,
    max_tokens: int | None = None,
    chunk_tokens: int = LOGPROB_CHUNK_TOKENS,
    setting: str = "max_tokens_per_micro_batch",
) -> list:
    """Per-group :class:`GroupLogprobs` of every response of ``groups``, scored as :func:`sequence_logprobs` does."""
    flat = sequence_logprobs(
        model, sequences(groups), pad_id, temperature, micro_batch, blocked, max_tokens, chunk_tokens, setting
    )
    out, k = [], 0
    for g in groups:
        out.append(GroupLogprobs(flat[k : k + len(g)]))
        k += len(g)
    return out
