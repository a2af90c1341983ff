"""Supervised format warm start for a freshly built (random) policy.

GRPO only learns from groups whose rewards differ; a random tiny model never
writes the template, so every reward is 0.  Real runs start from an
instruction-tuned Qwen2.5-VL that already follows formats; the CPU default
stands that in with a short teacher-forced pass over template responses
built from the ground truth of the training split.
"""

from __future__ import annotations

import random


def sft_warm_start(model_dir: str, dataset, steps: int = 150, lr: float = 3e-3, batch_size: int = 8, seed: int = 0) -> dict:
    import torch

    from actors.grpo import token_logprobs
    from actors.model import PromptEncoder, load_policy
    from rewards.spatial import perfect_response
    from rewards.template import SYSTEM_PROMPT

    if steps <= 0:
        return {"steps": 0}
    enc = PromptEncoder(model_dir)
    model = load_policy(model_dir)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    rng = random.Random(seed)
    torch.manual_seed(seed)
    cache: dict[int, dict] = {}

    def item(i: int) -> dict:
        if i not in cache:
            row = dataset[i]
            msgs = [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": row["prompt"]}]},
            ]
            e = enc.encode(msgs, [row["image"]])
            resp = enc.tokenizer(perfect_response(row, observe="I see the objects.", think="I compare them."), add_special_tokens=False)["input_ids"]
            cache[i] = {"prompt_ids": e["input_ids"], "response_ids": resp + [enc.eos_token_id], "pixel_values": e["pixel_values"], "image_grid_thw": e["image_grid_thw"]}
        return cache[i]

    losses = []
    for _ in range(steps):
        batch = [item(rng.randrange(len(dataset))) for _ in range(batch_size)]
        lp, mask = token_logprobs(model, batch, enc.pad_token_id, grad=True)
        loss = -(lp * mask).sum() / mask.sum().clamp_min(1)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(float(loss.detach()))
    model.save_pretrained(model_dir)
    return {"steps": steps, "first_loss": losses[0], "last_loss": sum(losses[-10:]) / len(losses[-10:])}
