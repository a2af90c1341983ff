#!/usr/bin/env python
"""Predict step time and per-pool utilisation of a preset on N devices, with and without staleness
(``cluster/capacity.py``), and recommend the split of devices between the pools.

    python scripts/capacity_model.py                                   # the 3B preset on 4, 8 and 16 GPUs
    python scripts/capacity_model.py --config cluster/configs/spatialthinker_7b.yaml
    python scripts/capacity_model.py --rates runs/bench-pipeline/rates.json --config none --devices 4

``--config``: the preset whose split is "current" (its 4-GPU split, learner ranks scaled with the devices, the
reference's GPU kept, the rest engines) and whose shape is modelled (old log-probs from the learner unless
``rollout.use_engine_logprobs``, a reference when ``algo.kl_beta`` > 0); ``none``: the paper's 1 engine / 2 learner
ranks / 1 reference GPU. ``--rates``: a JSON file with the :class:`cluster.capacity.Rates` fields
(``scripts/bench_pipeline.py`` writes one from its measurement). Without it the rates are the ASSUMED H100 numbers
below (for a 7B preset scaled by the parameter count): this project has no GPU to measure them on, so the table
shows what the model implies under those assumptions, not a measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import fields

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cluster.capacity import Rates, Shape, Split, best, predict  # noqa: E402

PARAMS_3B = 3.75e9
"""Qwen2.5-VL-3B parameters (vision tower included)."""
PARAMS_7B = 8.29e9
"""Qwen2.5-VL-7B parameters (vision tower included)."""
DEFAULT_CONFIG = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "cluster", "configs", "spatialthinker_3b.yaml"
)
PAPER_SPLIT = Split(1, 2, 1)
"""The paper's node: 1 vLLM engine, 2 learner ranks, 1 reference GPU."""
H100_BF16 = 989e12
"""H100 SXM dense bf16 FLOP/s."""
ASSUMED_MFU = 0.25
"""Assumed model-FLOP utilisation of the learner and reference passes."""
ASSUMED_3B_H100 = Rates(
    generation=10_000.0,
    training=ASSUMED_MFU * H100_BF16 / (8 * PARAMS_3B),  # 6 FLOPs/param/token + recompute (gradient checkpointing)
    forward=ASSUMED_MFU * H100_BF16 / (2 * PARAMS_3B),
    weight_sync_s=0.5,
    source=(
        "ASSUMED, not measured: generation 10,000 response tokens/s per vLLM engine (the KV-cache-read roofline at "
        "256 sequences of ~5K tokens is ~18K); learner and reference at 25% MFU of an H100 (8 and 2 FLOPs per "
        "parameter per token); weight sync 0.5 s (peers report 0.1-0.35 s for 4-7B NCCL syncs)"
    ),
)
SHAPE_3B = Shape(responses=512 * 8, response_tokens=500, prompt_tokens=1000, learner_old_logprobs=True)
"""The 3B preset: 512 prompts x 8 responses; ASSUMED mean lengths (image ~600 tokens + text ~400; responses ~500 of
the 2,048 allowed); old log-probs from the learner and a reference (kl_beta 0.01), as the preset sets."""


def scaled_rates(rates: Rates, params: float) -> Rates:
    """The assumed 3B rates for a model of ``params`` parameters: every per-token rate scales inversely with the
    parameter count (decoding reads every weight per token; the passes are FLOP-bound), the sync with the bytes."""
    f = PARAMS_3B / params
    return Rates(
        generation=rates.generation * f,
        training=rates.training * f,
        forward=rates.forward * f,
        weight_sync_s=rates.weight_sync_s / f,
        source=f"{rates.source}; scaled by the parameter count ({params / 1e9:.2f}e9 / {PARAMS_3B / 1e9:.2f}e9)",
    )


def preset_splits(split: Split, devices: list[int], per: int = 4) -> dict[int, Split]:
    """A preset's split on ``per`` devices carried to other device counts: learner ranks scaled, the reference's
    devices kept, the rest engines."""
    out = {}
    for n in devices:
        ranks = max(1, split.ranks * n // per)
        engines = n - ranks - split.reference
        if engines >= 1:
            out[n] = Split(engines, ranks, split.reference)
    return out


def load_rates(path: str) -> Rates:
    data = json.loads(open(path).read())
    names = {f.name for f in fields(Rates)}
    missing = [n for n in ("generation", "training", "forward", "weight_sync_s") if n not in data]
    if missing:
        raise SystemExit(f"error: {path} lacks {', '.join(missing)}")
    return Rates(**{k: v for k, v in data.items() if k in names})


def table(rates: Rates, shape: Shape, devices: list[int], current: dict[int, Split]) -> str:
    lines = [
        "| devices | split | staleness | step s | rollout util | learner util | reference util | vs current sync |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for n in devices:
        base = predict(rates, shape, current[n], 0) if n in current else None
        rows = []
        if base:
            rows.append(("current", base))
            rows.append(("current", predict(rates, shape, current[n], 1)))
        rows += [("best", best(rates, shape, n, 0)), ("best", best(rates, shape, n, 1))]
        for kind, p in rows:
            ref = f"{p.busy['reference']:.2f}" if "reference" in p.busy else "on learners"
            gain = f"{base.step_s / p.step_s:.2f}x" if base else "-"
            lines.append(
                f"| {n} | {kind}: {p.split.label()} | {p.staleness} | {p.step_s:.0f} | {p.busy['rollout']:.2f} | "
                f"{p.busy['learner']:.2f} | {ref} | {gain} |"
            )
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG, help="preset whose split is 'current' ('none': the paper's)")
    ap.add_argument("--rates", help="JSON file of measured rates (default: the assumed H100 rates)")
    ap.add_argument("--devices", type=int, nargs="+", default=[4, 8, 16])
    ap.add_argument("--responses", type=int, default=SHAPE_3B.responses)
    ap.add_argument("--response-tokens", type=float, default=SHAPE_3B.response_tokens)
    ap.add_argument("--prompt-tokens", type=float, default=SHAPE_3B.prompt_tokens)
    ap.add_argument("--engine-logprobs", action="store_true", help="old log-probs from the engine (no learner pass)")
    ap.add_argument("--no-reference", action="store_true", help="no KL term (kl_beta 0)")
    args = ap.parse_args(argv)
    rates = load_rates(args.rates) if args.rates else ASSUMED_3B_H100
    engine_logprobs, reference, split = args.engine_logprobs, not args.no_reference, PAPER_SPLIT
    if args.config != "none":
        from cluster.config import ConfigError, load_config

        try:
            cfg = load_config(args.config)
        except (ConfigError, OSError, ValueError) as e:
            raise SystemExit(f"error: {args.config}: {e}") from None
        if not args.rates and "7b" in (cfg.model.path or "").lower():
            rates = scaled_rates(rates, PARAMS_7B)
        engine_logprobs = engine_logprobs or cfg.rollout.use_engine_logprobs
        reference = reference and cfg.algo.kl_beta > 0
        colocated = reference and cfg.reference.colocate_with_learner
        on_reference = 0 if colocated or not reference else int(max(1, cfg.reference.num_gpus))
        split = Split(cfg.rollout.num_workers, cfg.learner.num_workers, on_reference)
        print(f"preset: {args.config} ({split.label()} on {split.devices} GPUs)")
    shape = Shape(
        args.responses,
        args.response_tokens,
        args.prompt_tokens,
        learner_old_logprobs=not engine_logprobs,
        reference=reference,
    )
    current = preset_splits(split, args.devices, split.devices)
    print(f"rates: {rates.source or 'from ' + str(args.rates)}")
    print(
        f"shape: {shape.responses} responses x ({shape.prompt_tokens:.0f} prompt + {shape.response_tokens:.0f} "
        f"response tokens); learner old log-probs: {shape.learner_old_logprobs}; reference: {shape.reference}\n"
    )
    print(table(rates, shape, args.devices, current))
    print()
    for n in args.devices:
        sync, ahead = best(rates, shape, n, 0), best(rates, shape, n, 1)
        print(
            f"recommended on {n} devices: {sync.split.label()} at max_staleness 0 ({sync.step_s:.0f} s/step), "
            f"{ahead.split.label()} at max_staleness 1 ({ahead.step_s:.0f} s/step)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
