#!/usr/bin/env python
"""Does GRPO help? Run the default job for several seeds and report held-out reward before and after GRPO.

    python scripts/bench_learning.py                       # seeds 0 1 2, default settings
    python scripts/bench_learning.py --seeds 0 1 --set rollout.engine=hf
    python scripts/bench_learning.py --staleness 0 1       # each seed at algo.max_staleness 0 and 1, side by side

Each seed runs ``scripts/train.py --output-dir <root>/seed<N> --set seed=N`` (plus any ``--set``) from scratch and
reads its ``summary.json``. Prints a markdown table and the mean and standard deviation of the gain.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_learning")


def run_seed(root: Path, seed: int, overrides: list[str], staleness: int | None = None) -> dict:
    name = f"seed{seed}" if staleness is None else f"seed{seed}-staleness{staleness}"
    out = root / name
    shutil.rmtree(out, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--output-dir", str(out), "--set", f"seed={seed}"]
    for item in overrides + ([] if staleness is None else [f"algo.max_staleness={staleness}"]):
        cmd += ["--set", item]
    start = time.perf_counter()
    with open(root / f"{name}.log", "w") as fh:
        proc = subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=str(ROOT), check=False)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"{name} failed (exit {proc.returncode}); see {root / f'{name}.log'}")
    summary = json.loads((out / "summary.json").read_text())
    if not summary.get("val_before") or not summary.get("val_after"):
        raise RuntimeError(f"seed {seed}: summary.json lacks val_before/val_after (is validation on?)")
    row = {"seed": seed, "before": summary["val_before"], "after": summary["val_after"], "seconds": seconds}
    return {**row, "staleness": staleness}


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--root", help="folder for the runs (default: a temporary folder)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument(
        "--staleness", type=int, nargs="+", help="run every seed at each of these algo.max_staleness values"
    )
    args = ap.parse_args(argv)
    root = Path(args.root or tempfile.mkdtemp(prefix="bench-learning-"))
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    log.info("runs under %s (settings: defaults%s)", root, "".join(f" {o}" for o in args.overrides))
    for staleness in args.staleness or [None]:
        for seed in args.seeds:
            try:
                row = run_seed(root, seed, args.overrides, staleness)
            except (RuntimeError, OSError, KeyError, TypeError, ValueError) as e:
                log.error("seed %d: %s", seed, e)
                return 1
            log.info(
                "seed %d%s: reward %.4f -> %.4f in %.0f s",
                seed,
                "" if staleness is None else f" staleness {staleness}",
                row["before"]["reward"],
                row["after"]["reward"],
                row["seconds"],
            )
            rows.append(row)
    with_staleness = args.staleness is not None
    head = "| seed | " + ("max_staleness | " if with_staleness else "")
    print(head + "val reward before | after | gain | val accuracy before | after | wall s |")
    print("| --- " * (8 if with_staleness else 7) + "|")
    for r in rows:
        gain = r["after"]["reward"] - r["before"]["reward"]
        before, after = r["before"], r["after"]
        print(
            f"| {r['seed']} | " + (f"{r['staleness']} | " if with_staleness else "") + f"{before['reward']:.4f} | "
            f"{after['reward']:.4f} | {gain:+.4f} | {before['accuracy']:.4f} | {after['accuracy']:.4f} | "
            f"{r['seconds']:.0f} |"
        )
    for staleness in args.staleness or [None]:
        gains = [r["after"]["reward"] - r["before"]["reward"] for r in rows if r["staleness"] == staleness]
        spread = statistics.stdev(gains) if len(gains) > 1 else 0.0
        label = "" if staleness is None else f" at max_staleness {staleness}"
        print(
            f"\ngain over {len(gains)} seeds{label}: mean {statistics.mean(gains):+.4f}, std {spread:.4f}, "
            f"min {min(gains):+.4f}"
        )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
