#!/usr/bin/env python
"""Benchmark the reward: microseconds per response for scenes of N objects, in process and through the CLI.

    python scripts/bench_rewards.py --n 20000 --objects 8

Builds ``--scenes`` ground truths of ``--objects`` objects (with relations) and ``--n`` distinct responses (boxes
jittered by a few pixels, answers right so every response pays for the spatial matching -- the worst case), then
times:

* ``score_batch`` in this process (batches of ``--batch`` responses, GRPO-like);
* ``python -m rewards.score`` end to end on a JSONL file of the same responses: the CLI's own figure (read, parse,
  score, write; start-up excluded) and the wall time of the subprocess minus the wall time of the same command on a
  one-line file (start-up: interpreter, imports, Numba cache load).

Timings depend on the machine and its load; run it on an idle core.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards.kernels import warmup  # noqa: E402
from rewards.spatial import perfect_response, score_batch  # noqa: E402

log = logging.getLogger("bench_rewards")

NAMES = ["cup", "table", "chair", "lamp", "dog", "tree", "window", "traffic light", "door", "book", "plate", "bench"]
OPTIONS = ["left", "right", "above", "below"]


def make_items(n: int, n_objects: int, n_scenes: int, seed: int = 0) -> list[dict]:
    """``n`` records ``{"uid", "response", "ground_truth", "image_size"}`` over ``n_scenes`` ground truths."""
    rng = random.Random(seed)
    scenes = []
    for g in range(n_scenes):
        w, h = rng.choice([(640, 480), (500, 375), (800, 600)])
        objs = []
        for k in range(n_objects):
            x, y = rng.uniform(0, w - 130), rng.uniform(0, h - 130)
            box = [round(x, 1), round(y, 1), round(x + rng.uniform(10, 120), 1), round(y + rng.uniform(10, 120), 1)]
            objs.append({"id": f"{NAMES[(g + k) % len(NAMES)]}.{k + 1}", "bbox": box})
        rels = [
            {"subject": objs[i]["id"], "predicate": rng.choice(OPTIONS), "object": objs[i + 1]["id"]}
            for i in range(min(4, n_objects - 1))
        ]
        letter = "ABCD"[g % 4]
        gt = f"<scene>{json.dumps({'objects': objs, 'relationships': rels})}</scene>\n"
        gt += f"<answer>({letter}) {OPTIONS[g % 4]}</answer>"
        scenes.append((gt, [w, h], perfect_response(gt)))
    items = []
    number = re.compile(r"(?<=[\[ ])(\d+(?:\.\d+)?)(?=[,\]])")
    for i in range(n):
        gt, size, perfect = scenes[i % n_scenes]
        # jitter every box coordinate by a few pixels (corners stay ordered for boxes at least 10 px wide)
        response = number.sub(lambda m: f"{max(0.0, float(m.group(1)) + rng.uniform(-4, 4)):.1f}", perfect)
        items.append({"uid": i, "response": response, "ground_truth": gt, "image_size": size})
    return items


def bench_in_process(items: list[dict], batch: int) -> tuple[float, float]:
    tuples = [(r["response"], r["ground_truth"], r["image_size"]) for r in items]
    score_batch(tuples[:batch])  # ground-truth cache and kernels warm
    best = float("inf")
    mean_total = 0.0
    for _ in range(3):
        t = time.perf_counter()
        out = []
        for i in range(0, len(tuples), batch):
            out.extend(score_batch(tuples[i : i + batch]))
        best = min(best, time.perf_counter() - t)
        mean_total = sum(b.total for b in out) / len(out)
    return 1e6 * best / len(tuples), mean_total


def run_cli(path: Path) -> tuple[float, str]:
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "rewards.score", "--preset", "spatialthinker", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    return time.perf_counter() - t, p.stderr


def bench_cli(items: list[dict]) -> tuple[float, float]:
    with tempfile.TemporaryDirectory() as d:
        big, one = Path(d) / "in.jsonl", Path(d) / "one.jsonl"
        big.write_text("".join(json.dumps(r) + "\n" for r in items))
        one.write_text(json.dumps(items[0]) + "\n")
        run_cli(one)  # Numba cache written, files in the page cache
        startup = min(run_cli(one)[0] for _ in range(2))
        wall, stderr = min((run_cli(big) for _ in range(2)), key=lambda x: x[0])
    m = re.search(r"us_per_response=([\d.]+)", stderr)
    reported = float(m.group(1)) if m else float("nan")
    return reported, 1e6 * (wall - startup) / len(items)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="responses")
    ap.add_argument("--objects", type=int, default=8, help="objects per scene")
    ap.add_argument("--scenes", type=int, default=64, help="distinct ground truths")
    ap.add_argument("--batch", type=int, default=4096, help="score_batch batch size")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI benchmark")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = time.perf_counter()
    warmup()
    log.info("kernel compile/cache load: %.2fs", time.perf_counter() - t)
    items = make_items(a.n, a.objects, a.scenes)
    us_batch, mean_total = bench_in_process(items, a.batch)
    rows = [("score_batch (in process)", us_batch)]
    if not a.no_cli:
        reported, wall = bench_cli(items)
        rows += [("CLI, as reported (read+score+write)", reported), ("CLI, wall minus start-up", wall)]
    log.info("%d responses, %d objects per scene, %d scenes, mean total %.4f", a.n, a.objects, a.scenes, mean_total)
    log.info("%-40s %12s", "path", "us/response")
    for name, us in rows:
        log.info("%-40s %12.2f", name, us)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
