"""Chunked response log-probs (actors.policy.token_logprobs) against the full-vocabulary reference implementation on
the tiny Qwen2.5-VL model with real image prompts: values and every parameter's gradient agree within 1e-5 in
float32, at a sampling temperature, with blocked tokens and with chunks smaller than one sequence's response.
Token-budget micro-batches: the budget holds, and micro-batched GRPO losses normalised by the mini-batch's counts
give the whole mini-batch's loss and gradient for every loss_agg_mode."""

import random

import pytest
import torch
from PIL import Image

from actors.grpo import LOSS_AGG_MODES, LossNormalizer, LossSettings, grpo_loss
from actors.model import PromptEncoder, load_policy
from actors.policy import (
    Sequence,
    chunked_logprobs,
    full_vocabulary_logprobs,
    plan_micro_batches,
    repad,
    sequence_length,
    token_logprobs,
)
from rewards.prompt import PromptBuilder

TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def policy(tiny_model):
    torch.manual_seed(0)
    return load_policy(tiny_model, "float32"), PromptEncoder(tiny_model)


def make_batch(encoder: PromptEncoder, lengths: list[int], seed: int = 0) -> list[Sequence]:
    """Image prompts of different sizes with random responses of ``lengths`` tokens (no blocked token in them)."""
    rng = random.Random(seed)
    prompts = PromptBuilder()
    vocab = encoder.tokenizer.vocab_size
    out = []
    for i, n in enumerate(lengths):
        size = (56 * (2 + i % 3), 56 * (2 + (i + 1) % 2))
        image = Image.new("RGB", size, (40 * i % 255, 90, 160))
        prompt = encoder.encode(prompts.messages(f"Is object {i} left of the cup?", ["yes", "no"], size), [image])
        response = [t for t in (rng.randrange(vocab) for _ in range(3 * n)) if t not in encoder.forbidden_ids][:n]
        out.append(Sequence(prompt, response))
    return out


def _grads(model) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_and_gradients_equal_full_vocabulary(policy, temperature):
    model, encoder = policy
    batch = make_batch(encoder, [7, 19, 1, 12])
    results = []
    for fn in (
        lambda: full_vocabulary_logprobs(model, batch, encoder.pad_token_id, temperature, True, encoder.forbidden_ids),
        lambda: token_logprobs(model, batch, encoder.pad_token_id, temperature, True, encoder.forbidden_ids, 5),
    ):
        model.zero_grad(set_to_none=True)
        logp, mask = fn()
        # a loss that weighs every response token differently, so every gradient entry is checked
        weights = torch.randn(mask.shape, generator=torch.Generator().manual_seed(2))
        loss = torch.where(mask, logp * weights, 0.0).sum()
        loss.backward()
        results.append((torch.where(mask, logp, 0.0).detach(), mask, _grads(model)))
    (full, full_mask, full_grads), (chunked, chunked_mask, chunked_grads) = results
    assert torch.equal(full_mask, chunked_mask) and int(full_mask.sum()) == 39
    assert torch.isfinite(chunked).all() and (chunked[full_mask] < 0).all()
    assert (chunked - full).abs().max() < TOLERANCE
    assert set(full_grads) == set(chunked_grads) and "lm_head.weight" in chunked_grads
    for name, g in full_grads.items():
        assert (chunked_grads[name] - g).abs().max() < TOLERANCE * max(1.0, float(g.abs().max())), name


def test_chunked_logprobs_without_grad_match_and_keep_no_graph(policy):
    model, encoder = policy
    batch = make_batch(encoder, [4, 9], seed=1)
    full, mask = full_vocabulary_logprobs(model, batch, encoder.pad_token_id, 0.5, False, encoder.forbidden_ids)
    chunked, _ = token_logprobs(model, batch, encoder.pad_token_id, 0.5, False, encoder.forbidden_ids, 3)
    assert not chunked.requires_grad
    assert (chunked[mask] - full[mask]).abs().max() < TOLERANCE
    # the model's own output projection is back to normal afterwards
    out = model(**{"input_ids": torch.tensor([[1, 2, 3]])}, use_cache=False).logits
    assert out.shape == (1, 3, model.config.text_config.vocab_size)


def test_chunked_function_blocks_tokens_and_handles_odd_chunks():
    torch.manual_seed(1)
    hidden = torch.randn(11, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(30, 8, dtype=torch.float64, requires_grad=True)
    target = torch.randint(3, 30, (11,))
    blocked = [0, 1, 2]

    def reference(h, w):
        logits = (h @ w.t() / 0.8).index_fill(-1, torch.tensor(blocked), float("-inf"))
        return torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1)

    for chunk in (1, 4, 11, 64):
        torch.autograd.gradcheck(
            lambda h, w, c=chunk: chunked_logprobs(h, w, target, 0.8, blocked, c), (hidden, weight)
        )
        got = chunked_logprobs(hidden, weight, target, 0.8, blocked, chunk)
        assert torch.allclose(got, reference(hidden, weight), atol=1e-12)
    # a blocked target has probability zero
    assert chunked_logprobs(hidden, weight, torch.zeros(11, dtype=torch.long), 1.0, blocked, 4).isneginf().all()


# -- micro-batches ------------------------------------------------------------------------------------------------


def test_token_budget_packing_respects_the_budget(caplog):
    lengths = [900, 120, 480, 300, 2500, 75, 610, 300, 1000, 50]
    plan = plan_micro_batches(lengths, 4, 1200, "learner.max_tokens_per_micro_batch")
    assert sorted(i for b in plan.batches for i in b) == list(range(len(lengths)))
    assert [4] in plan.batches  # the 2,500-token sequence alone, with a warning naming the setting
    assert "2500-token sequence exceeds learner.max_tokens_per_micro_batch=1200" in caplog.text
    for b in plan.batches:
        if b != [4]:
            assert len(b) * max(lengths[i] for i in b) <= 1200
    assert plan.tokens == sum(lengths)
    assert plan.padded_tokens == sum(len(b) * max(lengths[i] for i in b) for b in plan.batches)
    fixed = plan_micro_batches(lengths, 4)
    assert fixed.batches == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert fixed.padded_tokens == 4 * 900 + 4 * 2500 + 2 * 1000
    assert plan.padding_fraction < fixed.padding_fraction


def test_min_count_gives_every_rank_the_same_number_of_passes():
    """ZeRO-3 ranks must make equal numbers of passes: a rank with fewer micro-batches splits its widest ones."""
    short, long = [100] * 8, [1000, 900, 800, 700, 600, 500, 400, 300]
    few, many = plan_micro_batches(short, 2, 1600), plan_micro_batches(long, 2, 1600)
    assert len(few.batches) < len(many.batches)
    aligned = plan_micro_batches(short, 2, 1600, min_count=len(many.batches))
    assert len(aligned.batches) == len(many.batches)
    assert sorted(i for b in aligned.batches for i in b) == list(range(8)) and all(aligned.batches)
    assert all(len(b) * 100 <= 1600 for b in aligned.batches)
    assert len(plan_micro_batches(short, 2, 1600, min_count=50).batches) == 8  # at most one pass per sequence


@pytest.mark.parametrize("mode", LOSS_AGG_MODES)
def test_micro_batched_loss_and_gradient_equal_the_whole_mini_batch(policy, mode):
    """Fixed-count and token-budget micro-batches, each micro-batch's loss normalised by the mini-batch's counts,
    give the gradient of the whole mini-batch in one pass (as the learner's update accumulates them)."""
    model, encoder = policy
    batch = make_batch(encoder, [3, 17, 9, 1, 12, 6], seed=4)
    gen = torch.Generator().manual_seed(5)
    old = [torch.randn(len(s.response_ids), generator=gen) * 0.1 - 2.0 for s in batch]
    ref = [torch.randn(len(s.response_ids), generator=gen) * 0.1 - 2.0 for s in batch]
    adv = torch.randn(len(batch), generator=gen)
    settings = LossSettings(loss_agg_mode=mode)
    normalizer = LossNormalizer.of([len(s.response_ids) for s in batch])
    lengths = [sequence_length(s) for s in batch]

    def run(parts: list[list[int]], scale: LossNormalizer | None) -> tuple[float, dict]:
        model.zero_grad(set_to_none=True)
        total = 0.0
        for ids in parts:
            logp, mask = token_logprobs(model, [batch[i] for i in ids], encoder.pad_token_id, 0.9, True, None, 4)
            loss, _ = grpo_loss(
                logp, repad([old[i] for i in ids], mask), repad([ref[i] for i in ids], mask), adv[ids], mask,
                settings, scale,
            )  # fmt: skip
            loss.backward()
            total += float(loss)
        return total, _grads(model)

    whole_loss, whole = run([list(range(len(batch)))], None)
    budget = plan_micro_batches(lengths, 2, 2 * max(lengths) + 40)
    assert 1 < len(budget.batches) < len(batch)
    for plan in (plan_micro_batches(lengths, 2), budget):
        loss, grads = run(plan.batches, normalizer)
        assert abs(loss - whole_loss) < TOLERANCE
        for name, g in whole.items():
            assert (grads[name] - g).abs().max() < TOLERANCE * max(1.0, float(g.abs().max())), name
