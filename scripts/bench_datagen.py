#!/usr/bin/env python
"""Benchmark of the STVQA builders on Visual Genome-shaped inputs at VG density.

    python scripts/bench_datagen.py                                  # 10K, 30K and 108K images, streamed builder
    python scripts/bench_datagen.py --sizes 10000 --memory-sizes 10000   # also the older in-memory builder at 10K

Each input is generated once into --work (datagen.synthetic.generate_vg_scale_input: VG v1.4 JSON layout, about
35 objects and 21 relationships per image, 500x375 JPEGs of about 170 KB, symbolic links to a few real files) and
reused by later runs. Each build runs `scripts/make_dataset.py` as a child process; its process tree (the builder
and its workers) is sampled every 0.2 s: peak RSS summed over the tree, and peak PSS summed over the tree (shared
pages, e.g. the forked workers' copy of the imported libraries, counted once); CPU s is the user+system time of the
build and its workers, img/CPU-s the images per CPU-second (on an idle machine images/s is about that times the
cores, as nearly all the work runs in the workers), load the 1-minute load average during the run (the machine is
shared: a load above the core count slows every process down). The dataset written is deleted after
each run (the full VG output is about 18 GB). Prints one table row per run.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from datagen.synthetic import generate_vg_scale_input  # noqa: E402


def _sample_tree(pid: int, peaks: dict, stop: threading.Event) -> None:
    """Record the peak of the summed RSS and PSS of ``pid`` and its descendants until ``stop``."""
    try:
        top = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        rss = pss = 0
        try:
            procs = [top, *top.children(recursive=True)]
        except psutil.NoSuchProcess:
            break
        for p in procs:
            try:
                m = p.memory_full_info()
                rss, pss = rss + m.rss, pss + m.pss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                continue
        peaks["rss"], peaks["pss"] = max(peaks["rss"], rss), max(peaks["pss"], pss)
        stop.wait(0.2)


def run_build(vg: Path, out: Path, builder: str, workers: int) -> dict:
    """One build of ``vg`` into ``out`` with ``make_dataset.py``; wall time, peaks and the stage times it logged."""
    cmd = [sys.executable, str(ROOT / "scripts" / "make_dataset.py"), "--vg-root", str(vg), "--out", str(out),
           "--builder", builder, "--workers", str(workers)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    peaks = {"rss": 0, "pss": 0}
    stop = threading.Event()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sampler = threading.Thread(target=_sample_tree, args=(proc.pid, peaks, stop), daemon=True)
    sampler.start()
    stdout, stderr = proc.communicate(timeout=6 * 3600)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # the build and its workers (reaped descendants)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    load = (load0 + os.getloadavg()[0]) / 2
    stop.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"build failed ({proc.returncode}): {stderr[-2000:]}")
    stages = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"INFO (index|vocabulary|plan|built)\b.*?\(?([\d.]+) s\)?", stderr)
    }
    rows = re.search(r"wrote (\d+) rows", stdout)
    return {"wall": wall, "cpu": cpu, "load": load, "rss": peaks["rss"], "pss": peaks["pss"], "stages": stages,
            "rows": int(rows.group(1))}  # fmt: skip


def prompt_sizes(vg: Path, n: int = 200) -> None:
    """Print the writer's and the verifier's prompt sizes for the first ``n`` images of ``vg`` (token counts are
    estimated as characters / 4, the usual ratio of English text in BPE vocabularies; image tokens are those of
    Qwen2.5-VL: 28x28-pixel patches after scaling into the paper's 512^2..2048^2 pixel range)."""
    from datagen.llm import scene_for_prompt, writer_messages
    from datagen.vg import load_visual_genome
    from rewards.prompt import PromptBuilder, scaled_size

    images = load_visual_genome(vg, limit=n)
    chars = [sum(len(m["content"]) for m in writer_messages(scene_for_prompt(img)[1], "relation")) for img in images]
    text = PromptBuilder().text("Where is the cup relative to the table?", ["left of", "on", "behind"], (500, 375))
    w, h = scaled_size(500, 375, 512 * 512, 2048 * 2048)
    image_tokens = (w // 28) * (h // 28)
    mean = sum(chars) / len(chars)
    print(
        f"writer prompt: {mean:.0f} characters per image on average (~{mean / 4:.0f} tokens), over {len(chars)} images"
    )
    print(
        f"verifier prompt: {len(text)} characters of text (~{len(text) / 4:.0f} tokens) + {image_tokens} image tokens"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="10000,30000,108000", help="image counts of the generated inputs")
    ap.add_argument("--memory-sizes", default="", help="sizes at which the in-memory builder also runs (~1 MB/image)")
    ap.add_argument("--workers", type=int, default=0, help="streamed builder workers (0 = one per core)")
    ap.add_argument("--work", default="/tmp/bench_datagen", help="folder of the generated inputs and outputs")
    ap.add_argument("--prompt-sizes", action="store_true", help="only print the writer's and verifier's prompt sizes")
    a = ap.parse_args(argv)
    if a.prompt_sizes:
        vg = Path(a.work) / "vg-prompts"
        if not (vg / "synthetic_vg.json").is_file():
            generate_vg_scale_input(vg, 200, seed=0)
        prompt_sizes(vg)
        return 0
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    sizes = [int(s) for s in a.sizes.split(",") if s]
    memory_sizes = {int(s) for s in a.memory_sizes.split(",") if s}
    print(f"cores {os.cpu_count()}, workers {a.workers or os.cpu_count()}")
    head = f"{'images':>7} {'builder':>8} {'rows':>7} {'wall s':>8} {'images/s':>9} {'CPU s':>8} {'img/CPU-s':>9} "
    head += f"{'load':>5} {'peak RSS GB':>12} {'peak PSS GB':>12}  stages (s, cumulative)"
    print(head)
    print("-" * len(head))
    for n in sizes:
        vg = work / f"vg-{n}"
        if not (vg / "synthetic_vg.json").is_file():
            t = time.perf_counter()
            generate_vg_scale_input(vg, n, seed=0)
            print(f"# generated {vg} in {time.perf_counter() - t:.0f} s", flush=True)
        for builder in ["streamed"] + (["memory"] if n in memory_sizes else []):
            out = work / f"out-{n}-{builder}"
            shutil.rmtree(out, ignore_errors=True)
            r = run_build(vg, out, builder, a.workers)
            shutil.rmtree(out, ignore_errors=True)
            stages = " ".join(f"{k} {v:.0f}" for k, v in r["stages"].items())
            print(
                f"{n:>7} {builder:>8} {r['rows']:>7} {r['wall']:>8.1f} {n / r['wall']:>9.1f} {r['cpu']:>8.0f} "
                f"{n / r['cpu']:>9.1f} {r['load']:>5.1f} {r['rss'] / 2**30:>12.2f} {r['pss'] / 2**30:>12.2f}  "
                f"{stages}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
