#!/usr/bin/env python
"""Rollout benchmark: vLLM engine throughput and weight-sync time, printed as a markdown table.

    python scripts/bench_rollout.py                      # tiny model built under runs/bench_rollout/
    python scripts/bench_rollout.py --model /models/Qwen2.5-VL-3B-Instruct --dtype bfloat16 --device cuda

Rows: engine start-up; tokens/s of the standalone engine on the same prompts (after one warm-up call);
tokens/s through ``actors.rollout.RolloutWorker`` (a Ray actor hosting the engine; skipped with the reason when the
pool's interface is not there); one in-place weight sync (object-store path) against the state dict's size, for the
benchmark model and (tiny default only) a larger tiny model, and through the worker's ``update_weights`` (which adds
the Ray object store).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import ray  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from actors.model import TinyModelSpec, build_tiny_model, load_policy  # noqa: E402
from actors.records import PromptGroup, RolloutRequest, TaskSample  # noqa: E402
from actors.rollout import RolloutWorker  # noqa: E402
from actors.settings import RolloutSettings  # noqa: E402
from actors.vllm_engine import VLLMEngine, state_dict_nbytes  # noqa: E402
from cluster.config import DEMO_CONFIG, load_config  # noqa: E402
from datagen.corpus import tokenizer_corpus  # noqa: E402
from rewards.prompt import PromptBuilder  # noqa: E402


def make_requests(k: int):
    """``k`` STVQA-style requests with synthetic PIL images (various sizes and aspect ratios)."""

    # the CPU demo's image scaling (the paper's 512-2048 pixel range is far too large for the tiny model on CPU)
    prompts, rng, out = PromptBuilder(load_config(str(DEMO_CONFIG)).prompt), np.random.default_rng(0), []
    sizes = [(640, 480), (480, 640), (800, 600), (300, 300), (1024, 512), (512, 384), (200, 320), (720, 405)]
    for i in range(k):
        w, h = sizes[i % len(sizes)]
        im = Image.new("RGB", (w, h), tuple(int(c) for c in rng.integers(0, 255, 3)))
        draw = ImageDraw.Draw(im)
        for _ in range(6):
            x0, y0 = int(rng.integers(0, w - 20)), int(rng.integers(0, h - 20))
            draw.rectangle(
                [x0, y0, x0 + int(rng.integers(10, w // 2)), y0 + int(rng.integers(10, h // 2))],
                fill=tuple(int(c) for c in rng.integers(0, 255, 3)),
            )
        out.append(
            RolloutRequest(
                uid=f"bench-{i}",
                index=i,
                messages=prompts.messages(f"Is object {i} to the left of the table?", ["yes", "no"], (w, h)),
                images=[prompts.image(im)],
                sample=TaskSample(f"bench-{i}", "<answer>(A) yes</answer>", (w, h), "relation"),
            )
        )
    return out


def tokens_of(result) -> int:
    """Response tokens in whatever a generate call returned (a list of PromptGroup, or (summary, *groups))."""

    if isinstance(result, PromptGroup):
        return result.response_tokens
    if isinstance(result, (list, tuple)):
        return sum(tokens_of(x) for x in result)
    return 0


def perturbed_state(model_path: str, dtype: str, seed: int = 0) -> dict:

    gen = torch.Generator().manual_seed(seed)
    state = load_policy(model_path, dtype).state_dict()
    return {
        k: (v + 0.01 * torch.randn(v.shape, generator=gen).to(v.dtype)) if v.is_floating_point() else v
        for k, v in state.items()
    }


def time_generate(fn, requests, n: int, repeats: int) -> tuple[float, int, float]:
    """(tokens/s, tokens, seconds) over ``repeats`` timed calls after one warm-up call."""
    fn(requests, n)
    tokens, seconds = 0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        tokens += tokens_of(fn(requests, n))
        seconds += time.perf_counter() - start
    return tokens / seconds, tokens, seconds


def time_sync(load, state: dict, repeats: int) -> tuple[float, float]:
    """(seconds per sync, GB/s) of ``load(state)``, best of ``repeats`` after one warm-up."""

    load(state)
    best = min(_timed(load, state) for _ in range(repeats))
    return best, state_dict_nbytes(state) / 1e9 / best


def _timed(fn, *args) -> float:
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", help="model directory (default: the tiny model, built under --out)")
    ap.add_argument("--out", default="runs/bench_rollout", help="where the tiny models are built")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4, help="samples per prompt")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--temperature", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1, help="rollout.torch_threads (engine OpenMP threads on CPU)")
    ap.add_argument("--kv-cache-gb", type=int, default=1, help="rollout.cpu_kv_cache_gb")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-pool", action="store_true", help="skip the RolloutWorker row")
    ap.add_argument("--no-large", action="store_true", help="skip the larger tiny model's weight-sync row")
    ap.add_argument("--large-hidden", type=int, default=256, help="larger tiny model: hidden size (2 heads per 128)")
    ap.add_argument("--large-layers", type=int, default=8, help="larger tiny model: decoder layers")
    a = ap.parse_args(argv)

    model = a.model or build_tiny_model(os.path.join(a.out, "tiny_model"), tokenizer_corpus())
    settings = RolloutSettings(
        temperature=a.temperature,
        max_new_tokens=a.max_new_tokens,
        max_model_len=max(1024, a.max_new_tokens + 768),
        torch_threads=a.threads,
        cpu_kv_cache_gb=a.kv_cache_gb,
        device=a.device,
    )
    requests = make_requests(a.prompts)
    rows: list[tuple[str, str, str]] = []
    batch = f"{a.prompts} prompts x n={a.n}, up to {a.max_new_tokens} new tokens, T={a.temperature}, {a.dtype}"

    engine = VLLMEngine(model, settings, a.dtype, seed=0)
    rows.append(("engine start-up", f"{engine.startup_seconds:.1f} s", f"{engine.device}, model {model}"))
    tps, tokens, seconds = time_generate(engine.generate, requests, a.n, a.repeats)
    rows.append(("standalone engine generate", f"{tps:,.0f} tokens/s", f"{batch}; {tokens} tokens in {seconds:.2f} s"))
    state = perturbed_state(model, a.dtype)
    sec, gbs = time_sync(engine.load_weights, state, a.repeats)
    rows.append(
        (
            "weight sync, standalone engine",
            f"{sec * 1e3:.0f} ms ({gbs:.2f} GB/s)",
            f"{state_dict_nbytes(state) / 1e6:.1f} MB state dict, {len(state)} tensors, in-place reload",
        )
    )
    engine.close()
    del engine

    if not a.model and not a.no_large:
        h, layers = a.large_hidden, a.large_layers
        spec = TinyModelSpec(
            hidden_size=h,
            num_layers=layers,
            num_heads=h // 128 if h > 128 else 2,
            num_kv_heads=1,
            intermediate_size=4 * h,
        )
        large = build_tiny_model(os.path.join(a.out, f"tiny_model_h{h}_l{layers}"), tokenizer_corpus(), spec)
        engine = VLLMEngine(large, settings, a.dtype, seed=0)
        state = perturbed_state(large, a.dtype)
        sec, gbs = time_sync(engine.load_weights, state, a.repeats)
        rows.append(
            (
                "weight sync, larger tiny model",
                f"{sec * 1e3:.0f} ms ({gbs:.2f} GB/s)",
                f"{state_dict_nbytes(state) / 1e6:.1f} MB state dict (hidden {h}, {layers} layers), in-place reload",
            )
        )
        engine.close()
        del engine

    if a.no_pool:
        rows.append(("through the rollout pool", "skipped", "--no-pool"))
    else:
        rows.extend(bench_pool(model, settings, a, requests, batch))

    print()
    print("| measurement | result | conditions |")
    print("| --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} |")
    return 0


def bench_pool(model: str, settings, a, requests, batch: str) -> list[tuple[str, str, str]]:
    """The same batch through ``actors.rollout.RolloutWorker`` (interface ``RolloutWorker.remote(worker_id,
    model_path, settings, dtype, seed)``, ``generate.remote(requests, n)``, ``update_weights.remote(state,
    version)``)."""
    rows = []
    started = not ray.is_initialized()
    if started:
        ray.init(
            address="local",
            num_cpus=max(2, os.cpu_count() or 2),
            include_dashboard=False,
            namespace="bench",
            runtime_env={"env_vars": {"PYTHONPATH": os.getcwd(), "TOKENIZERS_PARALLELISM": "false"}},
        )
    worker = None
    try:
        start = time.perf_counter()
        worker = RolloutWorker.options(num_cpus=1).remote("bench", model, settings, a.dtype, 0)
        if hasattr(worker, "ready"):
            ray.get(worker.ready.remote())
        rows.append(("rollout worker start-up (Ray actor)", f"{time.perf_counter() - start:.1f} s", "actor + engine"))
        tps, tokens, seconds = time_generate(
            lambda r, n: ray.get(worker.generate.remote(r, n)), requests, a.n, a.repeats
        )
        rows.append(
            (
                "through RolloutWorker.generate",
                f"{tps:,.0f} tokens/s",
                f"{batch}; {tokens} tokens in {seconds:.2f} s, results fetched to the driver",
            )
        )

        state = perturbed_state(model, a.dtype, seed=1)
        version = iter(range(1, 1000))
        sec, gbs = time_sync(
            lambda s: ray.get(worker.update_weights.remote(ray.put(s), next(version))), state, a.repeats
        )
        rows.append(
            (
                "weight sync through RolloutWorker.update_weights",
                f"{sec * 1e3:.0f} ms ({gbs:.2f} GB/s)",
                f"{state_dict_nbytes(state) / 1e6:.1f} MB, ray.put + object store + in-place reload",
            )
        )
    except Exception as e:  # noqa: BLE001 (report the failure as a row; the other rows still count)
        rows.append(("through the rollout pool", "failed", f"{type(e).__name__}: {str(e)[:300]}"))
    finally:
        if worker is not None:
            ray.kill(worker)
        if started:
            ray.shutdown()
    return rows


if __name__ == "__main__":
    sys.exit(main())
