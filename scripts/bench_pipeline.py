#!/usr/bin/env python
"""Does generating ahead pay? The CPU default at ``algo.max_staleness`` 0 and 1 on the same seed, model and data.

    python scripts/bench_pipeline.py                      # 10 steps each, staleness 0 then 1
    python scripts/bench_pipeline.py --steps 6 --set rollout.engine=hf

Both runs use one tiny model and dataset built once under ``--root``, no validation, and put the rollout worker and
the learner ranks on separate cores: their own Ray CPUs (``rollout.num_cpus``, ``learner.num_cpus``) and, since Ray
only reserves logical CPUs, pinned to disjoint cores (``rollout.cpu_cores``, ``learner.cpu_cores``; by default the
first half of this process's cores for the rollout worker, the rest for the learners). Prints, per staleness, the
median step time over the steps after the first two, each pool's mean busy fraction (``pool/<name>_busy``) and the
ratio of the step times; writes the rates it measured to ``<root>/rates.json`` (per RESPONSE token, the CPU shape's
prompts being fixed) and prints what ``cluster/capacity.py`` predicts from them next to what was measured.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
log = logging.getLogger("bench_pipeline")
POOLS = ("rollout", "learner", "reference", "reward")


def prepare(root: Path, overrides: list[str]) -> tuple[str, str]:
    """The tiny model and dataset, built once (as ``scripts/train.py`` builds them) and shared by both runs."""
    from cluster.config import DEMO_CONFIG, load_config
    from cluster.trainer import prepare_dataset, prepare_model
    from datagen.stvqa import load_stvqa
    from rewards.prompt import PromptBuilder

    cfg = load_config(str(DEMO_CONFIG), [f"output_dir={root / 'shared'}", *overrides])
    out = root / "shared"
    out.mkdir(parents=True, exist_ok=True)
    dataset = prepare_dataset(cfg, out)
    model = prepare_model(cfg, out, load_stvqa(dataset, cfg.data.train_split), PromptBuilder(cfg.prompt))
    return dataset, model


def run(root: Path, staleness: int, steps: int, base: list[str]) -> list[dict]:
    out = root / f"staleness{staleness}"
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--output-dir", str(out), "--resume", "never"]
    for item in [*base, f"steps={steps}", f"algo.max_staleness={staleness}"]:
        cmd += ["--set", item]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop("RAY_ADDRESS", None)
    start = time.perf_counter()
    with open(root / f"staleness{staleness}.log", "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"staleness {staleness} failed (exit {proc.returncode}); see {fh.name}")
    log.info("staleness %d: %d steps in %.0f s", staleness, steps, time.perf_counter() - start)
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]


def summarise(lines: list[dict], skip: int) -> dict:
    steps = [m for m in lines if m.get("step", 0) > skip and "time/step" in m]
    if not steps:
        raise RuntimeError("no steps to measure: raise --steps")
    row = {"step_s": statistics.median(m["time/step"] for m in steps), "steps": len(steps)}
    for pool in POOLS:
        values = [m[f"pool/{pool}_busy"] for m in steps if f"pool/{pool}_busy" in m]
        row[pool] = statistics.mean(values) if values else None
    for key in ("time/generate", "time/score", "time/update", "time/weight_sync", "rollout/response_tokens_mean"):
        row[key] = statistics.median(m[key] for m in steps)
    row["staleness_mean"] = statistics.mean(m.get("rollout/staleness_mean", 0.0) for m in steps)
    return row


def measured_rates(sync: dict, ahead: dict, responses: int, ranks: int):
    """Per-response-token rates (the CPU shape's prompts are fixed): generation and update from the synchronous
    run's phases, the reference's forward pass from its busy time in the staleness-1 run (in the synchronous step
    the learners' old-log-prob phase waits for it, so no phase of its own times it)."""
    from cluster.capacity import Rates

    tokens = responses * sync["rollout/response_tokens_mean"]
    reference_s = (ahead["reference"] or 0.0) * ahead["step_s"]
    return Rates(
        generation=tokens / sync["time/generate"],
        training=tokens / (ranks * sync["time/update"]),
        forward=tokens / reference_s if reference_s > 0 else float("inf"),
        weight_sync_s=sync["time/weight_sync"],
        source="measured by scripts/bench_pipeline.py (per response token)",
    )


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--skip", type=int, default=2, help="first steps left out of the medians (start-up)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--root", help="folder for the runs (default: a temporary folder)")
    ap.add_argument("--rollout-cpus", type=float, default=1.0)
    ap.add_argument("--learner-cpus", type=float, default=0.5, help="Ray CPUs per learner rank")
    ap.add_argument("--rollout-cores", help="CPU list for the rollout worker (default: the first half of the cores)")
    ap.add_argument("--learner-cores", help="CPU list for the learner ranks (default: the other half)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args(argv)
    from cluster.capacity import Shape, Split, predict
    from cluster.config import DEMO_CONFIG, load_config

    cores = sorted(os.sched_getaffinity(0))
    if len(cores) < 2 and not (args.rollout_cores and args.learner_cores):
        log.error("bench_pipeline needs 2 cores or more to put the pools on separate cores (it may use %s)", cores)
        return 1
    half = len(cores) // 2
    rollout_cores = args.rollout_cores or ",".join(map(str, cores[:half]))
    learner_cores = args.learner_cores or ",".join(map(str, cores[half:]))
    log.info("rollout worker on cores %s, learner ranks on cores %s", rollout_cores, learner_cores)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-pipeline-"))
    root.mkdir(parents=True, exist_ok=True)
    common = [f"seed={args.seed}", *args.overrides]
    dataset, model = prepare(root, common)
    base = [
        *common,
        f"model.path={model}",
        f"data.dataset={dataset}",
        "eval.val_before_train=false",
        "eval.val_every=0",
        f"rollout.num_cpus={args.rollout_cpus}",
        f"learner.num_cpus={args.learner_cpus}",
        f"rollout.cpu_cores={rollout_cores}",
        f"learner.cpu_cores={learner_cores}",
    ]
    cfg = load_config(str(DEMO_CONFIG), base)
    log.info("runs under %s", root)
    rows = {}
    for staleness in (0, 1):
        try:
            rows[staleness] = summarise(run(root, staleness, args.steps, base), args.skip)
        except (RuntimeError, OSError, KeyError, ValueError) as e:
            log.error("%s", e)
            return 1
    print("| max_staleness | step s (median) | rollout busy | learner busy | reference busy | reward busy | lag |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for s, r in rows.items():
        cells = " | ".join("-" if r[p] is None else f"{r[p]:.2f}" for p in POOLS)
        print(f"| {s} | {r['step_s']:.2f} | {cells} | {r['staleness_mean']:.2f} |")
    ratio = rows[1]["step_s"] / rows[0]["step_s"]
    change = f"{(1 - ratio) * 100:.0f}% shorter" if ratio <= 1 else f"{(ratio - 1) * 100:.0f}% longer"
    print(f"\nstep time at staleness 1 / staleness 0: {ratio:.2f} ({change})")
    responses = cfg.algo.prompts_per_step * cfg.rollout.group_size
    rates = measured_rates(rows[0], rows[1], responses, cfg.learner.num_workers)
    (root / "rates.json").write_text(json.dumps(rates.__dict__, indent=2))
    shape = Shape(responses, rows[0]["rollout/response_tokens_mean"], 0.0, learner_old_logprobs=False)
    split = Split(cfg.rollout.num_workers, cfg.learner.num_workers, 1 if cfg.algo.kl_beta > 0 else 0)
    for s in (0, 1):
        p = predict(rates, shape, split, s)
        print(f"capacity model at staleness {s}: {p.step_s:.2f} s/step predicted, {rows[s]['step_s']:.2f} measured")
    print(f"rates: {root / 'rates.json'}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
