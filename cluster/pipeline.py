"""Keep every pool busy: one-step-off-policy rollout under a staleness bound, scoring as groups finish, and dynamic
sampling (``algo.max_staleness > 0`` or ``algo.filter_groups``; the synchronous step stays in ``cluster/trainer.py``).

One step ``s`` (the learner holds weights version ``v = s - 1``)::

    top up       prompts of steps s .. s + max_staleness are queued on the rollout pool (those not queued yet); the
                 pool's workers generate them while the driver goes on, with whatever weights they hold
    generate     wait for step s's groups (already generated during step s - 1 when max_staleness >= 1); a group
                 whose weights are older than v - max_staleness is regenerated, so none is ever trained on
    score        the rewards, computed while the chunks landed (see below); with filter_groups, groups whose reward
                 spread is below algo.filter_min_std are dropped and more prompts are drawn
    reference    reference log-probs of the kept groups (already computed as the groups landed, unless filtering)
    old_logprobs / advantages / update    as in the synchronous step
    weight_sync  the pool's own sync entry point; a worker's calls run in order, so the new weights land after the
                 engine batch it is generating (the next step's prompts), never inside one

Scoring as groups finish: when a chunk of prompts is handed to a worker, its reward call (one call per chunk, so
several groups per call, fed only the response texts and ground truth from the chunk's summary) and each group's
reference call are submitted at once with the chunk's ObjectRefs as arguments; Ray starts them the moment the chunk
is generated. A chunk whose worker dies is re-queued and gets new follow-up calls.

Importance ratio: the old log-probs are the ENGINE's sampled-token log-probs (``rollout.use_engine_logprobs``, which
``max_staleness > 0`` requires). They are exactly the distribution the tokens were drawn from, whatever weights
version the engine held; the learner could only recompute them by keeping a copy of every weights version still
being sampled from (ZeRO-3 shards of each), for one extra forward pass per batch. The engine/learner agreement
(``rollout/logprob_diff_mean``) is still measured on each rank's first forward pass; for a group one version old it
includes one update's change of the policy, and ``rollout/staleness_mean`` says how many groups were.

Checkpoints record the data position of the first prompt not yet trained on, so a resumed run regenerates the
queued-ahead prompts (with the weights it resumes with) and trains each row once; only rows drawn for a trained
step's extra draws after the next step's prompts were queued are drawn again.
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import ray
import torch

from actors import grpo
from cluster.metrics import advantage_metrics, reward_metrics, rollout_metrics, step_metrics, timed, update_metrics
from cluster.pool import GroupResult, Submission

log = logging.getLogger("spatialthinker")


def reward_spread(rewards: list) -> float:
    """Population standard deviation of a group's total rewards (0 for a flat group)."""
    return statistics.pstdev([b.total for b in rewards]) if len(rewards) > 1 else 0.0


def advantages_of(cfg, rewards: list[list], sequence_kl: list[list[float]], with_reference: bool) -> torch.Tensor:
    """[groups, n] group-relative advantages of the total rewards (minus the sequence KL when it is in the reward);
    the synchronous step in :mod:`cluster.trainer` and the pipeline both use it."""
    scores = torch.tensor([[b.total for b in group] for group in rewards], dtype=torch.float64)
    if cfg.algo.kl_in == "reward" and with_reference:
        scores = scores - cfg.algo.kl_beta * torch.tensor(sequence_kl, dtype=torch.float64)
    return grpo.group_advantages(scores, unbiased=cfg.algo.unbiased_std, scale=cfg.algo.scale_advantages)


@dataclass
class Batch:
    """The prompts of one step and where they are in the rollout pool."""

    step: int
    """The step that trains on them."""
    stream_state: tuple[int, int]
    """(epoch, position) of the prompt stream before its first prompt was drawn: the resume point."""
    submission: Submission
    """The prompts as queued on the pool."""
    extra: list = field(default_factory=list)
    """Submissions of extra draws (dynamic sampling)."""


class Pipeline:
    """The staleness-bounded producer (rollout pool) / consumer (learner group) loop of a :class:`GRPOTrainer`."""

    def __init__(self, trainer):
        self.t = trainer
        self.cfg = trainer.cfg
        self.ahead: dict[int, Batch] = {}
        self._next_reward = 0
        self._recorded: set = set()

    # -- producer ---------------------------------------------------------------------------------------------------
    def _follow(self, chunk: list[int], summary_ref, group_refs: list) -> list[dict]:
        """Follow-up calls of a chunk handed to a worker: its reward (one call for the chunk's groups, from the
        texts in its summary) and, unless groups may still be filtered out, each group's reference log-probs."""
        workers = self.t.reward_workers
        i = self._next_reward % len(workers)
        self._next_reward += 1
        reward = workers[i].score_groups.remote(summary_ref)
        out = []
        for pos, group in enumerate(group_refs):
            follow = {"reward": reward, "pos": pos, "reward_lane": f"reward-{i}"}
            if self.t.reference is not None and not self.cfg.algo.filter_groups:
                follow["reference"] = self.t.reference.compute_logprobs.remote(group)
            out.append(follow)
        return out

    def _submit(self, requests: list) -> Submission:
        return self.t.pool.submit(requests, self.cfg.rollout.group_size, follow=self._follow)

    def top_up(self, step: int) -> None:
        """Queue the prompts of steps ``step`` .. ``step + max_staleness`` (not past ``steps``) not queued yet."""
        for k in range(step, min(step + self.cfg.algo.max_staleness, self.cfg.steps) + 1):
            if k not in self.ahead:
                stream = self.t.stream
                state = (stream.epoch, stream.pos)
                requests = stream.take(self.cfg.algo.prompts_per_step, k)
                self.ahead[k] = Batch(k, state, self._submit(requests))

    def resume_point(self) -> tuple[int, int]:
        """(epoch, position) of the prompt stream at the first prompt not trained on yet."""
        if self.ahead:
            return self.ahead[min(self.ahead)].stream_state
        return self.t.stream.epoch, self.t.stream.pos

    # -- consumer ---------------------------------------------------------------------------------------------------
    def _fresh(self, batch: Batch) -> tuple[list[GroupResult], list[int]]:
        """The batch's groups, none older than the staleness bound (older ones regenerated with the current weights),
        and the weights version each was generated by."""
        pool, bound = self.t.pool, self.t.version - self.cfg.algo.max_staleness
        results = pool.collect(batch.submission)
        stale = [i for i, r in enumerate(results) if r.summary["version"] < bound]
        if stale:
            log.warning(
                "step %d: %d prompt group(s) were generated by weights older than version %d (learner %d - "
                "algo.max_staleness %d); regenerating them with version %d",
                batch.step,
                len(stale),
                bound,
                self.t.version,
                self.cfg.algo.max_staleness,
                pool.version,
            )
            again = pool.collect(self._submit([batch.submission.requests[i] for i in stale]))
            for i, r in zip(stale, again):
                results[i] = r
            if any(r.summary["version"] < bound for r in again):
                raise RuntimeError(f"step {batch.step}: the rollout pool holds weights older than version {bound}")
        return results, [r.summary["version"] for r in results]

    def _rewards(self, results: list[GroupResult]) -> list[list]:
        refs = list({r.follow["reward"]: None for r in results})
        scored = dict(zip(refs, ray.get(refs)))
        self._record_rewards(results, scored)
        return [scored[r.follow["reward"]].rewards[r.follow["pos"]] for r in results]

    def _filter(self, batch: Batch, results: list[GroupResult], rewards: list[list]) -> tuple[list, list, dict]:
        """Dynamic sampling: keep groups with reward spread, draw more prompts (at most ``filter_max_draws`` times)
        until ``prompts_per_step`` are kept."""
        algo, want = self.cfg.algo, self.cfg.algo.prompts_per_step
        pairs = list(zip(results, rewards))
        kept = [p for p in pairs if reward_spread(p[1]) >= algo.filter_min_std]
        dropped = [p for p in pairs if reward_spread(p[1]) < algo.filter_min_std]
        generated, draws = len(pairs), 0
        while len(kept) < want and draws < algo.filter_max_draws:
            draws += 1
            share = max(len(kept) / generated, 0.25)  # the kept share so far, floored so one draw stays bounded
            k = min(want, math.ceil((want - len(kept)) / share))
            log.info(
                "step %d: %d of %d prompt groups have reward std >= %g; extra draw %d/%d of %d prompts",
                batch.step,
                len(kept),
                generated,
                algo.filter_min_std,
                draws,
                algo.filter_max_draws,
                k,
            )
            sub = self._submit(self.t.stream.take(k, batch.step, offset=generated))
            batch.extra.append(sub)
            more = self.t.pool.collect(sub)
            for p in zip(more, self._rewards(more)):
                (kept if reward_spread(p[1]) >= algo.filter_min_std else dropped).append(p)
            generated += k
        with_spread = len(kept)
        if len(kept) < want:
            log.warning(
                "step %d: only %d of %d prompt groups have reward std >= %g after %d extra draw(s) "
                "(algo.filter_max_draws); filling the batch with the %d flat groups of largest spread",
                batch.step,
                len(kept),
                generated,
                algo.filter_min_std,
                draws,
                want - len(kept),
            )
            dropped.sort(key=lambda p: -reward_spread(p[1]))
            kept += dropped[: want - len(kept)]
        kept = kept[:want]
        metrics = {
            "algo/kept_fraction": with_spread / generated,
            "algo/extra_generations": generated - len(pairs),
            "algo/extra_draws": draws,
        }
        return [p[0] for p in kept], [p[1] for p in kept], metrics

    def _reference_refs(self, results: list[GroupResult]) -> list | None:
        if self.t.reference is None:
            return None
        for r in results:
            if "reference" not in r.follow:  # filtered batches: only the kept groups are scored
                r.follow["reference"] = self.t.reference.compute_logprobs.remote(r.group)
        refs = [r.follow["reference"] for r in results]
        ray.wait(refs, num_returns=len(refs), fetch_local=False)
        return refs

    @contextmanager
    def _learner_span(self, timings: dict, name: str, step: int):
        start = time.time()
        with timed(timings, name):
            yield
        self.t.timeline.add("learner", "ranks", name, start, time.time(), step)

    def train_step(self) -> dict:
        t, cfg = self.t, self.cfg
        timings: dict = {}
        wall_start = time.time()
        with timed(timings, "step"):
            t._apply_scaling()
            if t.pool.stale(t.version):  # a worker joined without the current weights (nccl path)
                t._sync_weights()
            step = t.step + 1
            self.top_up(step)
            batch = self.ahead[step]
            with timed(timings, "generate"):
                results, versions = self._fresh(batch)
            with timed(timings, "score"):
                rewards = self._rewards(results)
                filtered = {}
                if cfg.algo.filter_groups:
                    results, rewards, filtered = self._filter(batch, results, rewards)
                    versions = [r.summary["version"] for r in results]
            with timed(timings, "reference"):
                ref_refs = self._reference_refs(results)
            group_refs = [r.group for r in results]
            with self._learner_span(timings, "old_logprobs", step):
                prep = t.learners.prepare(group_refs, ref_refs, cfg.rollout.use_engine_logprobs)
            with timed(timings, "advantages"):
                with_reference = t.reference is not None or cfg.reference.colocate_with_learner
                advantages = advantages_of(cfg, rewards, prep.sequence_kl, with_reference)
            with self._learner_span(timings, "update", step):
                stats = t.learners.update(advantages.tolist())
            lag = [t.version - v for v in versions]
            del self.ahead[step]
            t.step += 1
            t.version += 1
            with self._learner_span(timings, "weight_sync", step):
                t._sync_weights()
            t.pool.poll(0)  # the chunks the sync waited for
            if self._validating_after(t.step):
                t.pool.drain()  # validation's blocking generate needs the workers free
        wall_end = time.time()
        self._record(step, [r for sub in [batch.submission, *batch.extra] for r in sub.results.values()] + results)
        busy = t.timeline.busy(wall_start, wall_end, t._pool_workers())
        t.timeline.write()
        return {
            **reward_metrics("reward", [b for group in rewards for b in group]),
            **update_metrics(stats),
            **rollout_metrics(results, prep, stats, t.pool.size(), cfg.rollout.group_size),
            "rollout/staleness_mean": sum(lag) / len(lag),
            "rollout/staleness_max": max(lag),
            **advantage_metrics(advantages),
            **filtered,
            **busy,
            **step_metrics(timings),
            "data/epoch": t.stream.epoch,
            "data/skipped_rows": len(t.stream.skipped),
        }

    def _validating_after(self, step: int) -> bool:
        e = self.cfg.eval
        return bool(e.val_every) and (step % e.val_every == 0 or step == self.cfg.steps)

    # -- timeline ---------------------------------------------------------------------------------------------------
    def _record(self, step: int, trained: list[GroupResult]) -> None:
        """Chunks, rewards and reference calls that have finished, each recorded once."""
        results = list(trained)
        for b in self.ahead.values():
            for sub in [b.submission, *b.extra]:
                results += list(sub.results.values())
        fresh = []
        for r in results:
            key = (r.summary["worker_id"], r.summary.get("start"))
            if key not in self._recorded:
                self._recorded.add(key)
                fresh.append(r)
        self.t.timeline.add_chunks(fresh, step)
        refs = {r.follow["reference"]: None for r in results if "reference" in r.follow}  # unique, in order
        refs = [ref for ref in refs if ref.hex() not in self._recorded]
        ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0) if refs else ([], [])
        for ref in ready:
            self._recorded.add(ref.hex())
            try:
                lp = ray.get(ref)
            except Exception:  # a failed call has nothing to show; the learner reports it where it matters
                continue
            self.t.timeline.add("reference", "reference", "reference_logprobs", lp.start, lp.end, step)

    def _record_rewards(self, results: list[GroupResult], scored: dict) -> None:
        lanes = {r.follow["reward"]: r.follow["reward_lane"] for r in results}
        for ref, scores in scored.items():
            if ref.hex() not in self._recorded:
                self._recorded.add(ref.hex())
                step, groups = self.t.step + 1, len(scores.rewards)
                self.t.timeline.add("reward", lanes[ref], "score", scores.start, scores.end, step, groups=groups)


__all__ = ["Batch", "Pipeline", "advantages_of", "reward_spread"]
