#!/usr/bin/env python
"""Benchmark the reward path (parse + Numba CIoU + Hungarian) per response.

    python scripts/bench_rewards.py --n 5000 --objects 8
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--objects", type=int, default=8)
    a = ap.parse_args(argv)
    from rewards.kernels import warmup
    from rewards.spatial import compute_reward, perfect_response

    rng = random.Random(0)
    t = time.perf_counter()
    warmup()
    print(f"kernel warmup/compile: {time.perf_counter() - t:.2f}s")
    samples = []
    for i in range(64):
        objs = []
        for k in range(a.objects):
            x, y = rng.uniform(0, 400), rng.uniform(0, 400)
            objs.append({"id": f"obj{k % 5}.{k}", "name": f"obj{k % 5}", "bbox": [x, y, x + rng.uniform(5, 80), y + rng.uniform(5, 80)]})
        rels = [{"subject": objs[0]["id"], "predicate": "left of", "object": objs[-1]["id"]}]
        s = {"answer": "A", "options": ["x", "y"], "gt_objects": objs, "gt_relationships": rels}
        text = perfect_response(s)
        # jitter the boxes so matching has work to do
        samples.append((text.replace(".0", ".5"), s))
    t = time.perf_counter()
    for i in range(a.n):
        compute_reward(*samples[i % len(samples)])
    dt = time.perf_counter() - t
    print(f"{a.n} rewards with {a.objects} objects: {dt:.3f}s = {1e6 * dt / a.n:.1f} us/response")
    return 0


if __name__ == "__main__":
    sys.exit(main())
