"""Elastic pool of rollout workers.

Work is handed out in chunks of prompt groups (about two chunks per live worker, so each engine call batches several
prompts), each chunk to the least-loaded live worker. A worker that dies mid-task has its chunk re-queued on another
worker and the pool refills itself to ``min_workers``. ``scale_to`` adds or removes
workers between steps; new workers receive the latest weights before they take work. A worker that Ray cannot place
(or that does not become ready) within ``placement_timeout_s`` is dropped from the request and reported; the pool
goes on with the workers it has.

Weight sync (``sync_weights``): the learner streams its weights bucket by bucket (:mod:`actors.weight_sync`); on the
object-store path every engine loads each bucket as it arrives and a bucket is freed once every engine has it (at
most two buckets live). Every part of a sync an engine is sent (start, each bucket, finish) has a deadline
(``rollout.weight_sync_timeout_s`` after it was sent): engines that miss it, or die during the sync, are dropped and
replaced, and the replacements receive the current weights before they take work.
Each engine gets its own placement group (one bundle of ``num_gpus * tensor_parallel_size`` GPUs on one node).
"""

from __future__ import annotations

import itertools
import logging
import time
from dataclasses import dataclass, field

import ray
from ray.exceptions import ActorDiedError, ActorUnavailableError, GetTimeoutError, RayActorError
from ray.util.placement_group import placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from actors.records import RolloutRequest
from actors.rollout import RolloutWorker
from actors.settings import RolloutSettings

log = logging.getLogger(__name__)
DEAD = (RayActorError, ActorDiedError, ActorUnavailableError)


class NoRolloutWorkers(RuntimeError):
    """Not a single rollout worker could be started."""


class WeightSyncStuck(RuntimeError):
    """The learner did not come back from an NCCL weight sync after the engines that missed the deadline were
    dropped (vLLM's NCCL transfer does not recover from a dead peer); the run stops and resumes from its last
    checkpoint."""


@dataclass
class SyncReport:
    """What one weight sync did."""

    version: int
    """Policy version sent."""
    engines: int
    """Engines that acknowledged it."""
    dropped: list = field(default_factory=list)
    """Ids of engines dropped (dead or late) and replaced."""
    buckets: int = 0
    """Buckets streamed (object-store path)."""
    nbytes: int = 0
    """Bytes per engine (object-store path)."""
    seconds: float = 0.0
    """Wall time of the sync, replacements included."""


@dataclass
class _Worker:
    wid: str
    handle: object
    pg: object = None
    inflight: int = 0
    tasks: int = 0
    version: int = -1


@dataclass
class GroupResult:
    """One generated prompt group: a small summary and the group itself left in the object store."""

    index: int
    """Position of the prompt in the step's batch."""
    summary: dict
    """Worker id, seconds, response tokens, truncated responses."""
    group: ray.ObjectRef
    """ObjectRef of the :class:`actors.records.PromptGroup`."""
    follow: dict = field(default_factory=dict)
    """What a :meth:`RolloutPool.submit` caller attached to the group when its chunk went out (follow-up calls such
    as its reward and reference log-probs, which start as soon as the chunk is generated)."""


@dataclass
class ScaleResult:
    """What a scale request achieved."""

    requested: int
    """Workers asked for."""
    target: int
    """After the min/max cap."""
    workers: int
    """Workers live afterwards."""
    unplaced: int = 0
    """Workers that could not be placed or started in time and were dropped."""

    @property
    def note(self) -> str:
        parts = []
        if self.target != self.requested:
            parts.append(f"capped from {self.requested} to {self.target} (rollout.min/max_workers)")
        if self.unplaced:
            parts.append(f"{self.unplaced} worker(s) could not be placed within the timeout and were dropped")
        return "; ".join(parts)


@dataclass
class Submission:
    """Requests handed to :meth:`RolloutPool.submit`; their groups arrive in ``results`` as chunks finish."""

    requests: list
    """The :class:`actors.records.RolloutRequest` s, in order."""
    n: int
    """Responses per request."""
    sampling: dict | None = None
    """Sampling overrides, as :meth:`RolloutPool.generate` takes them."""
    follow: object = None
    """Called as ``follow(chunk, summary_ref, group_refs) -> list[dict]`` each time a chunk is handed to a worker
    (again after a re-queue): one dict per group, stored as :attr:`GroupResult.follow`."""
    results: dict = field(default_factory=dict)
    """Request position -> :class:`GroupResult`."""
    chunks_left: int = 0
    """Chunks not yet generated."""
    attempts: dict = field(default_factory=dict)
    """First request position of a chunk -> failed attempts (its worker died)."""

    @property
    def done(self) -> bool:
        return self.chunks_left == 0

    def ordered(self) -> list[GroupResult]:
        return [self.results[i] for i in range(len(self.requests))]


@dataclass
class RolloutPool:
    model_path: str
    settings: RolloutSettings
    dtype: str
    seed: int = 0
    workers: dict = field(default_factory=dict)
    learners: object = None
    """The learner group weights come from (set by the first ``sync_weights``); new workers are synced from it."""
    version: int = 0
    events: list = field(default_factory=list)
    _ids: object = field(default_factory=itertools.count)
    _queue: list = field(default_factory=list)  # submit(): (submission, chunk) not yet handed to a worker
    _running: dict = field(default_factory=dict)  # submit(): summary ref -> (submission, chunk, worker id, follow)

    # -- membership -----------------------------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        n = next(self._ids)
        wid = f"rollout-{n}"
        s = self.settings
        gpus = s.num_gpus * s.tensor_parallel_size
        bundle = {k: v for k, v in (("CPU", s.num_cpus), ("GPU", gpus)) if v > 0} or {"CPU": 0.01}
        pg = placement_group([bundle], strategy="STRICT_PACK")  # one engine's GPUs on one node
        handle = RolloutWorker.options(
            num_cpus=s.num_cpus if "CPU" in bundle and s.num_cpus > 0 else 0,
            num_gpus=gpus,
            scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0),
        ).remote(wid, self.model_path, s, self.dtype, seed=self.seed + 1000 * n)
        return _Worker(wid, handle, pg)

    def add_workers(self, k: int) -> tuple[list[str], int]:
        """Start ``k`` workers (with the current weights). Returns (ids added, workers dropped as unplaceable or
        failing their first sync)."""
        new = [self._spawn() for _ in range(max(0, k))]
        calls = {w.handle.ready.remote(): w for w in new}
        done, pending = ray.wait(list(calls), num_returns=len(calls), timeout=self.settings.placement_timeout_s)
        failed = {calls[r].wid for r in pending}
        for ref in done:
            try:
                ray.get(ref)
            except DEAD as e:
                log.warning("rollout worker %s failed to start: %s", calls[ref].wid, str(e).splitlines()[0])
                failed.add(calls[ref].wid)
        started = [w for w in new if w.wid not in failed]
        for w in new:
            if w.wid in failed:
                self._release(w)
                self.events.append(("unplaced", w.wid, time.time()))
        if failed:
            log.warning(
                "%d rollout worker(s) could not be placed or started within %.0f s and were dropped; "
                "training goes on with %d",
                len(failed),
                self.settings.placement_timeout_s,
                len(self.workers) + len(started),
            )
        for w in started:
            w.version = 0 if self.learners is None else -1
            self.workers[w.wid] = w
            self.events.append(("add", w.wid, time.time()))
        if started and self.learners is not None:  # the current weights before they take work
            if self.settings.weight_sync == "object_store":
                late = self._stream(started, self.version).dropped  # to the new workers only
            else:
                late = self._sync_nccl(self.version).dropped  # the group is rebuilt with the new workers in it
            started = [w for w in started if w.wid not in late]
        return [w.wid for w in started], len(new) - len(started)

    def remove_workers(self, k: int) -> list[str]:
        k = min(k, len(self.workers) - self.settings.min_workers)
        victims = sorted(self.workers.values(), key=lambda w: (w.inflight, -w.tasks))[: max(0, k)]
        for w in victims:
            self._drop(w.wid, kill=True, why="remove")
        return [w.wid for w in victims]

    def scale_to(self, n: int) -> ScaleResult:
        target = max(self.settings.min_workers, min(self.settings.max_workers, int(n)))
        unplaced = 0
        if target > len(self.workers):
            _, unplaced = self.add_workers(target - len(self.workers))
        elif target < len(self.workers):
            self.remove_workers(len(self.workers) - target)
        return ScaleResult(int(n), target, len(self.workers), unplaced)

    def _drop(self, wid: str, kill: bool, why: str) -> None:
        w = self.workers.pop(wid, None)
        if w is None:
            return
        self.events.append((why, wid, time.time()))
        self._release(w, kill)

    @staticmethod
    def _release(w: _Worker, kill: bool = True) -> None:
        if kill:
            try:
                ray.kill(w.handle, no_restart=True)
            except Exception:  # already gone
                pass
        if w.pg is not None:
            try:
                remove_placement_group(w.pg)
            except Exception:  # already removed
                pass

    def size(self) -> int:
        return len(self.workers)

    def _refill(self) -> None:
        if len(self.workers) < self.settings.min_workers:
            self.add_workers(self.settings.min_workers - len(self.workers))
        if not self.workers:
            raise NoRolloutWorkers("no rollout worker could be started (see the warnings above)")

    # -- weights --------------------------------------------------------------------------------------------------
    def sync_weights(self, learners, version: int) -> SyncReport:
        """Send the learner group's current weights (policy ``version``) to every engine, by the configured path,
        within ``rollout.weight_sync_timeout_s``. Engines that die or miss the deadline are dropped and replaced;
        replacements start from these weights."""
        start = time.perf_counter()
        self.learners, self.version = learners, version
        if self.settings.weight_sync == "nccl":
            report = self._sync_nccl(version)
        else:
            self._refill_without_sync()
            report = self._stream(list(self.workers.values()), version)
        self._refill()
        report.engines, report.seconds = len(self.workers), time.perf_counter() - start
        if report.dropped:
            log.warning(
                "weight sync %d: engine(s) %s died or missed the %.0f s deadline; dropped and replaced",
                version,
                ", ".join(report.dropped),
                self.settings.weight_sync_timeout_s,
            )
        return report

    def _stream(self, workers: list[_Worker], version: int) -> SyncReport:
        """Object-store path: stream the weights bucket by bucket to ``workers``; each engine loads a bucket as it
        arrives, and a bucket is released once every engine has it (at most ``in_flight`` buckets live). Engines that
        fail or miss the deadline are dropped (not yet replaced). The learner's stream is always consumed to its end:
        its ranks gather in lockstep."""
        s, in_flight = self.settings, 2
        live = {w.wid: w for w in workers}
        late: set[str] = set()
        report = SyncReport(version, 0)
        window: list[tuple[float, dict]] = []  # (time sent, {wid: load ref}) per bucket, oldest first

        def settle(sent: float, calls: dict) -> None:
            """Wait for one call per engine until ``weight_sync_timeout_s`` after it was sent; engines whose call
            failed or is late are dropped (one frozen engine costs the others at most one timeout per sync)."""
            calls = {wid: ref for wid, ref in calls.items() if wid in live}
            left = max(0.0, sent + s.weight_sync_timeout_s - time.monotonic())
            refs = list(calls.values())
            done = set(ray.wait(refs, num_returns=len(refs), timeout=left)[0]) if refs else set()
            for wid, ref in calls.items():
                try:
                    if ref not in done:
                        raise GetTimeoutError(f"no answer within {s.weight_sync_timeout_s:.0f} s")
                    ray.get(ref)
                except (*DEAD, GetTimeoutError) as e:
                    log.warning("rollout worker %s failed the weight sync: %s", wid, str(e).splitlines()[0][:200])
                    late.add(wid)
                    live.pop(wid, None)
                    self._drop(wid, kill=True, why="sync_failed")

        settle(time.monotonic(), {wid: w.handle.begin_weight_stream.remote() for wid, w in live.items()})
        buckets, followers = self.learners.stream_weights(s.weight_sync_bucket_mb, version, in_flight)
        for ref in buckets:
            report.buckets += 1
            loads = {wid: w.handle.load_weight_bucket.remote(ref) for wid, w in live.items()}
            window.append((time.monotonic(), loads))
            del ref  # the window's calls hold the bucket; it is freed once every engine has loaded it
            while len(window) > in_flight:
                settle(*window.pop(0))
        self.learners.finish_stream(buckets, followers)
        while window:
            settle(*window.pop(0))
        settle(time.monotonic(), {wid: w.handle.finish_weight_stream.remote(version) for wid, w in live.items()})
        for wid in live:
            self.workers[wid].version = version
        report.dropped = sorted(late)
        return report

    def _sync_nccl(self, version: int) -> SyncReport:
        """``rollout.weight_sync=nccl``: learner rank 0 broadcasts to every engine (GPU only). On a missed deadline
        the engines still inside the broadcast are dropped; if the learner then does not return within a minute,
        :class:`WeightSyncStuck` stops the run (vLLM's NCCL transfer does not recover from a dead peer)."""
        self._refill_without_sync()
        s = self.settings
        handles = {w.wid: w.handle for w in self.workers.values()}
        refs = self.learners.start_send_weights_nccl(
            list(handles.values()), s.weight_sync_bucket_mb, s.tensor_parallel_size
        )
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=s.weight_sync_timeout_s, fetch_local=False)
        report = SyncReport(version, 0)
        if len(done) < len(refs):
            probes = {h.ready.remote(): wid for wid, h in handles.items()}
            answered, _ = ray.wait(list(probes), num_returns=len(probes), timeout=10.0)
            report.dropped = sorted(set(probes.values()) - {probes[r] for r in answered})
            for wid in report.dropped:  # still receiving: the broadcast cannot finish for them
                self._drop(wid, kill=True, why="sync_failed")
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=60.0, fetch_local=False)
            if len(done) < len(refs):
                raise WeightSyncStuck(
                    f"the NCCL weight sync of version {version} missed its {s.weight_sync_timeout_s:.0f} s deadline "
                    f"and the learner did not return after engines {report.dropped} were dropped; the run stops, and "
                    "the next start resumes from the last complete checkpoint"
                )
        self.learners.finish_send_weights_nccl(refs)
        alive = [w for w in self.workers.values() if w.wid in handles]
        ray.get([w.handle.set_version.remote(version) for w in alive], timeout=60)
        for w in alive:
            w.version = version
        return report

    def _refill_without_sync(self) -> None:
        learners, self.learners = self.learners, None  # the sync that follows covers the new workers
        try:
            self._refill()
        finally:
            self.learners = learners

    def stale(self, version: int) -> bool:
        """Whether a live worker holds older weights than ``version`` (a replacement that joined after a sync)."""
        return any(w.version != version for w in self.workers.values())

    # -- generation -----------------------------------------------------------------------------------------------
    def generate(self, requests: list[RolloutRequest], n: int, sampling: dict | None = None) -> list[GroupResult]:
        """``n`` responses for each request; one :class:`GroupResult` per request, in order.

        Requests go out in chunks (several prompts per engine call, so vLLM batches them), about two chunks per
        worker; each prompt group comes back as its own object."""
        self._refill()
        per_task = max(1, -(-len(requests) // (2 * max(1, len(self.workers)))))
        queue = [list(range(i, min(i + per_task, len(requests)))) for i in range(0, len(requests), per_task)]
        attempts: dict[int, int] = {}
        running: dict = {}  # summary ref -> (chunk, worker id, group refs)
        results: dict[int, GroupResult] = {}
        while queue or running:
            while queue and self.workers:
                w = min(self.workers.values(), key=lambda x: x.inflight)
                if w.inflight >= 2:
                    break
                chunk = queue.pop(0)
                refs = w.handle.generate.options(num_returns=len(chunk) + 1).remote(
                    [requests[i] for i in chunk], n, sampling
                )
                w.inflight += 1
                w.tasks += 1
                running[refs[0]] = (chunk, w.wid, refs[1:])
            if not running:
                self._refill()
                continue
            done, _ = ray.wait(list(running), num_returns=1, timeout=5.0)
            for ref in done:
                chunk, wid, group_refs = running.pop(ref)
                if wid in self.workers:
                    self.workers[wid].inflight -= 1
                try:
                    summary = ray.get(ref)
                except DEAD:
                    log.warning("rollout worker %s died; re-queueing prompt groups %s", wid, chunk)
                    self._drop(wid, kill=False, why="died")
                    tries = attempts[chunk[0]] = attempts.get(chunk[0], 0) + 1
                    if tries > self.settings.max_task_retries:
                        raise RuntimeError(f"prompt groups {chunk} failed on {tries} rollout workers") from None
                    queue.insert(0, chunk)
                    self._refill()
                    continue
                for i, group in zip(chunk, group_refs):
                    results[i] = GroupResult(i, summary, group)
        return [results[i] for i in range(len(requests))]

    # -- non-blocking generation (cluster/pipeline.py) -------------------------------------------------------------
    def submit(self, requests: list[RolloutRequest], n: int, sampling: dict | None = None, follow=None) -> Submission:
        """Queue ``n`` responses for each request and return at once; :meth:`poll` (or :meth:`collect`) hands the
        chunks to workers as they free up and records finished groups in the returned :class:`Submission`. Chunks
        are cut as :meth:`generate` cuts them; a worker's calls run in order, so a weight update sent while chunks
        are queued on it lands between two chunks (engine batches)."""
        sub = Submission(list(requests), n, sampling, follow)
        per_task = max(1, -(-len(requests) // (2 * max(1, len(self.workers)))))
        chunks = [list(range(i, min(i + per_task, len(requests)))) for i in range(0, len(requests), per_task)]
        sub.chunks_left = len(chunks)
        self._queue.extend((sub, c) for c in chunks)
        self._dispatch()
        return sub

    def _dispatch(self) -> None:
        while self._queue and self.workers:
            w = min(self.workers.values(), key=lambda x: x.inflight)
            if w.inflight >= 2:
                return
            sub, chunk = self._queue.pop(0)
            refs = w.handle.generate.options(num_returns=len(chunk) + 1).remote(
                [sub.requests[i] for i in chunk], sub.n, sub.sampling
            )
            follow = sub.follow(chunk, refs[0], refs[1:]) if sub.follow else [{} for _ in chunk]
            w.inflight += 1
            w.tasks += 1
            self._running[refs[0]] = (sub, chunk, w.wid, refs[1:], follow)

    def poll(self, timeout: float = 1.0) -> int:
        """Wait up to ``timeout`` s for running chunks; record the finished ones, re-queue those whose worker died
        (replacing it), hand queued chunks out. Returns the number of chunks finished."""
        if self._queue and not self.workers:
            self._refill()
        self._dispatch()
        if not self._running:
            return 0
        pending = list(self._running)
        done, rest = ray.wait(pending, num_returns=1, timeout=timeout)
        if done and rest:
            more, _ = ray.wait(rest, num_returns=len(rest), timeout=0)
            done += more
        finished = 0
        for ref in done:
            sub, chunk, wid, group_refs, follow = self._running.pop(ref)
            if wid in self.workers:
                self.workers[wid].inflight -= 1
            try:
                summary = ray.get(ref)
            except DEAD:
                log.warning("rollout worker %s died; re-queueing prompt groups %s", wid, chunk)
                self._drop(wid, kill=False, why="died")
                tries = sub.attempts[chunk[0]] = sub.attempts.get(chunk[0], 0) + 1
                if tries > self.settings.max_task_retries:
                    raise RuntimeError(f"prompt groups {chunk} failed on {tries} rollout workers") from None
                self._queue.insert(0, (sub, chunk))
                self._refill()
                continue
            for i, group, extra in zip(chunk, group_refs, follow):
                sub.results[i] = GroupResult(i, summary, group, extra)
            sub.chunks_left -= 1
            finished += 1
        self._dispatch()
        return finished

    def collect(self, sub: Submission) -> list[GroupResult]:
        """Poll until every chunk of ``sub`` is generated; its groups in request order."""
        while not sub.done:
            self.poll()
        return sub.ordered()

    def drain(self) -> None:
        """Wait until no chunk handed out by :meth:`submit` is running (queued ones stay queued), so that a blocking
        :meth:`generate` (validation) finds the workers free."""
        while self._running:
            self.poll()

    def shutdown(self) -> None:
        for wid in list(self.workers):
            self._drop(wid, kill=True, why="shutdown")


__all__ = [
    "DEAD",
    "GetTimeoutError",
    "GroupResult",
    "NoRolloutWorkers",
    "RolloutPool",
    "ScaleResult",
    "Submission",
    "SyncReport",
    "WeightSyncStuck",
]
