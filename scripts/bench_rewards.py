#!/usr/bin/env python
"""Benchmark the reward: microseconds per response for scenes of N objects, in process and through the CLI.

    python scripts/bench_rewards.py --n 20000 --objects 8

Builds ``--scenes`` ground truths of ``--objects`` objects (with relations) and ``--n`` distinct responses (boxes
jittered by a few pixels, answers right so every response pays for the spatial matching -- the worst case), then
times:

* ``score_batch`` in this process (batches of ``--batch`` responses, GRPO-like);
* ``python -m rewards.score`` end to end on a JSONL file of ``--cli-repeat`` copies of the same responses: the CLI's
  own figure (read, parse, score, write; start-up excluded) and the time of the whole subprocess minus that of the
  same command on a one-line file (start-up: interpreter, imports, Numba cache load), best of three each.

Each is given as wall time and as CPU time (which a busy machine inflates less). Run it on an idle core.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from rewards.spatial import perfect_response, score_batch, warmup  # noqa: E402

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


def bench_in_process(items: list[dict], batch: int) -> tuple[float, float, float]:
    """(wall us/response, CPU us/response, mean total) of ``score_batch``, best of 3."""
    tuples = [(r["response"], r["ground_truth"], r["image_size"]) for r in items]
    score_batch(tuples[:batch])  # ground-truth cache and kernels warm
    best_wall = best_cpu = float("inf")
    mean_total = 0.0
    for _ in range(3):
        t, c = time.perf_counter(), time.process_time()
        out = []
        for i in range(0, len(tuples), batch):
            out.extend(score_batch(tuples[i : i + batch]))
        best_wall = min(best_wall, time.perf_counter() - t)
        best_cpu = min(best_cpu, time.process_time() - c)
        mean_total = sum(b.total for b in out) / len(out)
    return 1e6 * best_wall / len(tuples), 1e6 * best_cpu / len(tuples), mean_total


def run_cli(path: Path) -> tuple[float, float, str]:
    """(wall seconds, CPU seconds, stderr) of one CLI run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t = time.perf_counter()
    p = subprocess.run(
        [sys.executable, "-m", "rewards.score", "--preset", "spatialthinker", str(path)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        check=True,
    )
    wall = time.perf_counter() - t
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, p.stderr


def bench_cli(items: list[dict], repeat: int) -> dict[str, tuple[float, float]]:
    """us/response of the CLI on ``repeat`` copies of ``items``: as it reports itself, and whole-process time minus
    the time of a one-line run (enough lines that start-up's jitter, about 0.1 s, does not swamp the difference)."""
    with tempfile.TemporaryDirectory() as d:
        big, one = Path(d) / "in.jsonl", Path(d) / "one.jsonl"
        big.write_text("".join(json.dumps(r) + "\n" for r in items) * repeat)
        one.write_text(json.dumps(items[0]) + "\n")
        run_cli(one)  # Numba cache written, files in the page cache
        small, large = [], []
        for _ in range(3):  # interleaved, so that a drift in start-up time hits both alike
            small.append(run_cli(one))
            large.append(run_cli(big))
    n = len(items) * repeat
    best = min(large, key=lambda x: x[1])
    wall = re.search(r"us_per_response=([\d.]+)", best[2])
    cpu = re.search(r"cpu_us_per_response=([\d.]+)", best[2])
    reported = (float(wall.group(1)) if wall else math.nan, float(cpu.group(1)) if cpu else math.nan)
    minus_startup = (
        1e6 * (min(x[0] for x in large) - min(x[0] for x in small)) / n,
        1e6 * (min(x[1] for x in large) - min(x[1] for x in small)) / n,
    )
    return {"CLI, as it reports (read+score+write)": reported, "CLI, process minus a 1-line run": minus_startup}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20000, help="responses")
    ap.add_argument("--objects", type=int, default=8, help="objects per scene")
    ap.add_argument("--scenes", type=int, default=64, help="distinct ground truths")
    ap.add_argument("--batch", type=int, default=4096, help="score_batch batch size")
    ap.add_argument("--no-cli", action="store_true", help="skip the CLI benchmark")
    ap.add_argument("--cli-repeat", type=int, default=5, help="the CLI scores this many copies of the responses")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    t = time.perf_counter()
    warmup()
    log.info("kernel compile/cache load: %.2fs", time.perf_counter() - t)
    items = make_items(a.n, a.objects, a.scenes)
    wall, cpu, mean_total = bench_in_process(items, a.batch)
    rows = {f"score_batch (batches of {a.batch})": (wall, cpu)}
    if not a.no_cli:
        rows.update(bench_cli(items, a.cli_repeat))
    log.info("%d responses, %d objects per scene, %d scenes, mean total %.4f", a.n, a.objects, a.scenes, mean_total)
    log.info("%-42s %10s %10s", "path", "wall us", "CPU us")
    for name, (w, c) in rows.items():
        log.info("%-42s %10.2f %10.2f", name, w, c)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    sys.exit(main())
