#!/usr/bin/env python
"""GPU check of the memory model: the learner micro-step and the reference pass of ``scripts/bench_memory.py`` at
full Qwen2.5-VL-3B depth in bf16 on CUDA, measured peak next to the model's prediction.

    python scripts/gpu_check.py                  # 3B, full depth, preset lengths (prompt 6,144, response 2,048)
    python scripts/gpu_check.py --size 7b        # 7B (needs about 60 GB for the full-vocabulary case)
    python scripts/gpu_check.py --device cpu --size tiny --layers 1 --prompt 48 --image 16 --response 8   # smoke run

Needs only torch (2.11 or newer), transformers and this repository (no vLLM, Ray or DeepSpeed; nothing is
downloaded: the model is built from its config with random weights). Each case runs in its own process; the peak is
``torch.cuda.max_memory_allocated`` above the model, its parameter gradients (pre-allocated; the embedding, tied to
the output projection, is frozen) and the inputs. The prediction is the activation term of the memory model
(``bench_memory.activation_bytes``) from the CPU measurements stored in ``scripts/bench_memory.json``, in bf16.
Under 8 minutes on one H100/H200 (model construction on the GPU takes seconds; each pass a few seconds).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import bench_memory  # noqa: E402  (a sibling script: the same cases and memory model)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--size", default="3b", choices=sorted(bench_memory.SIZES))
    parser.add_argument("--layers", type=int, default=None, help="text layers (default: the model's full depth)")
    parser.add_argument("--vision-layers", type=int, default=None, help="vision blocks (default: 32)")
    parser.add_argument("--prompt", type=int, default=6144, help="prompt tokens, image included")
    parser.add_argument("--image", type=int, default=5000, help="image tokens of the prompt")
    parser.add_argument("--response", type=int, default=2048, help="response tokens")
    parser.add_argument("--skip-full-vocab", action="store_true", help="leave out the former full-vocabulary path")
    args = parser.parse_args()
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            raise SystemExit("no CUDA device: use --device cpu for a smoke run")
    size = bench_memory.SIZES[args.size]
    layers = args.layers or size["layers"]
    vision_layers = args.vision_layers or bench_memory.VISION["depth"]
    lengths = dict(prompt=args.prompt, image=args.image, response=args.response)
    spec = dict(size=args.size, layers=layers, vision_layers=vision_layers, device=args.device, threads=16, **lengths)
    cases = [("learner micro-step, chunked log-probs", dict(spec, role="learner", chunk=512))]
    if not args.skip_full_vocab:
        cases.append(("learner micro-step, full-vocabulary log-probs", dict(spec, role="learner", chunk=0)))
    cases.append(("reference pass, chunked log-probs", dict(spec, role="reference", chunk=512)))

    stored = json.loads(bench_memory.COEFFICIENTS.read_text()) if bench_memory.COEFFICIENTS.exists() else {}
    coefficients = stored.get("coefficients", {}).get(args.size)
    scale = 0.5 if args.device == "cuda" else 1.0  # bf16 activations on the GPU, float32 on the CPU
    depth = max(layers, vision_layers)
    tokens = args.prompt + args.response
    print(
        f"Qwen2.5-VL-{args.size.upper()} widths, {layers} text layers, {vision_layers} vision blocks, "
        f"{args.device}, prompt {args.prompt} ({args.image} image tokens) + response {args.response}"
    )
    print("| case | measured peak (GiB) | predicted (GiB) | error | seconds | tokens/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, case in cases:
        result = bench_memory.measure_in_subprocess(case)
        predicted, error = "n/a", "n/a"
        if coefficients is not None:
            chunked = bool(case["chunk"])
            value = bench_memory.activation_bytes(
                coefficients, case["role"], depth, tokens, scale, chunked, args.response
            )
            predicted = f"{value / 2**30:.2f}"
            error = f"{100 * (value - result['peak']) / result['peak']:+.0f}%"
        print(
            f"| {name} | {result['peak'] / 2**30:.2f} | {predicted} | {error} | {result['seconds']:.1f} | "
            f"{result['tokens'] / result['seconds']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
