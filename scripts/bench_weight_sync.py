#!/usr/bin/env python
"""Weight-sync benchmark: learner (DeepSpeed ZeRO-3, 2 ranks) -> rollout pool (vLLM engines), object-store path.

    python scripts/bench_weight_sync.py                          # tiny, ~60 MB, ~250 MB and ~1 GB models
    python scripts/bench_weight_sync.py --sizes tiny,60mb --syncs 2

For each model (Qwen2.5-VL architecture, float32, built under ``--out``) it prints, per sync path:

* seconds per sync and GB/s (model bytes / seconds) from the learner's parameters to every engine having reloaded
  them, next to memcpy GB/s measured in the same run (``np.copyto`` of 256 MB, one thread);
* the learner's peak extra memory during a sync: the highest resident set size of each rank during the sync (Linux
  ``VmHWM``, reset before the sync through ``/proc/self/clear_refs``, after ``malloc_trim``) minus its resident set
  before, the largest over ranks and syncs; split (sampled every 2 ms) into private memory (the gathered bucket,
  host copies) and object-store pages the rank wrote (shared memory owned by Ray's object store, freed once the
  engines have loaded the bucket). The streamed path runs first, on ranks that have not synced yet. The Ray workers
  run with ``MALLOC_MMAP_THRESHOLD_=65536`` so that freed tensors leave the resident set.

Paths: ``full gather`` is the pre-streaming sync (every parameter gathered at once on every rank, rank 0's state dict
through the object store into the engine's reload); ``streamed`` is ``RolloutPool.sync_weights`` (one bucket of
``rollout.weight_sync_bucket_mb`` gathered at a time, bucket refs loaded by the engines as they arrive).
``--stages`` instead times the engine side of a one-bucket sync stage by stage (``ray.put``, the bucket file, the
vLLM worker's read and layerwise reload, and the CPU backend's oneDNN packing on its own).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import ray  # noqa: E402

from actors.grpo import LossSettings  # noqa: E402
from actors.learner import BatchPlan, LearnerGroup  # noqa: E402
from actors.model import TinyModelSpec, build_tiny_model  # noqa: E402
from actors.settings import LearnerSettings, RolloutSettings  # noqa: E402
from cluster.pool import RolloutPool  # noqa: E402
from datagen.corpus import tokenizer_corpus  # noqa: E402

SIZES = {
    # name: (hidden, layers, heads, intermediate)
    "tiny": (128, 2, 2, 256),
    "60mb": (1024, 1, 8, 4096),
    "250mb": (1024, 4, 8, 4096),
    "1gb": (1024, 16, 8, 4096),
}
"""Models of the benchmark (head_dim 64 or 128, as vLLM's CPU attention needs)."""


def memcpy_gbs(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    src = np.ones(nbytes, dtype=np.uint8)
    dst = np.empty_like(src)
    np.copyto(dst, src)
    best = min(_timed(lambda: np.copyto(dst, src)) for _ in range(repeats))
    return nbytes / best / 1e9


def _timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _status(self=None) -> dict:
    """VmRSS, VmHWM, RssAnon, RssShmem of the calling process in bytes."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:", "RssAnon:", "RssShmem:")):
                out[line.split(":")[0]] = int(line.split()[1]) * 1024
    return out


def _start_sampler(self) -> dict:
    """Runs inside a learner rank (``__ray_call__``): return memory freed earlier to the OS, reset the peak RSS, and
    sample private (RssAnon) and shared (RssShmem: object-store pages this process wrote) memory every 2 ms."""
    import ctypes
    import gc
    import threading

    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # VmHWM := VmRSS
    base = _status()
    peak = dict(base)
    stop = threading.Event()

    def sample():
        while not stop.wait(0.002):
            for k, v in _status().items():
                peak[k] = max(peak[k], v)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    self._bench_sampler = (stop, thread, peak)
    return base


def _stop_sampler(self) -> dict:
    stop, thread, peak = self._bench_sampler
    stop.set()
    thread.join()
    for k, v in _status().items():
        peak[k] = max(peak[k], v)
    return peak


def measure(learners: LearnerGroup, sync) -> tuple[float, dict, object]:
    """(seconds, peak extra bytes over the learner ranks by kind, what ``sync()`` returned) of one ``sync()``:
    ``rss`` the peak resident set (VmHWM) minus the one before, ``private`` the peak of RssAnon minus before,
    ``shared`` the same for RssShmem (sampled every 2 ms)."""
    before = ray.get([r.__ray_call__.remote(_start_sampler) for r in learners.ranks])
    t0 = time.perf_counter()
    result = sync()
    seconds = time.perf_counter() - t0
    after = ray.get([r.__ray_call__.remote(_stop_sampler) for r in learners.ranks])
    extra = {
        kind: max(a[key] - b[key] for a, b in zip(after, before))
        for kind, key in (("rss", "VmHWM"), ("private", "RssAnon"), ("shared", "RssShmem"))
    }
    extra["rss"] = max(a["VmHWM"] - b["VmRSS"] for a, b in zip(after, before))
    return seconds, extra, result


def full_gather_sync(learners: LearnerGroup, pool: RolloutPool, version: int) -> None:
    ref = learners.weights()
    ray.get([w.handle.update_weights.remote(ref, version) for w in pool.workers.values()])
    del ref


def bench_model(name: str, a, memcpy: float) -> list[str]:
    hidden, layers, heads, inter = SIZES[name]
    spec = TinyModelSpec(
        hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=1, intermediate_size=inter
    )
    path = build_tiny_model(os.path.join(a.out, f"model_{name}"), tokenizer_corpus(), spec)
    learners = LearnerGroup(
        path,
        LearnerSettings(num_workers=2, micro_batch_size=1, device="cpu", num_cpus=0.5),
        LossSettings(),
        BatchPlan(groups_per_rank=2, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
    )
    settings = RolloutSettings(
        engine=a.engine,
        num_workers=a.engines,
        min_workers=a.engines,
        weight_sync_bucket_mb=a.bucket_mb,
        cpu_kv_cache_gb=1,
        max_model_len=1024,  # the benchmark models have 4,096 positions (the paper's default is 8,192)
        num_cpus=0.5,
        device="cpu",
    )
    pool = RolloutPool(path, settings, "float32")
    rows = []
    try:
        pool.add_workers(a.engines)
        nbytes = sum(int(t) for t in ray.get(learners.ranks[0].__ray_call__.remote(_param_bytes)))
        version = 0
        paths = {
            "streamed": ("streamed", lambda v: pool.sync_weights(learners, v)),
            "full": ("full gather (before)", lambda v: full_gather_sync(learners, pool, v)),
        }
        for label, sync in (paths[p] for p in a.paths.split(",")):
            runs = []
            for _ in range(a.syncs):
                version += 1
                runs.append(measure(learners, lambda v=version, sync=sync: sync(v)))
            seconds = statistics.median(r[0] for r in runs)
            extra = {k: max(r[1][k] for r in runs) for k in ("rss", "private", "shared")}
            gbs = nbytes / seconds / 1e9
            buckets = getattr(runs[-1][2], "buckets", 1)
            rows.append(
                f"| {name} ({nbytes / 1e6:,.0f} MB) | {label} | {buckets} | {seconds:.3f} | {gbs:.2f} | "
                f"{memcpy:.1f} | {100 * gbs / memcpy:.0f}% | {extra['rss'] / 1e6:,.0f} MB | "
                f"{extra['private'] / 1e6:,.0f} MB | {extra['shared'] / 1e6:,.0f} MB |"
            )
            print(rows[-1], flush=True)
    finally:
        pool.shutdown()
        learners.shutdown()
    return rows


def _engine_stages(worker, path: str) -> dict:
    """Runs INSIDE vLLM's worker process: the engine side of a one-bucket sync, stage by stage, as
    ``actors.vllm_engine._stream_begin/_stream_bucket/_stream_finish`` run it, plus the CPU backend's oneDNN packing
    of the same weights on its own (what vLLM's reload redoes for every linear layer)."""
    from safetensors.torch import load_file
    from vllm import _custom_ops as ops
    from vllm.config import set_current_vllm_config
    from vllm.model_executor.model_loader.reload import finalize_layerwise_reload, initialize_layerwise_reload

    runner, out = worker.model_runner, {}
    model = runner.get_model()
    t0 = time.perf_counter()
    weights = {k: v.clone() for k, v in load_file(path).items()}  # mapped lazily: clone reads every page
    out["read the bucket file"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, w in weights.items():
        if w.ndim == 2 and "embed" not in name and "visual" not in name:
            ops.create_onednn_mm(w.t(), 32)
    out["oneDNN packing alone (not a stage)"] = time.perf_counter() - t0
    with set_current_vllm_config(worker.vllm_config):
        t0 = time.perf_counter()
        initialize_layerwise_reload(model)
        model.load_weights(iter(weights.items()))
        finalize_layerwise_reload(model, runner.model_config)
        out["vLLM layerwise reload (copy, repack, copy back)"] = time.perf_counter() - t0
    return out


def engine_stages(name: str, a, memcpy: float) -> list[str]:
    """Where the engine side of an object-store sync spends its time: the whole model as one bucket, through the
    same steps as ``RolloutPool.sync_weights`` (rank 0's ``ray.put``, the rollout worker's bucket file in /dev/shm,
    the vLLM worker's read and layerwise reload), timed one by one; best of ``--syncs``."""
    import uuid

    from actors.model import load_policy
    from actors.vllm_engine import VLLMEngine
    from actors.weight_sync import to_wire, write_safetensors

    hidden, layers, heads, inter = SIZES[name]
    spec = TinyModelSpec(
        hidden_size=hidden, num_layers=layers, num_heads=heads, num_kv_heads=1, intermediate_size=inter
    )
    path = build_tiny_model(os.path.join(a.out, f"model_{name}"), tokenizer_corpus(), spec)
    named = [(n, p.data) for n, p in load_policy(path, "float32").named_parameters()]
    nbytes = sum(t.numel() * t.element_size() for _, t in named)
    engine = VLLMEngine(
        path, RolloutSettings(engine="vllm", device="cpu", cpu_kv_cache_gb=1, max_model_len=1024), "float32"
    )
    times: dict[str, list[float]] = {}
    try:
        for version in range(a.syncs):
            bucket = to_wire(named, 0, 1, version)
            t0 = time.perf_counter()
            ref = ray.put(bucket)
            times.setdefault("learner rank 0: ray.put of the bucket", []).append(time.perf_counter() - t0)
            got = ray.get(ref)
            file = f"/dev/shm/bench-sync-{uuid.uuid4().hex}.st"
            try:
                t0 = time.perf_counter()
                write_safetensors(got, file)
                times.setdefault("rollout worker: bucket file into /dev/shm", []).append(time.perf_counter() - t0)
                for k, v in engine.llm.collective_rpc(_engine_stages, args=(file,))[0].items():
                    times.setdefault(f"vLLM worker: {k}", []).append(v)
            finally:
                os.remove(file)
            del ref, got
    finally:
        engine.close()
    rows = [f"| {stage} | {min(v):.3f} | {nbytes / min(v) / 1e9:.2f} |" for stage, v in times.items()]
    rows.append(f"| memcpy of the same bytes | {nbytes / memcpy / 1e9:.3f} | {memcpy:.2f} |")
    return [
        f"engine side of a one-bucket sync, {name} ({nbytes / 1e6:,.0f} MB), best of {a.syncs}:",
        "",
        "| stage | s | GB/s |",
        "| --- | --- | --- |",
        *rows,
    ]


def _param_bytes(self) -> list[int]:
    return [getattr(p, "ds_numel", p.numel()) * p.element_size() for p in self.engine.module.parameters()]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default="runs/bench_weight_sync", help="where the benchmark models are built")
    ap.add_argument("--sizes", default="tiny,60mb,250mb,1gb", help=f"comma-separated, from {', '.join(SIZES)}")
    ap.add_argument("--syncs", type=int, default=3, help="syncs per path (the median is reported)")
    ap.add_argument("--engines", type=int, default=1, help="rollout engines in the pool")
    ap.add_argument("--engine", default="vllm", choices=("vllm", "hf"))
    ap.add_argument("--bucket-mb", type=int, default=RolloutSettings.weight_sync_bucket_mb)
    ap.add_argument("--paths", default="streamed,full", help="streamed, full (the pre-streaming full gather), or both")
    ap.add_argument(
        "--stages", action="store_true", help="instead: time the engine side of a one-bucket sync stage by stage"
    )
    a = ap.parse_args(argv)
    sizes = [s.strip() for s in a.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if not set(a.paths.split(",")) <= {"streamed", "full"}:
        ap.error(f"--paths: streamed and/or full, got {a.paths!r}")
    if unknown:
        ap.error(f"--sizes: unknown {', '.join(unknown)} (known: {', '.join(SIZES)})")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        runtime_env={
            "env_vars": {
                "PYTHONPATH": root,
                "DS_ACCELERATOR": "cpu",
                "TOKENIZERS_PARALLELISM": "false",
                # every allocation above 64 KB is its own mapping, returned when freed: the resident set then follows
                # the live tensors instead of what glibc's heap keeps after earlier frees
                "MALLOC_MMAP_THRESHOLD_": "65536",
            }
        },
    )
    memcpy = memcpy_gbs()
    if a.stages:
        try:
            for name in sizes:
                print(f"memcpy (np.copyto, 256 MB, one thread): {memcpy:.1f} GB/s")
                print("\n".join(engine_stages(name, a, memcpy)) + "\n", flush=True)
        finally:
            ray.shutdown()
        return 0
    print(f"memcpy (np.copyto, 256 MB, one thread): {memcpy:.1f} GB/s; bucket {a.bucket_mb} MB; {a.engines} engine(s)")
    header = [
        "| model (weights) | path | buckets | s per sync | GB/s | memcpy GB/s | of memcpy | learner peak extra RSS "
        "| of it private | of it object-store pages |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    print("\n".join(header), flush=True)
    rows = []
    try:
        for name in sizes:
            rows += bench_model(name, a, memcpy)
    finally:
        ray.shutdown()
    print()
    print("\n".join(header + rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
