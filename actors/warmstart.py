"""Supervised format warm start for a freshly built (random) tiny policy.

GRPO learns only from groups whose rewards differ, and a random tiny model never writes the template, so every
reward would be 0. Real runs start from an instruction-tuned Qwen2.5-VL that already follows formats; the CPU default
stands that in with a short teacher-forced pass over template responses that restate the ground truth of the
training split. It is kept short on purpose: it must leave room for RL to improve.

The recipe (tuned for the CPU default, see ``scripts/bench_learning.py``): terse ``<observe>``/``<think>`` texts
(:data:`OBSERVE`, :data:`THINK`) so the few steps go to the scene-graph JSON and the answer, the loss on response
tokens only, and the learning rate warmed up over :data:`WARMUP_STEPS` steps, then cosine-decayed to
:data:`FINAL_LR_FRACTION` of ``lr``. The decay is what makes a few hundred steps enough for the greedy output to
follow the template most of the time; what is left (malformed boxes, wrong object counts, answers whose letter and
text disagree) is what GRPO then improves on held-out data.
"""

from __future__ import annotations

import logging
import math
import random
import time

import torch

from actors.model import PromptEncoder, load_policy
from actors.policy import Sequence, token_logprobs
from rewards.prompt import PromptBuilder
from rewards.spatial import perfect_response

log = logging.getLogger(__name__)

OBSERVE = "The objects the question names."
"""``<observe>`` text of the warm-start responses."""
THINK = "Compare their boxes."
"""``<think>`` text of the warm-start responses."""
WARMUP_STEPS = 10
"""Linear learning-rate warm-up steps (capped at a tenth of the run)."""
FINAL_LR_FRACTION = 0.05
"""The cosine schedule ends at this fraction of the learning rate."""


def lr_factor(step: int, steps: int) -> float:
    """Learning-rate multiplier at ``step`` (0-based) of ``steps``: linear warm-up, then cosine decay."""
    warmup = min(WARMUP_STEPS, max(1, steps // 10))
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return FINAL_LR_FRACTION + (1 - FINAL_LR_FRACTION) * 0.5 * (1 + math.cos(math.pi * progress))


def sft_warm_start(
    model_dir: str,
    samples: list[dict],
    prompts: PromptBuilder,
    *,
    steps: int,
    lr: float,
    batch_size: int,
    seed: int = 0,
) -> dict:
    """Teacher-force ``steps`` batches of (prompt, restated ground truth) and save the model in place.

    ``samples``: rows as :func:`datagen.stvqa.task_fields` returns them (question, options, image, image_size,
    ground_truth).
    """
    if steps <= 0:
        return {"steps": 0}
    encoder = PromptEncoder(model_dir)
    model = load_policy(model_dir).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, steps))
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cache: dict[int, Sequence] = {}

    def sequence(i: int) -> Sequence:
        if i not in cache:
            s = samples[i]
            prompt = encoder.encode(
                prompts.messages(s["question"], s["options"], s["image_size"]), [prompts.image(s["image"])]
            )
            text = perfect_response(s["ground_truth"], observe=OBSERVE, think=THINK)
            ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"] + [encoder.eos_token_id]
            cache[i] = Sequence(prompt, ids)
        return cache[i]

    losses = []
    start = time.perf_counter()
    for _ in range(steps):
        batch = [sequence(rng.randrange(len(samples))) for _ in range(batch_size)]
        logp, mask = token_logprobs(model, batch, encoder.pad_token_id, grad=True)
        loss = -torch.where(mask, logp, 0.0).sum() / mask.sum().clamp_min(1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
    model.save_pretrained(model_dir)
    tail = losses[-10:]
    return {
        "steps": steps,
        "first_loss": losses[0],
        "last_loss": sum(tail) / len(tail),
        "seconds": round(time.perf_counter() - start, 1),
    }
