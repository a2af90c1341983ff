#!/usr/bin/env python
"""Memory and speed of the learner and reference at Qwen2.5-VL-3B/7B widths, and a memory model of every preset.

    python scripts/bench_memory.py --preset cluster/configs/spatialthinker_7b.yaml   # prediction table (instant)
    python scripts/bench_memory.py --measure                 # CPU measurements (about 40 min on 2 busy cores)
    python scripts/bench_memory.py --measure --save          # ... and store them as the model's coefficients

Measurements (``--measure``): each case runs in a fresh subprocess (its own high-water mark, read from
``/proc/self/status`` after resetting it through ``/proc/self/clear_refs``), on a model with the real text width,
heads, KV heads, MLP width and vocabulary of Qwen2.5-VL-3B or -7B and the real vision tower width (1,280, 16 heads,
MLP 3,420), at reduced depth, random weights, float32 on CPU (bfloat16 with ``--device cuda``, where the peak is
``torch.cuda.max_memory_allocated``). What a case reports is its peak ABOVE the model, its pre-allocated parameter
gradients and its inputs: activations, logits and temporaries. The embedding (tied to the output projection in
these measurement models) is frozen, so its [V, H] gradient does not count; parameter gradients are part of the
model's static terms instead.

- ``head``: log-probs of 1,024 response positions of one 8,192-token sequence from given final hidden states,
  forward + backward (the output projection frozen, as in the other cases), chunked
  (``actors.policy.chunked_logprobs``) and the former full-vocabulary path (measured at 128 and 256 positions: it
  needs several float32 copies of [tokens x V] and grows linearly in tokens, so its 8,191-position value is
  extrapolated and marked so).
- ``learner``: one micro-step (forward, GRPO loss, backward) with gradient checkpointing, at two depths, chunked
  and full-vocabulary; ``reference``: one forward pass, at two depths.
- ``throughput``: one mini-batch of 8 sequences with STVQA-like lengths (prompt = image tokens + 60 text tokens,
  image tokens spread like 512^2-2048^2 pixel images, responses spread like the paper's 1-2,048 tokens, all scaled
  down 16x to fit this CPU) trained the old way (micro-batches of 2 sequences padded to the longest,
  full-vocabulary log-probs) and the new way (token budget = the longest sequence, chunked log-probs), at depths 1
  and 2; tokens/s at full depth is extrapolated from each path's time per added layer.

The memory model (``predict``) adds, per GPU: ZeRO-3 partitions of bf16 parameters, fp32 master weights, Adam
moments and fp32 gradient accumulation over the learner ranks (the last three in host memory with
``offload_optimizer``), DeepSpeed's live-parameter and reduce buffers, the output projection's gathered weight and
gradient, activations at full depth (measured per token and per layer, halved for bf16) and the log-prob chunks
(measured), with ``reference.colocate_with_learner`` the frozen reference's ZeRO-3 shard (and its forward pass over
the learner's micro-batches), and the weight sync (one gathered bucket of ``rollout.weight_sync_bucket_mb``, plus
vLLM's packed copies of the buckets in flight on the NCCL path). It is checked against every peak measured here (a
depth and a length it was not fitted on).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

COEFFICIENTS = ROOT / "scripts" / "bench_memory.json"
GB = 1e9

SIZES = {
    # Qwen2.5-VL-3B/7B-Instruct config.json: text width, depth, heads, KV heads, MLP width, vocabulary, tying
    "3b": dict(hidden=2048, layers=36, heads=16, kv_heads=2, intermediate=11008, vocab=151936, tied=True),
    "7b": dict(hidden=3584, layers=28, heads=28, kv_heads=4, intermediate=18944, vocab=152064, tied=False),
    # smoke runs of scripts/gpu_check.py and its test only (one head of 128, as M-RoPE's sections need)
    "tiny": dict(hidden=128, layers=2, heads=1, kv_heads=1, intermediate=256, vocab=151936, tied=True),
}
VISION = dict(hidden_size=1280, depth=32, num_heads=16, intermediate_size=3420, patch_size=14, window_size=112)
IMAGE_TOKEN, VISION_START, VISION_END = 151655, 151652, 151653
BLOCKED = [151652, 151653, 151654, 151655, 151656, 151644]  # vision tokens and <|im_start|>, as the engines block


# -- model construction -------------------------------------------------------------------------------------------


def qwen_config(size: str, layers: int | None = None, vision_layers: int | None = None, tie: bool | None = None):
    """A Qwen2.5-VL config at ``size``'s real widths; depth reduced to ``layers`` / ``vision_layers`` when given."""
    from transformers import Qwen2_5_VLConfig

    s = SIZES[size]
    depth = s["layers"] if layers is None else layers
    text = dict(
        hidden_size=s["hidden"],
        num_hidden_layers=depth,
        num_attention_heads=s["heads"],
        num_key_value_heads=s["kv_heads"],
        intermediate_size=s["intermediate"],
        vocab_size=s["vocab"],
        max_position_embeddings=32768,
        rope_theta=1000000.0,
        rms_norm_eps=1e-6,
        rope_scaling={"type": "mrope", "mrope_section": [16, 24, 24]},
        tie_word_embeddings=s["tied"] if tie is None else tie,
        layer_types=["full_attention"] * depth,
    )
    vdepth = VISION["depth"] if vision_layers is None else vision_layers
    vision = dict(VISION, depth=vdepth, out_hidden_size=s["hidden"], fullatt_block_indexes=[vdepth - 1])
    if vdepth == VISION["depth"]:
        vision["fullatt_block_indexes"] = [7, 15, 23, 31]  # the real tower: window attention elsewhere
    config = Qwen2_5_VLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=IMAGE_TOKEN,
        vision_start_token_id=VISION_START,
        vision_end_token_id=VISION_END,
        tie_word_embeddings=text["tie_word_embeddings"],
    )
    config._attn_implementation = "sdpa"
    return config


def param_counts(size: str) -> dict:
    """Exact parameter counts of the full-depth model (built on the meta device)."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(qwen_config(size))
    total = sum(p.numel() for p in model.parameters())  # tied weights counted once
    layer = sum(p.numel() for p in model.model.language_model.layers[0].parameters())
    head = model.lm_head.weight.numel()
    small = sum(p.numel() for p in model.parameters() if p.numel() < 100_000)
    return {"total": total, "layer": layer, "head": head, "small": small}


# -- one measured case (runs in its own process) --------------------------------------------------------------------


def _rss_bytes(field: str) -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as fh:  # "5": reset the peak RSS to the current RSS
        fh.write("5")


def _sequences(prompt_lengths: list[int], image_tokens: list[int], responses: list[int], seed: int):
    import torch

    from actors.policy import Sequence
    from actors.records import EncodedPrompt, ImageInputs

    gen = torch.Generator().manual_seed(seed)
    out = []
    for prompt, image, response in zip(prompt_lengths, image_tokens, responses):
        side = int(round(image**0.5))
        h, w = side, max(1, image // side)  # merged-token grid; patches are 2x2 per merged token
        text = prompt - h * w - 2
        ids = [VISION_START] + [IMAGE_TOKEN] * (h * w) + [VISION_END]
        ids += torch.randint(0, 150000, (max(text, 1),), generator=gen).tolist()
        pixels = torch.randn(h * w * 4, 3 * 2 * 14 * 14, generator=gen)
        grid = torch.tensor([[1, 2 * h, 2 * w]])
        resp = torch.randint(0, 150000, (response,), generator=gen).tolist()
        out.append(Sequence(EncodedPrompt(ids, ImageInputs(pixels, grid)), resp))
    return out


def run_case(case: dict) -> dict:
    """One measurement; ``case`` keys: role (head | learner | reference | throughput), size, layers, vision_layers,
    chunk (0: full vocabulary), device, and the lengths of the role."""
    import torch

    torch.set_num_threads(int(case.get("threads", 2)))
    torch.manual_seed(0)
    device = case.get("device", "cpu")
    dtype = torch.float32 if device == "cpu" else torch.bfloat16
    cuda = device == "cuda"

    def peak_reset() -> int:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            return torch.cuda.memory_allocated()
        _reset_peak()
        return _rss_bytes("VmRSS")

    def peak() -> int:
        if cuda:
            torch.cuda.synchronize()
            return torch.cuda.max_memory_allocated()
        return _rss_bytes("VmHWM")

    if case["role"] == "head":
        from actors.policy import chunked_logprobs

        s = SIZES[case["size"]]
        n, total = case["response"], case["tokens"]
        hidden_all = torch.randn(total, s["hidden"], dtype=dtype, device=device, requires_grad=True)
        # frozen: its [V, H] gradient is a parameter gradient (the model's static terms count it), not a log-prob cost
        weight = torch.randn(s["vocab"], s["hidden"], dtype=dtype, device=device) * 0.02
        target = torch.randint(0, 150000, (n,), device=device)
        base = peak_reset()
        start = time.perf_counter()
        hidden = hidden_all[total - n - 1 : total - 1]  # the positions that predict response tokens
        if case["chunk"]:
            logp = chunked_logprobs(hidden, weight, target, 1.0, BLOCKED, case["chunk"])
        else:
            logits = (hidden @ weight.t()).float().index_fill(-1, torch.tensor(BLOCKED, device=device), -1e30)
            logp = torch.log_softmax(logits, -1).gather(-1, target[:, None]).squeeze(-1)
            del logits
        logp.sum().backward()
        seconds = time.perf_counter() - start
        return {"peak": peak() - base, "seconds": seconds}

    from transformers import Qwen2_5_VLForConditionalGeneration

    from actors import grpo
    from actors.policy import plan_micro_batches, repad, sequence_length, token_logprobs

    config = qwen_config(case["size"], case["layers"], case["vision_layers"], tie=True)
    torch.set_default_dtype(dtype)
    with torch.device(device):  # built where it runs, in its dtype: no float32 copy of a 3B model on the host
        model = Qwen2_5_VLForConditionalGeneration(config)
    torch.set_default_dtype(torch.float32)
    model.model.language_model.embed_tokens.weight.requires_grad_(False)  # tied to lm_head: see the docstring
    learner = case["role"] in ("learner", "throughput")
    if learner:
        model.gradient_checkpointing_enable()
        model.train()
        for p in model.parameters():
            if p.requires_grad:
                p.grad = torch.zeros_like(p)
    else:
        model.eval().requires_grad_(False)
    if case["role"] == "throughput":
        batch = _sequences(case["prompts"], case["images"], case["responses"], 0)
    else:
        b = case.get("batch", 1)
        batch = _sequences([case["prompt"]] * b, [case["image"]] * b, [case["response"]] * b, 0)
    lengths = [sequence_length(x) for x in batch]
    if case["role"] == "throughput" and case["chunk"]:
        plan = plan_micro_batches(lengths, 2, max(lengths))
    else:
        plan = plan_micro_batches(lengths, case.get("micro_batch", len(batch)))
    normalizer = grpo.LossNormalizer.of([len(x.response_ids) for x in batch])
    base = peak_reset()
    start = time.perf_counter()
    for ids in plan.batches:
        part = [batch[i] for i in ids]
        logp, mask = token_logprobs(model, part, 151643, 1.0, learner, BLOCKED, case["chunk"])
        if learner:
            old = repad([torch.full((len(x.response_ids),), -2.0) for x in part], mask)
            adv = torch.linspace(-1, 1, len(part), device=logp.device)
            loss, _ = grpo.grpo_loss(logp, old, old, adv, mask, grpo.LossSettings(), normalizer)
            loss.backward()
        del logp, mask
    seconds = time.perf_counter() - start
    return {
        "peak": peak() - base,
        "seconds": seconds,
        "tokens": sum(lengths),
        "padded_tokens": plan.padded_tokens,
        "micro_batches": len(plan.batches),
    }


def measure_in_subprocess(case: dict, timeout_s: float = 1800) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--case", json.dumps(case)]
    env = dict(os.environ, PYTHONPATH=str(ROOT), TOKENIZERS_PARALLELISM="false")
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(ROOT))
    if proc.returncode != 0:
        raise RuntimeError(f"case {case} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# -- the measurement plan --------------------------------------------------------------------------------------------

# measurement lengths (the presets' 6,144 + 2,048 do not fit this CPU's time): prompt 512 of which 384 image tokens,
# response 128; activations grow linearly in tokens (sdpa attention keeps no [T, T] matrix), checked by LONG
MEASURE = dict(prompt=512, image=384, response=128)
LONG = dict(prompt=1024, image=768, response=256)
# STVQA-like mini-batch scaled down 16x: image tokens of 512^2..2048^2-pixel images (330..5,300) / 16, responses of
# 1..2,048 tokens / 16 (mostly a few hundred tokens, a few long ones), in rollout order
THROUGHPUT = dict(
    images=[21, 330, 60, 150, 20, 250, 100, 40],
    responses=[20, 15, 128, 30, 12, 45, 22, 90],
    text=60,
)
HEAD_TOKENS, HEAD_RESPONSE, HEAD_FULL = 8192, 1024, (128, 256)
CHUNK = 512
"""learner/reference.logprob_chunk_tokens of every measured chunked case and of the presets."""


def measurement_cases(sizes: tuple[str, ...]) -> list[tuple[str, dict]]:
    cases = []
    for size in sizes:
        head = dict(role="head", size=size, tokens=HEAD_TOKENS, response=HEAD_RESPONSE, chunk=CHUNK)
        cases.append((f"{size} head chunked {HEAD_TOKENS}/{HEAD_RESPONSE}", head))
        for n in HEAD_FULL:
            cases.append(
                (f"{size} head full-vocab {n}", dict(role="head", size=size, tokens=n + 1, response=n, chunk=0))
            )
        for depth in (1, 2):
            for chunk in (512, 0):
                name = f"{size} learner L{depth} {'chunked' if chunk else 'full-vocab'}"
                spec = dict(role="learner", size=size, layers=depth, vision_layers=depth, chunk=chunk)
                cases.append((name, dict(spec, **MEASURE)))
            spec = dict(role="reference", size=size, layers=depth, vision_layers=depth, chunk=CHUNK)
            cases.append((f"{size} reference L{depth}", dict(spec, **MEASURE)))
        # checks of the model: a depth and a length it was not fitted on
        spec = dict(role="learner", size=size, layers=3, vision_layers=3, chunk=CHUNK)
        cases.append((f"{size} learner L3 chunked", dict(spec, **MEASURE)))
        spec = dict(role="learner", size=size, layers=1, vision_layers=1, chunk=CHUNK)
        cases.append((f"{size} learner L1 chunked long", dict(spec, **LONG)))
    if "3b" in sizes:
        t = THROUGHPUT
        prompts = [i + t["text"] for i in t["images"]]
        for depth in (1, 2):
            for chunk in (0, 512):
                name = f"3b throughput L{depth} {'new' if chunk else 'old'}"
                spec = dict(role="throughput", size="3b", layers=depth, vision_layers=depth, chunk=chunk)
                spec["micro_batch"] = 2
                cases.append((name, dict(spec, prompts=prompts, images=t["images"], responses=t["responses"])))
    return cases


def fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """Intercept and slope through two points."""
    slope = (y[1] - y[0]) / (x[1] - x[0])
    return y[0] - slope * x[0], slope


def derive(results: dict) -> dict:
    """Per-size coefficients of the memory model from the measured cases (float32 CPU bytes).

    Learner activations = ``constant + tokens x (per_token + per_token_layer x layers) + head``: ``head`` from the
    log-prob case (bytes per chunk position x min(response tokens, chunk)), ``per_token_layer`` from depths 1 and 2,
    ``per_token`` and ``constant`` from two lengths at depth 1 (the constant is allocator arenas and workspaces).
    Depth 3 is left for checking the model."""
    out = {}
    t_m, t_l = MEASURE["prompt"] + MEASURE["response"], LONG["prompt"] + LONG["response"]
    for size in SIZES:
        r = {k[len(size) + 1 :]: v for k, v in results.items() if k.startswith(size + " ")}
        needed = ("learner L1 chunked", "learner L2 chunked", "learner L1 chunked long", "reference L2")
        if not all(k in r for k in needed):
            continue
        # the chunked log-probs hold [min(response tokens, chunk), V] float32 slices: bytes per chunk position
        head = r[f"head chunked {HEAD_TOKENS}/{HEAD_RESPONSE}"]["peak"] / min(HEAD_RESPONSE, CHUNK)
        y1 = r["learner L1 chunked"]["peak"] - head * min(MEASURE["response"], CHUNK)
        y2 = r["learner L2 chunked"]["peak"] - head * min(MEASURE["response"], CHUNK)
        y1_long = r["learner L1 chunked long"]["peak"] - head * min(LONG["response"], CHUNK)
        per_token_l1 = (y1_long - y1) / (t_l - t_m)
        per_token_layer = (y2 - y1) / t_m
        ra, rb = fit_line([1, 2], [r["reference L1"]["peak"], r["reference L2"]["peak"]])
        full_a, _ = fit_line([1, 2], [r["learner L1 full-vocab"]["peak"], r["learner L2 full-vocab"]["peak"]])
        chunked_a, _ = fit_line([1, 2], [r["learner L1 chunked"]["peak"], r["learner L2 chunked"]["peak"]])
        seconds = r["learner L2 chunked"]["seconds"] - r["learner L1 chunked"]["seconds"]
        out[size] = {
            "head_bytes_per_chunk_position": head,
            "learner_constant": y1 - per_token_l1 * t_m,
            "learner_per_token": per_token_l1 - per_token_layer,
            "learner_per_token_layer": per_token_layer,
            "reference_per_token": max(ra, 0.0) / t_m,
            "reference_per_token_layer": max(rb, 0.0) / t_m,
            "full_vocab_extra_per_token": max(full_a - chunked_a, 0.0) / t_m,
            "seconds_per_token_layer": seconds / t_m,
        }
    return out


def width_factor(size: str, measured: str) -> float:
    """Activation bytes per token of ``size`` relative to ``measured``: layer inputs and attention scale with the
    text width, the MLP's temporaries with its width; their sum is the ratio used."""
    a, b = SIZES[size], SIZES[measured]
    return (a["hidden"] + a["intermediate"]) / (b["hidden"] + b["intermediate"])


def with_unmeasured_sizes(coefficients: dict, results: dict | None = None) -> dict:
    """A size without a full set of measurements gets the 3B coefficients scaled (marked ``scaled_from``).

    With its learner measured at depths 1 and 2 (``7b learner L1/L2 chunked``), its learner per-layer and per-token
    terms come from those (3B's constant and log-prob chunk: the vocabulary is the same to 0.1%), and the reference
    and full-vocabulary terms are scaled by the measured ratio of learner per-token bytes. Otherwise everything but
    the constant and the chunk is scaled by :func:`width_factor` (which underestimated the 7B learner by 23% when
    checked against those two measurements)."""
    out = dict(coefficients)
    if "3b" not in coefficients or "7b" in coefficients:
        return out
    c, results = coefficients["3b"], results or {}
    keep = ("head_bytes_per_chunk_position", "learner_constant", "full_vocab_extra_per_token")  # vocabulary-bound
    f = width_factor("7b", "3b")
    scaled = {k: (v if k in keep else v * f) for k, v in c.items() if k != "scaled_from"}
    names = ("7b learner L1 chunked", "7b learner L2 chunked")
    if all(n in results for n in names):
        t_m = MEASURE["prompt"] + MEASURE["response"]
        head = c["head_bytes_per_chunk_position"] * min(MEASURE["response"], CHUNK)
        y1, y2 = (results[n]["peak"] - head - c["learner_constant"] for n in names)
        per_token_layer = (y2 - y1) / t_m
        ratio = (y1 / t_m) / (c["learner_per_token"] + c["learner_per_token_layer"])
        scaled = {k: (v if k in keep else v * ratio) for k, v in c.items() if k != "scaled_from"}
        scaled.update(learner_per_token_layer=per_token_layer, learner_per_token=y1 / t_m - per_token_layer)
        scaled["fitted_on"] = "7b learner depths 1 and 2"
    names = ("7b reference L1", "7b reference L2")
    if all(n in results for n in names):  # as derive() fits the 3B reference
        t_m = MEASURE["prompt"] + MEASURE["response"]
        ra, rb = fit_line([1, 2], [results[n]["peak"] for n in names])
        scaled.update(reference_per_token=max(ra, 0.0) / t_m, reference_per_token_layer=max(rb, 0.0) / t_m)
        scaled["fitted_on"] = " and ".join(filter(None, (scaled.get("fitted_on"), "7b reference depths 1 and 2")))
    out["7b"] = scaled | {"scaled_from": "3b"}
    return out


def activation_bytes(
    c: dict, role: str, layers: int, tokens: int, scale: float, chunked: bool = True, response: int = CHUNK
) -> float:
    """Activation peak of one micro-batch of ``tokens`` (``response`` of them response tokens) at ``layers``,
    ``scale`` = bytes per element / 4 (the log-prob chunks are float32 either way)."""
    constant = 0.0
    if role == "learner":
        per_token = c["learner_per_token"] + c["learner_per_token_layer"] * layers
        constant = c["learner_constant"]
    else:
        per_token = c["reference_per_token"] + c["reference_per_token_layer"] * layers
    extra = 0.0 if chunked else c["full_vocab_extra_per_token"] * tokens  # float32 logits in either dtype
    head = c["head_bytes_per_chunk_position"] * min(response, CHUNK)
    return constant + per_token * tokens * scale + head + extra


def check_model(results: dict, coefficients: dict) -> list[tuple[str, float, float]]:
    """(case, measured, predicted) for every measured peak the model in use (:func:`with_unmeasured_sizes` given the
    measurements, as ``predict`` gets it) was not fitted on: depth 3, and for a size whose coefficients are scaled
    from another's, its learner peaks unless they were fitted on, and its reference peaks."""
    out = []
    for size, c in with_unmeasured_sizes(coefficients, results).items():
        checks = [("learner L3 chunked", 3, MEASURE)]
        if "scaled_from" in c:
            for role in ("learner", "reference"):
                if f"{role} depths" not in c.get("fitted_on", ""):
                    suffix = " chunked" if role == "learner" else ""
                    checks += [(f"{role} L1{suffix}", 1, MEASURE), (f"{role} L2{suffix}", 2, MEASURE)]
        for name, layers, lengths in checks:
            key = f"{size} {name}"
            if key in results:
                tokens = lengths["prompt"] + lengths["response"]
                role = name.split()[0]
                predicted = activation_bytes(c, role, layers, tokens, 1.0, True, lengths["response"])
                out.append((key, results[key]["peak"], predicted))
    return out


# -- the memory model of a preset ------------------------------------------------------------------------------------

CUDA_CONTEXT = 1.0 * GB
"""CUDA context, NCCL buffers and allocator slack per process (a round figure, not measured here)."""
DS_REDUCE_BUCKET = 5e8
"""DeepSpeed's default ``reduce_bucket_size`` (elements, bf16)."""
DS_MAX_LIVE = 1e9
"""DeepSpeed's default ``stage3_max_live_parameters`` (elements): the most gathered bf16 parameters at a time."""
CAPACITIES = {"80 GB": 80 * 2**30, "141 GB": 141e9}
SYNC_PACKED_BUFFERS = 2
"""vLLM's ``DEFAULT_PACKED_NUM_BUFFERS``: packed bucket copies the NCCL producer keeps in flight on rank 0."""


def predict(cfg, size: str, coefficients: dict, counts: dict) -> list[dict]:
    """Per-GPU peak of each role of a preset at full depth (bf16 on GPU)."""
    c = coefficients[size]
    s = SIZES[size]
    depth = max(s["layers"], VISION["depth"])  # a measured layer step is one text layer and one vision block
    p, r = counts["total"], cfg.learner.num_workers
    seq = cfg.rollout.max_model_len
    ln, ref = cfg.learner, cfg.reference
    learner_tokens = ln.max_tokens_per_micro_batch or ln.micro_batch_size * seq
    ref_tokens = ref.max_tokens_per_micro_batch or ref.micro_batch_size * seq
    chunked = bool(ln.logprob_chunk_tokens)
    grad_bytes = 4 if ln.grad_accum_dtype == "fp32" else 2
    on_gpu_state = 0 if ln.offload_optimizer else (4 + 8 + grad_bytes) * p / r
    persistent = 2 * counts["small"] if ln.param_persistence_threshold >= 100_000 else 0
    colocated = cfg.algo.kl_beta > 0 and ref.colocate_with_learner
    frozen = 2 * p / r if colocated else 0.0  # reference.colocate_with_learner: the initial weights, ZeRO-3 sharded
    static = 2 * p / r + frozen + on_gpu_state + persistent + CUDA_CONTEXT
    buffers = DS_REDUCE_BUCKET * 2 + min(DS_MAX_LIVE, p) * 2 + counts["head"] * 2  # + the head's full gradient
    act = activation_bytes(c, "learner", depth, learner_tokens, 0.5, chunked)
    train = static + buffers + act
    # streamed sync (actors/weight_sync.py): one gathered bucket; on the NCCL path rank 0 also holds vLLM's packed
    # copies of the buckets in flight (vllm/distributed/weight_transfer/packed_tensor.py, 2 buffers by default)
    bucket = float(cfg.rollout.weight_sync_bucket_mb) * 2**20
    gather = bucket * (1 + SYNC_PACKED_BUFFERS if cfg.rollout.weight_sync == "nccl" else 1)
    sync = static + gather
    ref_chunked = bool(ref.logprob_chunk_tokens)
    if colocated:  # forward passes over the learner's micro-batches; the live-parameter buffer gathers the frozen copy
        ref_tokens = learner_tokens
        reference = static + min(DS_MAX_LIVE, p) * 2 + activation_bytes(c, "reference", depth, ref_tokens, 0.5, True)
    else:
        reference = 2 * p + activation_bytes(c, "reference", depth, ref_tokens, 0.5, ref_chunked) + CUDA_CONTEXT
    where = "on the learner ranks" if colocated else "its own GPU"
    rows = [
        dict(
            role=f"learner rank (train, {learner_tokens} tokens/micro-batch)",
            bytes=train,
            parts=dict(state=static - CUDA_CONTEXT, buffers=buffers, activations=act),
        ),
        dict(
            role="learner rank (weight sync, streamed)",
            bytes=sync,
            parts=dict(state=static - CUDA_CONTEXT, gather=gather),
        ),
        dict(role=f"reference, {where} ({ref_tokens} tokens/micro-batch)", bytes=reference, parts={}),
    ]
    if cfg.rollout.engine == "vllm" and cfg.rollout.num_gpus:
        rows.append(
            dict(
                role=f"vLLM engine (gpu_memory_utilization {cfg.rollout.gpu_memory_utilization})",
                bytes=None,
                fraction=cfg.rollout.gpu_memory_utilization,
                parts={},
            )
        )
    return rows


def preset_table(path: str, coefficients: dict, overrides: list[str] | None = None) -> str:
    from cluster.config import load_config

    cfg = load_config(path, overrides or [])
    name = (cfg.model.path or "").lower()
    size = "7b" if "7b" in name else "3b"
    counts = param_counts(size)
    rows = predict(cfg, size, coefficients, counts)
    basis = coefficients[size].get("fitted_on") or coefficients[size].get("scaled_from")
    basis = f"activations from {basis} measurements" if basis else "activations: measured"
    lines = [
        f"{path}: Qwen2.5-VL-{size.upper()} ({counts['total'] / 1e9:.2f}e9 parameters; {basis}), "
        f"{cfg.learner.num_workers} learner ranks, offload_optimizer={cfg.learner.offload_optimizer}, "
        f"log-prob chunk {cfg.learner.logprob_chunk_tokens or 'off (full vocabulary)'}, "
        f"grad_accum_dtype={cfg.learner.grad_accum_dtype}",
        "",
        "| role | predicted peak per GPU (GiB) | 80 GB GPU | 141 GB GPU |",
        "|---|---:|---|---|",
    ]
    for row in rows:
        cells = []
        for cap in CAPACITIES.values():
            used = row["bytes"] if row["bytes"] is not None else row["fraction"] * cap
            if used > cap:
                cells.append("does not fit")
            else:
                cells.append(f"fits ({100 * (1 - used / cap):.0f}% free)")
        value = f"{row['bytes'] / 2**30:.1f}" if row["bytes"] is not None else "(reserves its fraction)"
        lines.append(f"| {row['role']} | {value} | {cells[0]} | {cells[1]} |")
    parts = rows[0]["parts"]
    lines.append("")
    lines.append(
        "learner train peak = state {:.1f} + DeepSpeed buffers {:.1f} + activations/log-prob chunks {:.1f} + CUDA "
        "context {:.1f} GiB".format(
            *(v / 2**30 for v in (parts["state"], parts["buffers"], parts["activations"])), CUDA_CONTEXT / 2**30
        )
    )
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------------------------------------


def load_results() -> dict:
    """The stored measurements (``--measure --save``)."""
    return json.loads(COEFFICIENTS.read_text())["results"] if COEFFICIENTS.exists() else {}


def measured_table(results: dict) -> str:
    lines = ["| case | peak above model (GiB) | seconds |", "|---|---:|---:|"]
    for name, r in results.items():
        lines.append(f"| {name} | {r['peak'] / 2**30:.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines)


def summary(results: dict, coefficients: dict) -> str:
    lines = []
    for size in coefficients:
        head = results[f"{size} head chunked {HEAD_TOKENS}/{HEAD_RESPONSE}"]
        a, b = fit_line(list(HEAD_FULL), [results[f"{size} head full-vocab {n}"]["peak"] for n in HEAD_FULL])
        lines.append(
            f"{size} log-probs of a {HEAD_TOKENS}-token sequence ({HEAD_RESPONSE} response tokens), forward + "
            f"backward, float32: chunked {head['peak'] / 2**30:.2f} GiB above the hidden states and the output "
            f"projection's gradient ({head['seconds']:.0f} s); full vocabulary at all {HEAD_TOKENS - 1} positions "
            f"{(a + b * (HEAD_TOKENS - 1)) / 2**30:.1f} GiB (extrapolated from {HEAD_FULL[0]} and {HEAD_FULL[1]})"
        )
    for key, measured, predicted in check_model(results, coefficients):
        lines.append(
            f"model check {key}: measured {measured / 2**30:.2f} GiB, predicted {predicted / 2**30:.2f} GiB "
            f"({100 * (predicted - measured) / measured:+.0f}%)"
        )
    old, new = results.get("3b throughput L1 old"), results.get("3b throughput L1 new")
    if old and new and "3b" in coefficients:
        depth = max(SIZES["3b"]["layers"], VISION["depth"])
        old2, new2 = results.get("3b throughput L2 old"), results.get("3b throughput L2 new")
        if old2 and new2:  # each path's own time per added layer (+ vision block), on this very batch
            full = {
                k: r1["seconds"] + (depth - 1) * (r2["seconds"] - r1["seconds"])
                for k, r1, r2 in (("old", old, old2), ("new", new, new2))
            }
            how = "depth-1 time + 35 x each path's measured time per added layer, depth 2 - depth 1"
        else:
            per_layer = coefficients["3b"]["seconds_per_token_layer"]
            full = {
                k: r["seconds"] + (depth - 1) * per_layer * r["padded_tokens"] for k, r in (("old", old), ("new", new))
            }
            how = f"depth-1 time + {depth - 1} x the measured per-layer time per padded token"
        for label, r in (
            ("old (2 sequences per micro-batch, full vocabulary)", old),
            ("new (token budget, chunked)", new),
        ):
            lines.append(
                f"3b learner mini-batch, {label}: {r['micro_batches']} micro-batches, "
                f"{100 * (1 - r['tokens'] / r['padded_tokens']):.0f}% padding, "
                f"{r['tokens'] / r['seconds']:.0f} tokens/s at depth 1"
            )
        at2 = f", {old2['seconds'] / new2['seconds']:.2f}x at depth 2" if old2 and new2 else ""
        lines.append(
            f"3b learner tokens/s, new / old: {old['seconds'] / new['seconds']:.2f}x at depth 1{at2}, "
            f"{full['old'] / full['new']:.2f}x at full depth, extrapolated ({how})"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", action="append", default=[], help="config YAML; print its prediction table")
    parser.add_argument("--measure", action="store_true", help="run the CPU measurements")
    parser.add_argument("--sizes", default="3b,7b", help="model sizes to measure (comma-separated)")
    parser.add_argument(
        "--only", default="", help="measure only cases whose name contains this (or exactly these, '|'-separated)"
    )
    parser.add_argument("--save", action="store_true", help=f"store measurements and coefficients in {COEFFICIENTS}")
    parser.add_argument("--set", action="append", default=[], help="key=value override of the presets (as train.py)")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(json.loads(args.case))))
        return
    results = load_results()
    if args.measure:
        for name, case in measurement_cases(tuple(args.sizes.split(","))):
            wanted = args.only.split("|") if "|" in args.only else None  # exact names, or one substring
            if args.only and (name not in wanted if wanted else args.only not in name):
                continue
            results[name] = measure_in_subprocess(case)
            print(f"{name}: {results[name]['peak'] / 2**30:.2f} GiB, {results[name]['seconds']:.1f} s", flush=True)
    coefficients = derive(results)
    if args.measure:
        print(measured_table(results))
        print(summary(results, coefficients))
        if args.save:  # merged with earlier measurements (--only / --sizes measure a part)
            COEFFICIENTS.write_text(json.dumps({"results": results, "coefficients": coefficients}, indent=1) + "\n")
    for path in args.preset:
        if not coefficients:
            raise SystemExit(f"no measurements in {COEFFICIENTS}: run with --measure --save first")
        print(preset_table(path, with_unmeasured_sizes(coefficients, results), args.set))
        print()


if __name__ == "__main__":
    main()
