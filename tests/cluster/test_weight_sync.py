"""Streamed weight sync through the real pieces: DeepSpeed ZeRO-3 learner ranks (gloo), Ray, rollout workers with the
vLLM CPU build or transformers; engines killed (SIGKILL) or frozen (SIGSTOP) in the middle of a sync; a tied model
trained end to end with a sync after every step."""

import json
import os
import signal
import threading
import time

import pytest
import torch

from actors.settings import LearnerSettings, RolloutSettings

from ..conftest import make_requests

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tied_model(tmp_path_factory):
    from actors.model import TinyModelSpec, build_tiny_model
    from datagen.corpus import tokenizer_corpus

    return build_tiny_model(
        tmp_path_factory.mktemp("tied") / "model", tokenizer_corpus(), TinyModelSpec(tie_word_embeddings=True)
    )


@pytest.fixture(scope="module")
def learners(ray_local, tied_model):
    from actors.grpo import LossSettings
    from actors.learner import BatchPlan, LearnerGroup

    group = LearnerGroup(
        tied_model,
        LearnerSettings(num_workers=2, micro_batch_size=2, device="cpu"),
        LossSettings(),
        BatchPlan(groups_per_step=2, groups_per_update=2, group_size=2, ppo_epochs=1),
        "float32",
        1.0,
    )
    yield group
    group.shutdown()


def _perturb(learners, seed: int) -> None:
    """Change every learner parameter (collectively, as training would)."""

    def shift(self, seed=seed):
        import deepspeed

        params = list(self.engine.module.parameters())
        with deepspeed.zero.GatheredParameters(params, modifier_rank=0):
            if self.rank == 0:
                gen = torch.Generator().manual_seed(seed)
                with torch.no_grad():
                    for p in params:
                        p.add_(0.01 * torch.randn(p.shape, generator=gen))
        return True

    import ray

    ray.get([r.__ray_call__.remote(shift) for r in learners.ranks])


def _learner_state(learners) -> dict:
    import ray

    return ray.get(learners.weights())


def _engine_state(worker) -> dict:
    import ray

    return ray.get(worker.handle.__ray_call__.remote(lambda self: dict(self.engine.model.named_parameters())))


def test_streamed_buckets_reassemble_the_zero3_model(ray_local, learners):
    """Rank 0 yields the plan's buckets in order, the other rank takes part in each gather, and the buckets hold the
    gathered model (tied lm_head once, under the embedding's name)."""
    from actors.weight_sync import from_wire

    ray = ray_local
    buckets, followers = learners.stream_weights(bucket_mb=1, version=3)
    received = [ray.get(ref) for ref in buckets]
    learners.finish_stream(buckets, followers)
    assert len(received) > 1 and ray.get(followers) == [len(received)]
    assert [b.index for b in received] == list(range(len(received)))
    assert all(b.count == len(received) and b.version == 3 for b in received)
    sent = {n: t for b in received for n, t in from_wire(b)}
    state = _learner_state(learners)
    assert set(state) - set(sent) == {"lm_head.weight"}
    assert all(torch.equal(sent[n], state[n]) for n in sent)


def test_rollout_worker_killed_mid_sync_is_replaced_with_current_weights(ray_local, learners, tied_model, stvqa):
    """kill -9 of a rollout worker while buckets stream (hf engines: quick to start): the sync completes on the
    other, the dead one is replaced, the replacement holds the new weights, and generation goes on."""
    from cluster.pool import RolloutPool

    ray = ray_local
    settings = RolloutSettings(
        engine="hf", num_workers=2, min_workers=2, max_new_tokens=6, weight_sync_bucket_mb=1, num_cpus=0.25
    )
    pool = RolloutPool(tied_model, settings, "float32")
    pool.add_workers(2)
    victim = next(iter(pool.workers.values()))
    pid = ray.get(victim.handle.__ray_call__.remote(lambda self: os.getpid()))
    _perturb(learners, seed=1)

    # the victim is held (SIGSTOP) so that its part of the sync is still pending when the kill -9 comes
    os.kill(pid, signal.SIGSTOP)
    killer = threading.Timer(2.0, os.kill, (pid, signal.SIGKILL))
    killer.start()
    try:
        start = time.monotonic()
        report = pool.sync_weights(learners, version=1)
    finally:
        killer.cancel()
        _kill(pid)
    assert time.monotonic() - start > 2.0  # the sync was still going on when the kill came
    assert report.dropped == [victim.wid] and report.buckets > 1
    assert pool.size() == 2 and victim.wid not in pool.workers and not pool.stale(1)
    state = _learner_state(learners)
    for w in pool.workers.values():
        engine = _engine_state(w)
        assert all(torch.equal(engine[n], state[n]) for n in engine), w.wid
    results = pool.generate(make_requests(stvqa, 2), 2)
    assert [ray.get(r.group).policy_version for r in results] == [1, 1]
    pool.shutdown()


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def test_frozen_engine_misses_the_deadline_and_is_replaced(ray_local, learners, tied_model):
    """An engine that stops answering (SIGSTOP) mid-sync is dropped at ``rollout.weight_sync_timeout_s`` and
    replaced; the learner is not left waiting."""
    from cluster.pool import RolloutPool

    ray = ray_local
    settings = RolloutSettings(
        engine="hf",
        num_workers=2,
        min_workers=2,
        max_new_tokens=6,
        weight_sync_bucket_mb=1,
        weight_sync_timeout_s=8.0,
        num_cpus=0.25,
    )
    pool = RolloutPool(tied_model, settings, "float32")
    pool.add_workers(2)
    frozen = next(iter(pool.workers.values()))
    pid = ray.get(frozen.handle.__ray_call__.remote(lambda self: os.getpid()))
    _perturb(learners, seed=2)
    os.kill(pid, signal.SIGSTOP)
    try:
        start = time.monotonic()
        report = pool.sync_weights(learners, version=2)
        took = time.monotonic() - start
    finally:
        _kill(pid)
    assert report.dropped == [frozen.wid] and pool.size() == 2 and not pool.stale(2)
    assert took < 8.0 + 120  # the deadline plus one replacement's start and sync, not an endless wait
    state = _learner_state(learners)
    for w in pool.workers.values():
        engine = _engine_state(w)
        assert all(torch.equal(engine[n], state[n]) for n in engine), w.wid
    pool.shutdown()


def test_tied_model_trains_with_vllm_and_a_sync_every_step(tmp_path):
    """The CPU default with a tied tiny model: vLLM engines, two steps (each followed by a sync), the engine's
    log-probs agree with the learner's after the sync."""
    from .test_train_e2e import run_cli

    out = tmp_path / "run"
    p = run_cli(out, "--steps", "2", "--set", "model.tiny_tie_word_embeddings=true", "--set", "eval.val_every=0")
    log = p.stdout + p.stderr
    assert p.returncode == 0, log[-6000:]
    config = json.loads((out / "tiny_model" / "config.json").read_text())
    assert config["tie_word_embeddings"] is True
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [line for line in lines if "reward/total" in line]
    assert len(steps) == 2
    assert all(line["rollout/logprob_diff_mean"] < 0.05 for line in steps), [
        line["rollout/logprob_diff_mean"] for line in steps
    ]
