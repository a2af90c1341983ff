"""Each pool's busy intervals, step by step: ``timeline.json`` in the Chrome trace format (opens in Perfetto and
``chrome://tracing``) and a busy-fraction metric per pool.

The intervals are the project's own wall-clock timestamps (``time.time()``), taken where the work happens: a rollout
worker stamps each engine call (chunk summary ``start``/``end``), a reward worker each scoring call
(:class:`actors.records.GroupScores`), the reference each group (:class:`actors.records.GroupLogprobs`); the learner
ranks work in lock step (ZeRO-3 collectives), so their interval is the driver's call into the group (old log-probs,
update, weight gather and sync). In the trace, each pool is a process and each worker a thread.

A pool's busy fraction in a step is the time its workers spent working inside the step's wall-clock window, summed
over the workers and divided by (workers x step time): 1.0 means every worker of the pool was busy all step.
Work that finishes after the step's metrics are taken still appears in the trace but not in that step's fraction.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from cluster.checkpoints import atomic_write

log = logging.getLogger(__name__)

POOLS = ("rollout", "reward", "reference", "learner")
"""The pools, in the trace's process order."""

SYNC_PHASES = {
    "generate": (),  # the rollout pool's own stamps are used instead
    "score": ("reward", "reference"),
    "reference": ("reference",),
    "old_logprobs": ("learner",),
    "advantages": (),
    "update": ("learner",),
    "weight_sync": ("learner",),
}
"""Synchronous step (``algo.max_staleness=0``): the phases in their order and the pools each keeps busy; the phases
run one after another, so their intervals are laid out back to back, ending at the step's end."""


def _union_within(intervals: list[tuple[float, float]], lo: float, hi: float) -> float:
    """Seconds covered by the union of ``intervals`` inside [lo, hi]."""
    total, cur_lo, cur_hi = 0.0, None, None
    for a, b in sorted((max(a, lo), min(b, hi)) for a, b in intervals):
        if b <= a:
            continue
        if cur_hi is None or a > cur_hi:
            if cur_hi is not None:
                total += cur_hi - cur_lo
            cur_lo, cur_hi = a, b
        else:
            cur_hi = max(cur_hi, b)
    if cur_hi is not None:
        total += cur_hi - cur_lo
    return total


class Timeline:
    """Busy intervals of every pool, written to ``path`` after each step (atomically; a resumed run appends)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.events: list[dict] = []
        self.lanes: dict[tuple[str, str], int] = {}
        if self.path.is_file():
            try:
                old = json.loads(self.path.read_text())["traceEvents"]
                self.events = [e for e in old if e.get("ph") == "X"]
                for e in self.events:
                    self.lanes.setdefault((e["cat"], e["args"]["lane"]), e["tid"])
            except (ValueError, KeyError, TypeError) as e:
                log.warning("%s cannot be read (%s); the timeline starts afresh", self.path, e)
                self.events = []

    def add(self, pool: str, lane: str, name: str, start: float, end: float, step: int, **args) -> None:
        """One busy interval of worker ``lane`` of ``pool`` (wall-clock seconds)."""
        if end <= start or start <= 0:
            return
        tid = self.lanes.setdefault((pool, lane), len(self.lanes) + 1)
        self.events.append(
            {
                "name": name,
                "cat": pool,
                "ph": "X",
                "ts": round(start * 1e6),
                "dur": round((end - start) * 1e6),
                "pid": POOLS.index(pool) + 1,
                "tid": tid,
                "args": {"lane": lane, "step": step, **args},
            }
        )

    def busy(self, start: float, end: float, workers: dict[str, int]) -> dict:
        """``pool/<name>_busy`` in the window [start, end]: each pool's busy time / (``workers[pool]`` x window)."""
        out = {}
        window = max(end - start, 1e-9)
        for pool in POOLS:
            n = workers.get(pool, 0)
            if n <= 0:
                continue
            per_lane: dict[str, list] = {}
            for e in self.events:
                if e["cat"] == pool:
                    s = e["ts"] / 1e6
                    per_lane.setdefault(e["args"]["lane"], []).append((s, s + e["dur"] / 1e6))
            covered = sum(_union_within(iv, start, end) for iv in per_lane.values())
            out[f"pool/{pool}_busy"] = min(1.0, covered / (n * window))
        return out

    def sync_step(self, step: int, timings: dict, results: list, workers: dict[str, int]) -> dict:
        """Record a synchronous step (``timings`` from the driver's timed phases, ``results`` the rollout pool's
        :class:`cluster.pool.GroupResult` s) and return its busy fractions."""
        end = time.time()
        start = end - timings["step"]
        t = end
        for phase in reversed([p for p in SYNC_PHASES if p in timings]):
            for pool in SYNC_PHASES[phase]:
                if workers.get(pool):
                    self.add(pool, "ranks" if pool == "learner" else pool, phase, t - timings[phase], t, step)
            t -= timings[phase]
        self.add_chunks(results, step)
        self.write()
        return self.busy(start, end, workers)

    def add_chunks(self, results: list, step: int) -> None:
        """The engine calls behind ``results`` (one interval per chunk, stamped by the rollout worker)."""
        for summary in {id(r.summary): r.summary for r in results}.values():
            if "start" in summary:
                self.add(
                    "rollout",
                    summary["worker_id"],
                    "generate",
                    summary["start"],
                    summary["end"],
                    step,
                    groups=summary["groups"],
                    tokens=summary["response_tokens"],
                    version=summary["version"],
                )

    def write(self) -> None:
        meta = [
            {"name": "process_name", "ph": "M", "pid": i + 1, "tid": 0, "args": {"name": pool}}
            for i, pool in enumerate(POOLS)
        ]
        meta += [
            {"name": "thread_name", "ph": "M", "pid": POOLS.index(pool) + 1, "tid": tid, "args": {"name": lane}}
            for (pool, lane), tid in self.lanes.items()
        ]
        try:
            atomic_write(self.path, json.dumps({"traceEvents": meta + self.events, "displayTimeUnit": "ms"}))
        except OSError as e:
            log.warning("could not write %s: %s", self.path, e)


__all__ = ["POOLS", "Timeline"]
