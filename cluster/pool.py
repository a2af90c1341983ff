"""Elastic pool of rollout workers.

Work is handed out one prompt group per task to the least-loaded live
worker.  A worker that dies (or is removed) mid-task has its task re-queued
on another worker; the pool refills itself to ``min_workers``.  ``scale_to``
adds or removes workers between steps; new workers receive the latest
weights before they take work.
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError

from actors.rollout import RolloutWorker

log = logging.getLogger(__name__)
_DEAD = (RayActorError, ActorDiedError, ActorUnavailableError)


@dataclass
class _Worker:
    wid: str
    handle: object
    inflight: int = 0
    tasks: int = 0


@dataclass
class GroupResult:
    index: int
    summary: dict
    trajectories: ray.ObjectRef  # list[dict] of the group, left in the object store


@dataclass
class RolloutPool:
    model_path: str
    cfg: dict
    num_cpus: float = 0.5
    num_gpus: float = 0.0
    min_workers: int = 1
    max_workers: int = 8
    max_task_retries: int = 3
    seed: int = 0
    workers: dict = field(default_factory=dict)
    weights_ref: object = None
    version: int = 0
    _ids: object = field(default_factory=lambda: itertools.count())
    events: list = field(default_factory=list)

    # -- membership ---------------------------------------------------------------
    def _spawn(self) -> _Worker:
        n = next(self._ids)
        wid = f"rollout-{n}"
        h = RolloutWorker.options(num_cpus=self.num_cpus, num_gpus=self.num_gpus, name=None).remote(
            wid, self.model_path, self.cfg, seed=self.seed + 1000 * n
        )
        return _Worker(wid, h)

    def add_workers(self, k: int) -> list[str]:
        k = min(k, self.max_workers - len(self.workers))
        new = [self._spawn() for _ in range(max(0, k))]
        ready = [w.handle.ready.remote() for w in new]
        syncs = []
        if self.weights_ref is not None:
            syncs = [w.handle.update_weights.remote(self.weights_ref, self.version) for w in new]
        ray.get(ready + syncs)
        for w in new:
            self.workers[w.wid] = w
            self.events.append(("add", w.wid, time.time()))
        return [w.wid for w in new]

    def remove_workers(self, k: int) -> list[str]:
        k = min(k, len(self.workers) - self.min_workers)
        victims = sorted(self.workers.values(), key=lambda w: (w.inflight, -w.tasks))[: max(0, k)]
        for w in victims:
            self._drop(w.wid, kill=True, why="remove")
        return [w.wid for w in victims]

    def scale_to(self, n: int) -> int:
        n = max(self.min_workers, min(self.max_workers, int(n)))
        if n > len(self.workers):
            self.add_workers(n - len(self.workers))
        elif n < len(self.workers):
            self.remove_workers(len(self.workers) - n)
        return len(self.workers)

    def _drop(self, wid: str, kill: bool, why: str) -> None:
        w = self.workers.pop(wid, None)
        if w is None:
            return
        self.events.append((why, wid, time.time()))
        if kill:
            try:
                ray.kill(w.handle, no_restart=True)
            except Exception:  # already gone
                pass

    def size(self) -> int:
        return len(self.workers)

    # -- weights ------------------------------------------------------------------
    def sync_weights(self, weights_ref, version: int) -> None:
        """Push a state dict (an ObjectRef from the learner) to every worker."""
        self.weights_ref, self.version = weights_ref, version
        pending = {w.handle.update_weights.remote(weights_ref, version): w.wid for w in list(self.workers.values())}
        for ref, wid in pending.items():
            try:
                ray.get(ref)
            except _DEAD:
                log.warning("rollout worker %s died during weight sync; replacing it", wid)
                self._drop(wid, kill=False, why="died")
        self._refill()

    def _refill(self) -> None:
        if len(self.workers) < self.min_workers:
            self.add_workers(self.min_workers - len(self.workers))

    # -- generation ---------------------------------------------------------------
    def generate(self, groups: list[list[dict]], n: int) -> list[GroupResult]:
        """Generate ``n`` samples for each request group; returns one
        :class:`GroupResult` per group, in order."""
        self._refill()
        queue = list(range(len(groups)))
        attempts = {i: 0 for i in queue}
        running: dict = {}  # summary ref -> (index, worker id, trajectories ref)
        results: dict[int, GroupResult] = {}
        while queue or running:
            while queue and self.workers:
                w = min(self.workers.values(), key=lambda x: x.inflight)
                if w.inflight >= 2 and len(running) >= 2 * len(self.workers):
                    break
                i = queue.pop(0)
                summ, trajs = w.handle.generate.remote(groups[i], n)
                w.inflight += 1
                w.tasks += 1
                running[summ] = (i, w.wid, trajs)
            if not running:
                self._refill()
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=None)
            for ref in done:
                i, wid, trajs = running.pop(ref)
                if wid in self.workers:
                    self.workers[wid].inflight -= 1
                try:
                    summary = ray.get(ref)
                except _DEAD:
                    log.warning("rollout worker %s died; re-queueing group %d", wid, i)
                    self._drop(wid, kill=False, why="died")
                    attempts[i] += 1
                    if attempts[i] > self.max_task_retries:
                        raise RuntimeError(f"group {i} failed on {attempts[i]} rollout workers") from None
                    queue.insert(0, i)
                    self._refill()
                    continue
                results[i] = GroupResult(i, summary, trajs)
        return [results[i] for i in range(len(groups))]

    def shutdown(self) -> None:
        for wid in list(self.workers):
            self._drop(wid, kill=True, why="shutdown")
