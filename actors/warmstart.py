"""Supervised format warm start for a freshly built (random) tiny policy.

GRPO learns only from groups whose rewards differ, and a random tiny model never writes the template, so every
reward would be 0. Real runs start from an instruction-tuned Qwen2.5-VL that already follows formats; the CPU default
stands that in with a short teacher-forced pass over template responses that restate the ground truth of the
training split. It is kept short on purpose: it must leave room for RL to improve.
"""

from __future__ import annotations

import logging
import random

import torch

from actors.model import PromptEncoder, load_policy
from actors.policy import Sequence, token_logprobs
from rewards.prompt import PromptBuilder
from rewards.spatial import perfect_response

log = logging.getLogger(__name__)


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
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cache: dict[int, Sequence] = {}

    def sequence(i: int) -> Sequence:
        if i not in cache:
            s = samples[i]
            prompt = encoder.encode(
                prompts.messages(s["question"], s["options"], s["image_size"]), [prompts.image(s["image"])]
            )
            text = perfect_response(s["ground_truth"], observe="I look at the objects.", think="I compare them.")
            ids = encoder.tokenizer(text, add_special_tokens=False)["input_ids"] + [encoder.eos_token_id]
            cache[i] = Sequence(prompt, ids)
        return cache[i]

    losses = []
    for _ in range(steps):
        batch = [sequence(rng.randrange(len(samples))) for _ in range(batch_size)]
        logp, mask = token_logprobs(model, batch, encoder.pad_token_id, grad=True)
        loss = -torch.where(mask, logp, 0.0).sum() / mask.sum().clamp_min(1)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        losses.append(float(loss.detach()))
    model.save_pretrained(model_dir)
    tail = losses[-10:]
    return {"steps": steps, "first_loss": losses[0], "last_loss": sum(tail) / len(tail)}
